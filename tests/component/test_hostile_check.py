"""Outside check (issue #13, hostile tenants): attacks on the operator as a tenant would make them.

Each test FAILS when the attack works. Run one at a time:
    .venv/bin/python -m pytest -q tests/component/test_hostile_check.py -k NAME
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailstack.controller.dns_runner import DnsTimings
from tests.component.conftest import NS, USABLE_BY, conditions, maildomain, settle, wait_ready
from tests.component.emulator import (
    ApiServer,
    builtin_resources,
    cert_manager_resources,
    crd_resources,
    external_dns_resources,
    wait_for,
)
from tests.component.harness import OperatorThread
from tests.component.test_limits import ZONE as PROOF_ZONE
from tests.component.test_limits import bind as bind
from tests.component.test_limits import namespace as make_namespace
from tests.component.test_limits import policy as limits_policy
from tests.component.test_limits import proving_operator as proving_operator
from tests.component.test_limits import publish_txt
from tests.e2e.dnsservers import Bind, PowerDns, powerdns_server
from tests.fakes.blackhole import blackhole as blackhole_port

# --- 1. a MailDomain named after an object it did not create ------------------------------------
#
# The operator GETs <n>-tls, <n>-ca, <n>-dkim, <n>-users, <n>-mda-client by name (no label, no
# owner check) and server-side applies its children with force=true. A user who may create
# MailDomains, but not write Services or Secrets, names a MailDomain after an existing app.


def _shop_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "shop", "namespace": NS, "labels": {"app": "shop"}},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": "shop"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


def _shop_tls() -> dict[str, Any]:
    # Another app's TLS Secret (e.g. cert-manager's for an Ingress): no usable-by label, not
    # the operator's. Its author is not the MailDomain's author.
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-tls", "namespace": NS},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(b"SHOP-CERT").decode(),
            "tls.key": base64.b64encode(b"SHOP-PRIVATE-KEY").decode(),
        },
    }


def test_a_maildomain_does_not_take_over_an_existing_service_or_secret(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(_shop_service(), manager="helm")
    api.create(_shop_tls(), manager="cert-manager")
    before_svc = api.get("services", "shop")
    before_secret = api.get("secrets", "shop-tls")

    api.create(maildomain("shop", "shop.example"))
    wait_for(lambda: conditions(api.get("maildomains", "shop")).get("Valid") is not None, 30)
    settle(api, operator)

    svc = api.get("services", "shop")
    secret = api.get("secrets", "shop-tls")
    problems = []
    if svc["spec"].get("selector") != before_svc["spec"]["selector"]:
        problems.append(f"Service shop's selector became {svc['spec'].get('selector')}")
    if svc["metadata"].get("ownerReferences"):
        problems.append(f"Service shop got ownerReferences {svc['metadata']['ownerReferences']}")
    if secret["data"] != before_secret["data"]:
        problems.append(f"Secret shop-tls overwritten: keys now {sorted(secret['data'])}")
    if secret["metadata"].get("ownerReferences"):
        problems.append("Secret shop-tls now owned by the MailDomain (deleted with it by GC)")
    print("\n".join(problems))
    assert not problems, problems


def test_deleting_that_maildomain_does_not_delete_the_apps_service_and_secret(
    api: ApiServer, operator: OperatorThread
) -> None:
    # Tenant-only actions: create MailDomain "shop", then delete it. The garbage collector
    # (the emulator's, as kube-controller-manager's) follows the ownerReference the operator's
    # forced apply added to the app's objects.
    api.create(_shop_service(), manager="helm")
    api.create(_shop_tls(), manager="cert-manager")
    api.create(maildomain("shop", "shop.example"))
    wait_for(lambda: conditions(api.get("maildomains", "shop")).get("Valid") is not None, 30)
    settle(api, operator)
    api.delete("maildomains", "shop")
    wait_for(lambda: api.get("maildomains", "shop") is None, 30)
    time.sleep(2)
    gone = [n for p, n in (("services", "shop"), ("secrets", "shop-tls")) if api.get(p, n) is None]
    assert not gone, f"deleting MailDomain shop deleted the app's {gone}"


def test_an_unlabelled_secret_is_not_mounted_into_the_mail_pods_by_name(
    api: ApiServer, operator: OperatorThread
) -> None:
    # Secret corp-dkim belongs to someone else (another mail system's keys). A MailDomain named
    # "corp" makes the operator apply corp-dkim (its own key added, the others kept by the
    # server-side apply) and mount the whole Secret (no items) into the MTA pod's rspamd.
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "corp-dkim", "namespace": NS},
            "stringData": {"payroll-signing.key": "TOP-SECRET-KEY"},
        },
        manager="someone-else",
    )
    api.create(maildomain("corp", "corp.example"))
    # Re-check: the fix refuses the name (NameTaken) and applies nothing, so wait for the
    # verdict instead of the StatefulSet.
    wait_for(lambda: conditions(api.get("maildomains", "corp")).get("Valid") is not None, 30)
    settle(api, operator)
    secret = api.get("secrets", "corp-dkim")
    sts = api.get("statefulsets", "corp-mta")
    assert base64.b64decode(secret["data"]["payroll-signing.key"]).decode() == "TOP-SECRET-KEY"
    if sts is None:
        return  # nothing mounted at all
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    dkim = volumes["dkim"]["secret"]
    print("corp-dkim keys:", sorted(secret["data"]), "volume:", dkim)
    exposed = (
        dkim["secretName"] == "corp-dkim"
        and "payroll-signing.key" in secret["data"]
        and "items" not in dkim
    )
    assert not exposed, "the other owner's key is mounted into the tenant's MTA pod"


# --- 2. a blackhole on the port of another tenant's PowerDNS host -------------------------------
#
# dns_publisher.provider_endpoint keys the one-at-a-time slot of a PowerDNS host by its host name
# only (no port), unlike rfc2136 (host:port). Tenant A names B's (public) PowerDNS host with a
# port that never answers: A's calls hold B's host slot for the whole call timeout.


@pytest.fixture
def pdns(tmp_path: Path) -> Iterator[PowerDns]:
    with powerdns_server(tmp_path / "pdns") as server:
        yield server


@pytest.fixture
def blackhole() -> Iterator[int]:
    with blackhole_port() as port:
        yield port


def _policy(name: str, namespace: str, domain: str) -> dict[str, Any]:
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomainPolicy",
        "metadata": {"name": name},
        "spec": {
            "namespaces": [namespace],
            "domains": [domain, f"*.{domain}"],
            # the test's servers are on loopback; the same rule as for a public host
            "allowedHosts": ["127.0.0.1"],
        },
    }


def _in(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    doc["metadata"]["namespace"] = namespace
    return doc


def _key(namespace: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pdns", "namespace": namespace, "labels": {USABLE_BY: "maildomains"}},
        "stringData": {"apiKey": value},
    }


def _dns(api: ApiServer, name: str, namespace: str) -> dict[str, Any]:
    return conditions(api.get("maildomains", name, namespace)).get("DNSReady", {})


def test_a_blackholed_port_on_another_tenants_powerdns_host_does_not_delay_it(
    api: ApiServer, pdns: PowerDns, blackhole: int
) -> None:
    timings = DnsTimings(call_timeout=8.0, deadline=10.0, inline_wait=0.5)
    operator = OperatorThread(api, dns=timings).start()
    try:
        for ns, domain in (("tenant-a", "a.example"), ("tenant-b", "b.example")):
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None)
            api.create(_policy(ns, ns, domain), None)
        pdns.create_zone("b.example")
        api.create(_key("tenant-a", "whatever"))
        api.create(_key("tenant-b", pdns.api_key))
        # Tenant A: its "provider" is B's host (127.0.0.1 here) at a port that never answers.
        hostile = {
            "apiUrl": f"http://127.0.0.1:{blackhole}",
            "zone": "x.a.example",
            "apiKeySecretRef": {"name": "pdns"},
        }
        api.create(
            _in(maildomain("x", "x.a.example", dns={"provider": {"powerdns": hostile}}), "tenant-a")
        )
        wait_for(lambda: _dns(api, "x", "tenant-a").get("reason") == "Pending", 30)
        time.sleep(0.5)  # A's call is in flight

        started = time.monotonic()
        victim = {"apiUrl": pdns.api_url, "zone": "b.example", "apiKeySecretRef": {"name": "pdns"}}
        api.create(
            _in(maildomain("b", "b.example", dns={"provider": {"powerdns": victim}}), "tenant-b")
        )
        wait_for(lambda: _dns(api, "b", "tenant-b").get("status") in ("True", "False"), 40)
        took = time.monotonic() - started
        outcome = _dns(api, "b", "tenant-b")
        print(f"tenant-b DNSReady after {took:.1f} s: {outcome}")
        assert outcome.get("status") == "True", outcome
        # rfc2136 keys its slot by host:port and is not delayed (test_dns_tenants); the same
        # should hold here: B's publication must not wait for A's blackholed call.
        assert took < 4.0, f"tenant-b's publication waited {took:.1f} s behind tenant-a's call"
    finally:
        operator.stop(allow_errors=True)


def test_many_blackholed_maildomains_on_that_host_do_not_make_the_other_tenant_fail(
    api: ApiServer, pdns: PowerDns, blackhole: int
) -> None:
    # Scaled-down timings (call 4 s, deadline 6 s). Tenant A has 4 MailDomains naming B's host
    # at a blackholed port; B's publication queues behind all of them on the host's one slot.
    timings = DnsTimings(call_timeout=4.0, deadline=6.0, inline_wait=0.5)
    operator = OperatorThread(api, dns=timings).start()
    try:
        for ns, domain in (("tenant-a", "a.example"), ("tenant-b", "b.example")):
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None)
            api.create(_policy(ns, ns, domain), None)
        pdns.create_zone("b.example")
        api.create(_key("tenant-a", "whatever"))
        api.create(_key("tenant-b", pdns.api_key))
        for i in range(4):
            hostile = {
                "apiUrl": f"http://127.0.0.1:{blackhole}",
                "zone": f"x{i}.a.example",
                "apiKeySecretRef": {"name": "pdns"},
            }
            doc = maildomain(f"x{i}", f"x{i}.a.example", dns={"provider": {"powerdns": hostile}})
            api.create(_in(doc, "tenant-a"))
        for i in range(4):
            wait_for(lambda i=i: _dns(api, f"x{i}", "tenant-a").get("reason") == "Pending", 30)
        started = time.monotonic()
        victim = {"apiUrl": pdns.api_url, "zone": "b.example", "apiKeySecretRef": {"name": "pdns"}}
        api.create(
            _in(maildomain("b", "b.example", dns={"provider": {"powerdns": victim}}), "tenant-b")
        )
        wait_for(lambda: _dns(api, "b", "tenant-b").get("status") in ("True", "False"), 40)
        took = time.monotonic() - started
        outcome = _dns(api, "b", "tenant-b")
        print(f"tenant-b DNSReady after {took:.1f} s: {outcome}")
        assert outcome.get("status") == "True", outcome
        assert took < 2.0, f"tenant-b's publication waited {took:.1f} s"
    finally:
        operator.stop(allow_errors=True)


# --- 3. spec.hostname under another tenant's proven domain --------------------------------------
#
# A wide grant (*.proof.example, requireProof) for many tenants: the proof covers spec.domain,
# while spec.hostname is only checked against the grants, and hostnames are not unique.


def _proof_record(api: ApiServer, name: str, ns: str) -> dict[str, Any]:
    proof = wait_for(
        lambda: (api.get("maildomains", name, ns) or {}).get("status", {}).get("proof")
    )
    return proof["record"]


@pytest.mark.parametrize(
    "api",
    [{"resources": [*builtin_resources(), *crd_resources(), *cert_manager_resources()]}],
    indirect=True,
)
def test_a_tenant_may_not_take_another_tenants_mail_hostname(
    api: ApiServer, proving_operator: OperatorThread, bind: Bind
) -> None:
    make_namespace(api, "tenant-a")
    make_namespace(api, "squatter")
    spec = {"domains": [f"*.{PROOF_ZONE}"], "requireProof": True}
    api.create(limits_policy("shared", namespaces=["tenant-a", "squatter"], **spec), None)
    # The owner of shop.proof.example serves it, proven, with the default mail.shop.proof.example.
    api.create(in_ns(maildomain("shop", f"shop.{PROOF_ZONE}"), "tenant-a"))
    record = _proof_record(api, "shop", "tenant-a")
    publish_txt(bind, record["name"], record["value"])
    wait_ready(api, "shop", timeout=60, namespace="tenant-a")

    # The squatter proves its own name, and names the owner's mail host as its hostname, with
    # a cert-manager issuer: the Certificate it gets covers mail.shop.proof.example.
    tls = {
        "issuer": "certManager",
        "certManager": {"issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
    }
    api.create(
        in_ns(
            maildomain("squat", f"squat.{PROOF_ZONE}", hostname=f"mail.shop.{PROOF_ZONE}", tls=tls),
            "squatter",
        )
    )
    record = _proof_record(api, "squat", "squatter")
    publish_txt(bind, record["name"], record["value"])
    wait_for(
        lambda: (
            conditions(api.get("maildomains", "squat", "squatter")).get("Valid", {}).get("status")
            in ("True", "False")
            and (
                (api.get("maildomains", "squat", "squatter") or {})
                .get("status", {})
                .get("proof", {})
                .get("proven")
                or conditions(api.get("maildomains", "squat", "squatter"))["Valid"]["reason"]
                != "ProofPending"
            )
        ),
        60,
    )
    valid = conditions(api.get("maildomains", "squat", "squatter"))["Valid"]
    certs = api.list("certificates", "squatter")
    names = [n for c in certs for n in c["spec"].get("dnsNames", [])]
    print("squatter Valid:", valid, "Certificate dnsNames:", names)
    assert f"mail.shop.{PROOF_ZONE}" not in names, (valid, names)
    assert valid["status"] == "False", valid


def in_ns(doc: dict[str, Any], ns: str) -> dict[str, Any]:
    doc["metadata"]["namespace"] = ns
    return doc


@pytest.mark.parametrize(
    "api",
    [{"resources": [*builtin_resources(), *crd_resources(), *external_dns_resources()]}],
    indirect=True,
)
def test_a_tenant_may_not_publish_another_tenants_mail_hostname_through_external_dns(
    api: ApiServer, proving_operator: OperatorThread, bind: Bind
) -> None:
    make_namespace(api, "tenant-a")
    make_namespace(api, "squatter")
    spec = {"domains": [f"*.{PROOF_ZONE}"], "requireProof": True}
    api.create(limits_policy("shared", namespaces=["tenant-a", "squatter"], **spec), None)
    dns_spec = {"provider": {"externalDNS": {}}}
    api.create(
        in_ns(
            maildomain(
                "shop",
                f"shop.{PROOF_ZONE}",
                dns={**dns_spec, "addresses": {"ipv4": ["192.0.2.10"]}},
            ),
            "tenant-a",
        )
    )
    record = _proof_record(api, "shop", "tenant-a")
    publish_txt(bind, record["name"], record["value"])
    wait_for(lambda: api.list("dnsendpoints", "tenant-a") or None, 60)

    api.create(
        in_ns(
            maildomain(
                "squat",
                f"squat.{PROOF_ZONE}",
                hostname=f"mail.shop.{PROOF_ZONE}",
                dns={**dns_spec, "addresses": {"ipv4": ["203.0.113.66"]}},
            ),
            "squatter",
        )
    )
    record = _proof_record(api, "squat", "squatter")
    publish_txt(bind, record["name"], record["value"])
    # Re-check: the fix refuses the squatter (no DNSEndpoint at all); wait for its verdict
    # after the proof instead of for an endpoint.
    wait_for(
        lambda: (
            conditions(api.get("maildomains", "squat", "squatter")).get("Valid", {}).get("reason")
            not in (None, "ProofPending")
        ),
        60,
    )
    settle(api, proving_operator)
    endpoints = api.list("dnsendpoints", "squatter")
    hijacked = [
        e
        for ep in endpoints
        for e in ep["spec"]["endpoints"]
        if e["dnsName"] == f"mail.shop.{PROOF_ZONE}"
    ]
    print("squatter DNSEndpoint entries for the owner's mail host:", hijacked)
    assert not hijacked


# --- 4. ungranted MailDomains still contact their provider (withdrawal), uncounted by limits -----


@pytest.mark.parametrize("provider", ["blackholed-powerdns", "manual-baseline"])
def test_ungranted_maildomains_naming_a_blackhole_do_not_delay_another_tenant(
    api: ApiServer, blackhole: int, provider: str
) -> None:
    # parallel_reconciles=1 makes the cost visible; the default (4) divides it by 4.
    operator = OperatorThread(api, parallel_reconciles=1).start()
    try:
        for ns in ("hostile", "tenant-b"):
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None)
        # hostile is granted nothing it uses, and limited to 1 MailDomain; loopback stands in
        # for a public host that never answers (allowedHosts only to get past the loopback rule).
        limited = _policy("hostile", "hostile", "unused.example")
        limited["spec"]["limits"] = {"maxMailDomains": 1}
        api.create(limited, None)
        api.create(_policy("tenant-b", "tenant-b", "b.example"), None)
        api.create(_key("hostile", "whatever"))
        count = 12
        for i in range(count):
            hostile = {
                "apiUrl": f"http://127.0.0.1:{blackhole}",
                "zone": f"x{i}.example",
                "apiKeySecretRef": {"name": "pdns"},
            }
            dns = {"provider": {"powerdns": hostile}} if provider != "manual-baseline" else {}
            doc = maildomain(f"x{i}", f"x{i}.example", dns=dns)
            api.create(_in(doc, "hostile"))
        time.sleep(1)
        started = time.monotonic()
        api.create(_in(maildomain("b", "b.example"), "tenant-b"))
        wait_for(
            lambda: (
                conditions(api.get("maildomains", "b", "tenant-b")).get("Valid", {}).get("status")
                == "True"
            ),
            120,
        )
        took = time.monotonic() - started
        reasons = {
            conditions(api.get("maildomains", f"x{i}", "hostile")).get("Valid", {}).get("reason")
            for i in range(count)
        }
        print(f"tenant-b reconciled after {took:.1f} s; hostile MailDomains: {reasons}")
        assert took < 5.0, f"tenant-b waited {took:.1f} s behind {count} ungranted MailDomains"
    finally:
        operator.stop(allow_errors=True)


# --- 5. (held) maxMailDomains: a MailDomain made invalid by its routing still counts ------------


def test_held_an_invalid_maildomain_keeps_counting(
    api: ApiServer, operator: OperatorThread
) -> None:
    make_namespace(api, "tenant-a")
    limits = {"maxMailDomains": 1, "maxStorage": "3Gi"}
    api.create(
        limits_policy("a", namespaces=["tenant-a"], domains=["*.a.example"], limits=limits), None
    )
    storage = {"mailboxes": {"size": "2Gi"}, "queue": {"size": "1Gi"}}
    api.create(in_ns(maildomain("d0", "d0.a.example", storage=storage), "tenant-a"))
    wait_for(lambda: api.get("statefulsets", "d0-mda", "tenant-a") is not None, 30)
    # Made invalid by the tenant (an alias leading nowhere): its objects stay, and it counts.
    api.patch(
        "maildomains", "d0", {"spec": {"aliases": {"x": ["nobody@d0.a.example"]}}}, "tenant-a"
    )
    wait_for(
        lambda: (
            conditions(api.get("maildomains", "d0", "tenant-a")).get("Valid", {}).get("reason")
            == "InvalidSpec"
        ),
        30,
    )
    api.create(in_ns(maildomain("d1", "d1.a.example", storage=storage), "tenant-a"))
    wait_for(
        lambda: (
            conditions(api.get("maildomains", "d1", "tenant-a")).get("Valid", {}).get("reason")
            == "LimitExceeded"
        ),
        30,
    )
    assert api.get("statefulsets", "d1-mda", "tenant-a") is None


# --- 6. proof lookups of pending MailDomains (uncounted by limits) hold reconciles -------------


@pytest.mark.parametrize("api", [{}], indirect=True)
def test_pending_proofs_at_a_blackholed_resolver_do_not_delay_another_tenant(
    api: ApiServer,
) -> None:
    import socket

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never read: every lookup times out
    udp.bind(("127.0.0.1", 0))
    config = {
        "proof_resolver": "127.0.0.1",
        "proof_resolver_port": udp.getsockname()[1],
        "proof_recheck": 0.5,
        "parallel_reconciles": 1,
    }
    # In a cluster: the tenant delegates its names to a server that never answers, and the
    # operator's resolver (cluster DNS) takes the lookup's whole 5 s timeout.
    operator = OperatorThread(api, **config).start()
    try:
        make_namespace(api, "hostile")
        make_namespace(api, "tenant-b")
        api.create(
            limits_policy(
                "hostile",
                namespaces=["hostile"],
                domains=["*.h.example"],
                requireProof=True,
                limits={"maxMailDomains": 1},
            ),
            None,
        )
        api.create(
            limits_policy("b", namespaces=["tenant-b"], domains=["b.example", "*.b.example"]), None
        )
        count = 6
        for i in range(count):
            api.create(in_ns(maildomain(f"p{i}", f"p{i}.h.example"), "hostile"))
        for i in range(count):
            wait_for(
                lambda i=i: (
                    (api.get("maildomains", f"p{i}", "hostile") or {})
                    .get("status", {})
                    .get("proof")
                ),
                60,
            )
        started = time.monotonic()
        api.create(in_ns(maildomain("b", "b.example"), "tenant-b"))
        wait_for(
            lambda: (
                conditions(api.get("maildomains", "b", "tenant-b")).get("Valid", {}).get("status")
                == "True"
            ),
            120,
        )
        took = time.monotonic() - started
        print(f"tenant-b reconciled after {took:.1f} s behind {count} pending proofs")
        assert took < 5.0, f"tenant-b waited {took:.1f} s"
    finally:
        operator.stop(allow_errors=True)
        udp.close()
