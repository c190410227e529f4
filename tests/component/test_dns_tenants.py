"""Tenants sharing the operator's DNS publication: a blackholed provider delays no one else, and a
withdrawn MailDomain's records make way for the MailDomain that serves the domain now.

The operator runs against the API server emulator; the rfc2136 provider is a real ``named``
(``tests.e2e.dnsservers``), the blackhole a listening socket that never accepts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailstack.controller.dns_runner import DnsTimings
from tests.component.conftest import USABLE_BY, conditions, maildomain
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.component.test_dns_wiring import SELECTOR, ZONE, domain_at, lookup, tsig_secret, txt
from tests.e2e.dnsservers import Bind, bind_server
from tests.fakes.blackhole import blackhole as blackhole_port

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant-a"}}


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    with bind_server(tmp_path / "named", ZONE, "www IN A 192.0.2.80\n") as server:
        yield server


@pytest.fixture
def blackhole() -> Iterator[int]:
    with blackhole_port() as port:
        yield port


def namespaced(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    doc["metadata"]["namespace"] = namespace
    return doc


def dns_condition(api: ApiServer, name: str, namespace: str) -> dict[str, Any]:
    return conditions(api.get("maildomains", name, namespace)).get("DNSReady", {})


def test_a_blackholed_provider_delays_no_other_tenant(
    api: ApiServer, bind: Bind, blackhole: int
) -> None:
    # One reconcile at a time: before, the blackholed tenant's pass held it for ~a minute.
    timings = DnsTimings(call_timeout=8.0, deadline=10.0, inline_wait=0.5)
    operator = OperatorThread(api, dns=timings, parallel_reconciles=1).start()
    try:
        api.create(NAMESPACE, None)
        meta = {"name": "pdns", "labels": {USABLE_BY: "maildomains"}}
        key = {"apiVersion": "v1", "kind": "Secret", "metadata": meta}
        api.create(namespaced({**key, "stringData": {"apiKey": "k"}}, "tenant-a"))
        powerdns = {
            "apiUrl": f"http://127.0.0.1:{blackhole}",
            "zone": "blackholed.example",
            "apiKeySecretRef": {"name": "pdns"},
        }
        blackholed = maildomain(
            "blackholed", "blackholed.example", dns={"provider": {"powerdns": powerdns}}
        )
        api.create(namespaced(blackholed, "tenant-a"))
        wait_for(lambda: dns_condition(api, "blackholed", "tenant-a").get("reason") == "Pending")

        started = time.monotonic()
        api.create(tsig_secret(bind.secret))
        api.create(domain_at(bind))
        wait_for(lambda: dns_condition(api, "example-org", "default").get("status") == "True", 30)
        took = time.monotonic() - started
        # Published while the blackholed provider's call was still waiting for its answer.
        assert dns_condition(api, "blackholed", "tenant-a").get("reason") == "Pending"
        assert took < timings.call_timeout
        assert lookup(bind, ZONE, "MX") == ["10 mail.example.org."]

        failed = wait_for(
            lambda: (
                (c := dns_condition(api, "blackholed", "tenant-a")).get("status") == "False" and c
            ),
            30,
        )
        assert failed["reason"] == "DNSProviderTimeout"
        assert f"127.0.0.1:{blackhole}" in failed["message"]
    finally:
        operator.stop()


def policy(name: str, namespaces: list[str], domains: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomainPolicy",
        "metadata": {"name": name},
        "spec": {"namespaces": namespaces, "domains": domains, **spec},
    }


def owners(bind: Bind) -> set[str]:
    """The owners named in the zone's ownership claims."""
    claims = [
        value
        for (name, rtype), (_, values) in bind.rrsets().items()
        if name.startswith("_mailstack-owner.") and rtype == "TXT"
        for value in values
    ]
    return {c.split("owner=")[1].split(",")[0] for c in claims}


def test_a_withdrawn_maildomain_makes_way_for_the_one_serving_now(
    api: ApiServer, operator: OperatorThread, bind: Bind
) -> None:
    # The test's BIND listens on loopback: the grant allows it, and a policy for the tenants'
    # other domains too, which lets the withdrawn one remove its records once its grant is gone.
    loopback = ["127.0.0.1"]
    api.create(
        policy("dns", ["default", "tenant-a"], ["other.example"], allowedHosts=loopback), None
    )
    grant = policy("example-org", ["default"], [ZONE, f"*.{ZONE}"], allowedHosts=loopback)
    api.create(grant, None)
    api.create(NAMESPACE, None)
    for namespace in ("default", "tenant-a"):
        api.create(namespaced(tsig_secret(bind.secret), namespace))
        api.create(namespaced(domain_at(bind), namespace))
    wait_for(lambda: dns_condition(api, "example-org", "default").get("status") == "True")
    assert owners(bind) == {"default/example-org"}
    # Not granted: tenant-a's MailDomain renders nothing and publishes nothing.
    assert dns_condition(api, "example-org", "tenant-a")["reason"] == "NotRendered"

    # The grant moves to tenant-a: default's MailDomain is withdrawn, its records and claims go,
    # and tenant-a's publishes without waiting for the resync (an hour in these tests).
    api.patch("maildomainpolicies", "example-org", {"spec": {"namespaces": ["tenant-a"]}}, None)
    wait_for(lambda: dns_condition(api, "example-org", "tenant-a").get("status") == "True", 30)
    withdrawn = api.get("maildomains", "example-org", "default")
    assert conditions(withdrawn)["Valid"]["reason"] == "DomainNotGranted"
    wait_for(lambda: owners(bind) == {"tenant-a/example-org"})
    assert lookup(bind, ZONE, "MX") == ["10 mail.example.org."]
    dkim = txt(lookup(bind, f"{SELECTOR}._domainkey.{ZONE}", "TXT"))
    served = api.get("maildomains", "example-org", "tenant-a")
    assert dkim == [served["status"]["dkim"]["record"]]  # tenant-a's key, not default's
    assert lookup(bind, f"www.{ZONE}", "A") == ["192.0.2.80"]  # nobody's: untouched


def test_a_dns_server_the_operator_may_not_contact_does_not_keep_the_finalizer(
    api: ApiServer, operator: OperatorThread, blackhole: int
) -> None:
    # Grants enforced, loopback not allowed: the MailDomain is refused (HostNotAllowed) and,
    # deleted, its records cannot be removed by the operator; it goes anyway, with a Warning.
    api.create(policy("example-org", ["default"], [ZONE, f"*.{ZONE}"]), None)
    api.create(tsig_secret("c2VjcmV0"))
    api.create(domain_at_port(blackhole))
    wait_for(
        lambda: (
            conditions(api.get("maildomains", "example-org")).get("Valid", {}).get("reason")
            == "HostNotAllowed"
        )
    )
    # As if it had published before its host was disallowed (a status from an earlier grant):
    # one that never published would go without a word, its provider not contacted.
    published = {"status": {"dns": {"published": True}}}
    api.patch("maildomains", "example-org", published, subresource="status")
    api.delete("maildomains", "example-org")
    wait_for(lambda: api.get("maildomains", "example-org") is None, 30)
    warnings = [e for e in api.list("events") if e["reason"] == "DNSHostNotAllowed"]
    assert warnings and "127.0.0.1 is a loopback address" in warnings[0]["message"]


def domain_at_port(port: int) -> dict[str, Any]:
    rfc2136 = {
        "server": "127.0.0.1",
        "port": port,
        "tsigKeyName": "mailstack",
        "tsigSecretRef": {"name": "dns-tsig"},
    }
    return maildomain("example-org", ZONE, dns={"provider": {"rfc2136": rfc2136}})
