"""One tenant does not slow the others down through the operator's shared work: its refused
MailDomains, its pending proofs of control and its blackholed provider ports hold no reconcile
and no slot another tenant needs.

One reconcile at a time (``parallel_reconciles=1``) makes any pass that waits on the network
visible as the other tenant's delay. The operator runs against the API server emulator; the
PowerDNS is a real ``pdns_server`` (``tests.e2e.dnsservers``), the blackholes a listening socket
that never accepts and a UDP socket that is never read.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailstack.controller.dns_runner import DnsTimings
from tests.component.conftest import USABLE_BY, conditions, maildomain, secret_text, settle
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.component.test_dns_tenants import namespaced, policy
from tests.component.test_limits import namespace
from tests.e2e.dnsservers import PowerDns, powerdns_server
from tests.fakes.blackhole import blackhole as blackhole_port

LOOPBACK = ["127.0.0.1"]  # the tests' servers: allowed, as a public host would be


@pytest.fixture
def pdns(tmp_path: Path) -> Iterator[PowerDns]:
    with powerdns_server(tmp_path / "pdns") as server:
        yield server


@pytest.fixture
def blackhole() -> Iterator[int]:
    with blackhole_port() as port:
        yield port


def api_key(ns: str, value: str) -> dict[str, Any]:
    meta = {"name": "pdns", "namespace": ns, "labels": {USABLE_BY: "maildomains"}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"apiKey": value}}


def powerdns(api_url: str, zone: str) -> dict[str, Any]:
    settings = {"apiUrl": api_url, "zone": zone, "apiKeySecretRef": {"name": "pdns"}}
    return {"provider": {"powerdns": settings}}


def condition(api: ApiServer, name: str, ns: str, kind: str) -> dict[str, Any]:
    return conditions(api.get("maildomains", name, ns)).get(kind, {})


def seconds_until_valid(api: ApiServer, name: str, ns: str) -> float:
    started = time.monotonic()
    wait_for(lambda: condition(api, name, ns, "Valid").get("status") == "True", 120)
    return time.monotonic() - started


def test_refused_maildomains_naming_a_blackhole_cost_nothing(
    api: ApiServer, blackhole: int
) -> None:
    # Before: each refused MailDomain's withdrawal waited the 2 s inline wait on its
    # blackholed provider; tenant-b's MailDomain was valid after ~24 s.
    operator = OperatorThread(api, parallel_reconciles=1).start()
    try:
        for ns in ("hostile", "tenant-b"):
            namespace(api, ns)
        limited = policy("hostile", ["hostile"], ["unused.example"], allowedHosts=LOOPBACK)
        limited["spec"]["limits"] = {"maxMailDomains": 1}
        api.create(limited, None)
        api.create(policy("tenant-b", ["tenant-b"], ["b.example", "*.b.example"]), None)
        api.create(api_key("hostile", "whatever"))
        count = 12
        for i in range(count):
            dns = powerdns(f"http://127.0.0.1:{blackhole}", f"x{i}.example")
            api.create(namespaced(maildomain(f"x{i}", f"x{i}.example", dns=dns), "hostile"))
        time.sleep(1)
        api.create(namespaced(maildomain("b", "b.example"), "tenant-b"))
        took = seconds_until_valid(api, "b", "tenant-b")
        # The namespaces take turns: tenant-b need not wait for every refusal.
        wait_for(
            lambda: (
                {condition(api, f"x{i}", "hostile", "Valid").get("reason") for i in range(count)}
                == {"DomainNotGranted"}
            ),
            60,
        )
        print(f"tenant-b valid after {took:.1f} s behind {count} refused MailDomains")
        assert took < 4.0, f"tenant-b waited {took:.1f} s behind {count} refused MailDomains"
        # Never published: nothing to remove, so the marker says so and nothing is contacted.
        status = api.get("maildomains", "x0", "hostile").get("status", {})
        assert status.get("dns", {}).get("published", False) is False
    finally:
        operator.stop(allow_errors=True)


def test_pending_proofs_at_a_resolver_that_never_answers_hold_no_reconcile(
    api: ApiServer,
) -> None:
    # Before: each pending MailDomain's pass waited for its lookup's 5 s timeout; tenant-b's
    # MailDomain was valid after ~17 s.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # never read
        udp.bind(("127.0.0.1", 0))
        config = {
            "proof_resolver": "127.0.0.1",
            "proof_resolver_port": udp.getsockname()[1],
            "proof_recheck": 0.5,
            "parallel_reconciles": 1,
        }
        operator = OperatorThread(api, **config).start()
        try:
            namespace(api, "hostile")
            namespace(api, "tenant-b")
            strict = policy("hostile", ["hostile"], ["*.h.example"], requireProof=True)
            strict["spec"]["limits"] = {"maxMailDomains": 1}
            api.create(strict, None)
            api.create(policy("b", ["tenant-b"], ["b.example", "*.b.example"]), None)
            count = 6
            for i in range(count):
                api.create(namespaced(maildomain(f"p{i}", f"p{i}.h.example"), "hostile"))
            for i in range(count):
                wait_for(
                    lambda i=i: (
                        api.get("maildomains", f"p{i}", "hostile").get("status", {}).get("proof")
                    ),
                    60,
                )
            time.sleep(1)  # the lookups are due (0.5 s) and in flight
            api.create(namespaced(maildomain("b", "b.example"), "tenant-b"))
            took = seconds_until_valid(api, "b", "tenant-b")
            print(f"tenant-b valid after {took:.1f} s behind {count} pending proofs")
            assert took < 4.0, f"tenant-b waited {took:.1f} s behind {count} pending proofs"
            pending = condition(api, "p0", "hostile", "Valid")
            assert pending.get("reason") == "ProofPending"
        finally:
            operator.stop(allow_errors=True)


def test_a_blackholed_port_on_the_host_of_another_tenants_powerdns_does_not_delay_it(
    api: ApiServer, pdns: PowerDns, blackhole: int
) -> None:
    # Before: the slot of a PowerDNS endpoint was keyed by host name alone, so tenant-a's
    # calls to 127.0.0.1:<blackhole> held tenant-b's 127.0.0.1:<pdns> for the call timeout.
    timings = DnsTimings(call_timeout=8.0, deadline=10.0, inline_wait=0.5)
    operator = OperatorThread(api, dns=timings).start()
    try:
        for ns, domain in (("tenant-a", "a.example"), ("tenant-b", "b.example")):
            namespace(api, ns)
            api.create(policy(ns, [ns], [domain, f"*.{domain}"], allowedHosts=LOOPBACK), None)
        pdns.create_zone("b.example")
        api.create(api_key("tenant-a", "whatever"))
        api.create(api_key("tenant-b", pdns.api_key))
        for i in range(3):
            dns = powerdns(f"http://127.0.0.1:{blackhole}", f"x{i}.a.example")
            doc = maildomain(f"x{i}", f"x{i}.a.example", dns=dns)
            api.create(namespaced(doc, "tenant-a"))
        for i in range(3):
            wait_for(
                lambda i=i: (
                    condition(api, f"x{i}", "tenant-a", "DNSReady").get("reason") == "Pending"
                ),
                30,
            )
        time.sleep(0.5)  # tenant-a's calls are in flight

        started = time.monotonic()
        dns = powerdns(pdns.api_url, "b.example")
        api.create(namespaced(maildomain("b", "b.example", dns=dns), "tenant-b"))
        wait_for(
            lambda: condition(api, "b", "tenant-b", "DNSReady").get("status") in ("True", "False"),
            40,
        )
        took = time.monotonic() - started
        published = condition(api, "b", "tenant-b", "DNSReady")
        assert published.get("status") == "True", published
        print(f"tenant-b published after {took:.1f} s")
        assert took < 4.0, f"tenant-b's publication waited {took:.1f} s behind tenant-a's calls"
        assert api.get("maildomains", "b", "tenant-b")["status"]["dns"]["published"] is True
    finally:
        operator.stop(allow_errors=True)


# --- R6: a planted bcrypt cost in the operator's own users Secret freezes the operator -------

# A valid bcrypt hash (made at cost 4, its cost field raised to 16): checking a password
# against it costs 2^6 times the operator's own cost 10 (about 10 s here). Cost 31 would cost
# 2^21 times (days); 16 keeps the test short.
PLANTED = "{BLF-CRYPT}$2b$16$tOEdbk4gmVygvJJD4mJeBOINOxqptvRAGhyqabQb4lyBaifz1lxRy"


def test_a_planted_bcrypt_cost_in_the_users_secret_does_not_stall_other_tenants(
    api: ApiServer, operator: OperatorThread
) -> None:
    """The re-check's R6. Attack: the tenant (who may write the Secrets of its namespace) edits
    the operator's own ``a-users`` Secret, replacing one hash of its passwd-file by a
    ``$2b$31$`` one. The next pass (the edit itself triggers it: a child changed) checks the
    Mailbox's plain password against that "previous" hash (``material.passwords.password_hash``)
    with bcrypt.checkpw, on the operator's event loop: every tenant's reconciles, watches and
    status writes stop for as long as the planted cost says (here 16: seconds; 31: days)."""
    for ns in ("tenant-a", "tenant-b"):
        namespace(api, ns)
    api.create(namespaced(maildomain("a", "a.example"), "tenant-a"))
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "alice", "namespace": "tenant-a", "labels": {USABLE_BY: "mailboxes"}},
        "stringData": {"password": "correct-horse-battery"},  # plain: hashed by the operator
    }
    api.create(secret)
    box = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "Mailbox",
        "metadata": {"name": "alice", "namespace": "tenant-a"},
        "spec": {"address": "alice@a.example", "passwordSecretRef": {"name": "alice"}},
    }
    api.create(box)
    users = wait_for(
        lambda: (
            (s := api.get("secrets", "a-users", "tenant-a")) is not None
            and "alice@a.example" in secret_text(s, "passwd")
            and s
        ),
        30,
    )
    settle(api, operator)
    lines = secret_text(users, "passwd").splitlines()
    planted = [
        ":".join([f[0], PLANTED, *f[2:]]) if f[0] == "alice@a.example" else ":".join(f)
        for f in (line.split(":") for line in lines)
    ]
    api.patch(
        "secrets", "a-users", {"stringData": {"passwd": "\n".join(planted) + "\n"}}, "tenant-a"
    )
    assert PLANTED in secret_text(api.get("secrets", "a-users", "tenant-a"), "passwd")
    time.sleep(0.5)  # the pass that checks the planted hash has started
    started = time.monotonic()
    api.create(namespaced(maildomain("b", "b.example"), "tenant-b"))
    wait_for(
        lambda: (
            conditions(api.get("maildomains", "b", "tenant-b")).get("Valid", {}).get("status")
            == "True"
        ),
        60,
    )
    took = time.monotonic() - started
    passwd = secret_text(api.get("secrets", "a-users", "tenant-a"), "passwd")
    print(f"tenant-b reconciled after {took:.1f} s; planted hash still there: {PLANTED in passwd}")
    assert took < 4.0, f"tenant-b waited {took:.1f} s behind tenant-a's planted bcrypt cost"
