"""The externalDNS provider: the operator writes a DNSEndpoint child that external-dns publishes.

The emulator serves external-dns's DNSEndpoint CRD (``tests/fixtures/crds``) with its schema, so
a field the operator writes that external-dns does not know would be pruned and show up here as
an endless restore. external-dns itself is played by the test: its CRD source marks what it has
read by setting ``status.observedGeneration`` through the status subresource.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.component.conftest import NS, conditions, maildomain, settle, wait_ready
from tests.component.emulator import (
    ApiServer,
    builtin_resources,
    cert_manager_resources,
    crd_resources,
    external_dns_resources,
    wait_for,
)
from tests.component.harness import OperatorThread
from tests.component.test_limits import namespace, policy, valid_reason
from tests.component.test_operator import in_namespace

WITH_EXTERNAL_DNS = {
    "resources": [*builtin_resources(), *crd_resources(), *external_dns_resources()]
}
ENDPOINT = "example-org-dns"


def domain(**spec: Any) -> dict[str, Any]:
    return maildomain(
        "example-org",
        "example.org",
        dns={"provider": {"externalDNS": {}}, "addresses": {"ipv4": ["192.0.2.25"]}},
        **spec,
    )


def dns_ready(api: ApiServer) -> dict[str, Any]:
    return conditions(api.get("maildomains", "example-org")).get("DNSReady", {})


def targets(endpoint: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {(e["dnsName"], e["recordType"]): e["targets"] for e in endpoint["spec"]["endpoints"]}


def external_dns_reads(api: ApiServer) -> None:
    """What external-dns's CRD source does once it has read the DNSEndpoint."""
    live = api.get("dnsendpoints", ENDPOINT)
    assert live is not None
    api.patch(
        "dnsendpoints",
        ENDPOINT,
        {"status": {"observedGeneration": live["metadata"]["generation"]}},
        subresource="status",
        manager="external-dns",
    )


def endpoint_writes(api: ApiServer, since: int) -> list[str]:
    return [
        f"{w.verb} {w.subresource or ''}".strip()
        for w in api.writes(since)
        if w.resource == "dnsendpoints" and w.manager != "external-dns" and w.changed
    ]


@pytest.mark.parametrize("api", [WITH_EXTERNAL_DNS], indirect=True)
def test_records_are_handed_to_external_dns_and_follow_the_spec(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(domain())
    endpoint = wait_for(lambda: api.get("dnsendpoints", ENDPOINT))
    (owner,) = endpoint["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == (
        "MailDomain",
        "example-org",
        True,
    )
    found = targets(endpoint)
    assert found[("example.org", "MX")] == ["10 mail.example.org"]
    assert found[("mail.example.org", "A")] == ["192.0.2.25"]
    assert found[("_imaps._tcp.example.org", "SRV")] == ["0 1 993 mail.example.org"]
    assert any(v.startswith("v=spf1") for v in found[("example.org", "TXT")])

    # Written, but external-dns has not read it: Ready waits for it.
    wait_for(lambda: dns_ready(api).get("reason") == "WaitingForExternalDNS")
    assert dns_ready(api)["status"] == "Unknown"
    assert "--managed-record-types" in dns_ready(api)["message"]
    # The workloads come up (the emulator readies StatefulSets); DNSReady is what holds Ready.
    md = wait_for(
        lambda: (
            (found := api.get("maildomains", "example-org")) is not None
            and conditions(found)["WorkloadsReady"]["status"] == "True"
            and found
        )
    )
    assert (conditions(md)["Ready"]["status"], conditions(md)["Ready"]["reason"]) == (
        "Unknown",
        "WaitingForExternalDNS",
    )
    dkim_record = md["status"]["dkim"]["record"]
    assert found[("mailstack._domainkey.example.org", "TXT")] == [dkim_record]

    external_dns_reads(api)
    wait_for(lambda: dns_ready(api).get("reason") == "AcceptedByExternalDNS")
    md = wait_ready(api, "example-org")
    assert conditions(md)["DNSReady"]["status"] == "True"
    assert {r["state"] for r in md["status"]["dns"]["records"]} == {"Published"}

    # Nothing changed: no further writes to the DNSEndpoint.
    start = settle(api, operator)
    api.patch("maildomains", "example-org", {"metadata": {"labels": {"team": "mail"}}})
    time.sleep(1.0)
    settle(api, operator)
    assert endpoint_writes(api, start) == []

    # A spec change reaches the DNSEndpoint; DNSReady waits for external-dns again.
    start = api.write_count()
    api.patch(
        "maildomains",
        "example-org",
        {"spec": {"dns": {"addresses": {"ipv4": ["192.0.2.26"]}}}},
    )
    wait_for(
        lambda: (
            targets(api.get("dnsendpoints", ENDPOINT))[("mail.example.org", "A")] == ["192.0.2.26"]
        )
    )
    wait_for(lambda: dns_ready(api).get("reason") == "WaitingForExternalDNS")
    assert endpoint_writes(api, start) == ["apply"]
    external_dns_reads(api)
    wait_for(lambda: dns_ready(api).get("reason") == "AcceptedByExternalDNS")

    # Edited by hand: restored.
    api.patch("dnsendpoints", ENDPOINT, {"spec": {"endpoints": []}})
    wait_for(lambda: targets(api.get("dnsendpoints", ENDPOINT)).get(("example.org", "MX")))

    # Another provider: the DNSEndpoint goes (external-dns would keep publishing it).
    api.patch(
        "maildomains",
        "example-org",
        {"spec": {"dns": {"provider": {"externalDNS": None, "manual": {}}}}},
    )
    wait_for(lambda: api.get("dnsendpoints", ENDPOINT) is None)
    wait_for(lambda: dns_ready(api).get("reason") == "NotConfigured")
    assert not operator.errors


@pytest.mark.parametrize("api", [WITH_EXTERNAL_DNS], indirect=True)
def test_the_dns_endpoint_goes_with_its_maildomain(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(domain())
    wait_for(lambda: api.get("dnsendpoints", ENDPOINT))
    api.delete("maildomains", "example-org")
    wait_for(lambda: api.get("maildomains", "example-org") is None)
    wait_for(lambda: api.get("dnsendpoints", ENDPOINT) is None)
    assert not operator.errors


def test_a_cluster_without_external_dns_gets_a_clear_condition(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(domain())
    wait_for(lambda: dns_ready(api).get("status") == "False")
    condition = dns_ready(api)
    assert condition["reason"] == "ExternalDNSNotInstalled", condition
    assert "install external-dns's CRD" in condition["message"]
    md = api.get("maildomains", "example-org")
    assert conditions(md)["Rendered"]["status"] == "True"  # the rest of the pass went on
    assert {r["state"] for r in md["status"]["dns"]["records"]} == {"Pending"}
    assert api.get("configmaps", "example-org-postfix", NS) is not None
    assert not operator.errors


NAME_ANNOTATIONS = (
    "external-dns.alpha.kubernetes.io/hostname",
    "external-dns.alpha.kubernetes.io/internal-hostname",
    "external-dns.kubernetes.io/hostname",  # external-dns v0.22 and later
    "external-dns.kubernetes.io/internal-hostname",
    "dns.alpha.kubernetes.io/external",  # kops's dns-controller
    "dns.alpha.kubernetes.io/internal",
    "coredns.io/hostname",  # CoreDNS's k8s_gateway
)


def two_tenants(api: ApiServer) -> None:
    for ns in ("tenant-a", "tenant-b"):
        namespace(api, ns)
    api.create(policy("a", namespaces=["tenant-a"], domains=["a.example", "*.a.example"]), None)
    api.create(policy("b", namespaces=["tenant-b"], domains=["b.example", "*.b.example"]), None)


def public_services(api: ApiServer, ns: str) -> list[dict[str, Any]]:
    return [s for s in api.list("services", ns) if s["spec"].get("type") == "LoadBalancer"]


def test_a_tenant_cannot_publish_another_tenants_host_through_its_service_annotations(
    api: ApiServer, operator: OperatorThread
) -> None:
    """tenant-a, granted a.example only (the policy says nothing about annotations,
    the documented default: any), writes external-dns's hostname annotation naming tenant-b's
    mail host and domain into ``spec.service.annotations``. The operator's account creates the
    LoadBalancer Service with it; a shared external-dns watching Services (its default) then
    publishes A records for mail.b.example and b.example pointing at tenant-a's load balancer:
    another namespace's domain published, past grants, the contest and the ownership records."""
    two_tenants(api)
    api.create(in_namespace(maildomain("b", "b.example"), "tenant-b"))
    wait_ready(api, "b", timeout=60, namespace="tenant-b")
    hostile = {name: "mail.b.example,b.example" for name in NAME_ANNOTATIONS}
    api.create(
        in_namespace(maildomain("a", "a.example", service={"annotations": hostile}), "tenant-a")
    )

    def decided() -> str | None:
        obj = api.get("maildomains", "a", "tenant-a") or {}
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond["type"] == "Valid":
                return str(cond["status"])
        return None

    verdict = wait_for(decided, 60)
    published = [
        (key, value)
        for service in public_services(api, "tenant-a")
        for key, value in (service["metadata"].get("annotations") or {}).items()
        if key in NAME_ANNOTATIONS
    ]
    assert not published, (
        f"Valid={verdict}: tenant-a's Service, made by the operator, asks external-dns to "
        f"publish tenant-b's names: {published}"
    )


def test_a_tenant_cannot_publish_another_tenants_host_through_its_pods_annotations(
    api: ApiServer, operator: OperatorThread
) -> None:
    """As above through ``spec.pods.annotations``, which go onto the mail pods' templates:
    external-dns's (and dns-controller's) pod source publishes a pod's names at its address."""
    two_tenants(api)
    key = "external-dns.alpha.kubernetes.io/internal-hostname"
    hostile = {"annotations": {key: "mail.b.example,b.example"}}
    api.create(in_namespace(maildomain("a", "a.example", pods=hostile), "tenant-a"))
    wait_for(lambda: valid_reason(api, "a", "tenant-a") == "ServiceNotAllowed", 60)
    published = [
        sts["metadata"]["name"]
        for sts in api.list("statefulsets", "tenant-a")
        if key in (sts["spec"]["template"]["metadata"].get("annotations") or {})
    ]
    assert not published, "tenant-a's pods ask external-dns to publish tenant-b's names"


@pytest.mark.parametrize("api", [WITH_EXTERNAL_DNS], indirect=True)
@pytest.mark.parametrize(
    "broken",
    [
        {"catchAll": "nobody@a.example"},
        {"relay": {"host": "smtp.example.net", "credentialsSecretRef": {"name": "gone"}}},
    ],
    ids=["no-such-mailbox", "missing-secret"],
)
def test_a_tenant_keeps_no_domain_whose_grant_was_withdrawn_by_breaking_its_spec(
    api: ApiServer, operator: OperatorThread, broken: dict[str, Any]
) -> None:
    """tenant-a serves a.example through the shared external-dns. Told that the platform
    will hand a.example to tenant-b, it first makes its spec invalid (a catch-all that is no
    mailbox, a relay Secret that does not exist: mistakes the CRD schema cannot see), hoping
    that an invalid spec, which keeps the objects of its last valid spec, keeps its DNSEndpoint
    for a.example beside tenant-b's once the grant is gone. (Held: the grant is checked first.)"""
    two_tenants(api)
    dns = {"provider": {"externalDNS": {}}, "addresses": {"ipv4": ["192.0.2.25"]}}
    api.create(in_namespace(maildomain("a", "a.example", dns=dns), "tenant-a"))
    wait_for(lambda: api.get("dnsendpoints", "a-dns", "tenant-a"), 60)
    api.patch("maildomains", "a", {"spec": broken}, "tenant-a")
    wait_for(lambda: valid_reason(api, "a", "tenant-a") in ("InvalidSpec", "InvalidSecret"), 60)

    # The platform withdraws a.example from tenant-a and grants it to tenant-b.
    api.patch("maildomainpolicies", "a", {"spec": {"domains": ["*.a.example"]}}, None)
    b_domains = ["b.example", "*.b.example", "a.example"]
    api.patch("maildomainpolicies", "b", {"spec": {"domains": b_domains}}, None)
    b_dns = {"provider": {"externalDNS": {}}, "addresses": {"ipv4": ["192.0.2.26"]}}
    b = maildomain("b", "a.example", dns=b_dns, hostname="mail.b.example")
    api.create(in_namespace(b, "tenant-b"))
    wait_for(lambda: api.get("dnsendpoints", "b-dns", "tenant-b"), 60)
    time.sleep(3)  # the withdrawal of a policy change: at once (docs/operator.md)

    kept = api.get("dnsendpoints", "a-dns", "tenant-a")
    names = sorted({e["dnsName"] for e in (kept or {}).get("spec", {}).get("endpoints", [])})
    b_valid = conditions(api.get("maildomains", "b", "tenant-b")).get("Valid", {})
    assert kept is None, (
        f"tenant-b: {b_valid.get('reason')} {b_valid.get('message')}; "
        f"tenant-a (Valid={valid_reason(api, 'a', 'tenant-a')}) still has external-dns "
        f"publish {names} after its grant of a.example went to tenant-b"
    )


WITH_DNS_AND_CERTS = {
    "resources": [
        *builtin_resources(),
        *crd_resources(),
        *external_dns_resources(),
        *cert_manager_resources(),
    ]
}
TLS = {"issuer": "certManager", "certManager": {"issuerRef": {"name": "le", "kind": "Issuer"}}}


def serving_objects(api: ApiServer, ns: str) -> dict[str, list[str]]:
    """What serves or publishes in ``ns``: StatefulSets, the names of Certificates and
    DNSEndpoints."""
    return {
        "statefulsets": sorted(s["metadata"]["name"] for s in api.list("statefulsets", ns)),
        "certificates": sorted(
            n for c in api.list("certificates", ns) for n in c["spec"].get("dnsNames", [])
        ),
        "dnsendpoints": sorted(
            {e["dnsName"] for d in api.list("dnsendpoints", ns) for e in d["spec"]["endpoints"]}
        ),
    }


@pytest.mark.parametrize("api", [WITH_DNS_AND_CERTS], indirect=True)
@pytest.mark.parametrize(
    "broken",
    [
        # Refused by the operator's parser, accepted by the CRD (whose rule on serverRef
        # covers spec.relay and spec.resolvers only: the other sections have defaults).
        {"serverRef": {"name": "shared"}, "limits": {"messageSize": "1Mi"}},
        {"serverRef": {"name": "shared"}, "protocols": {"pop3": False}},
    ],
    ids=["serverRef+limits", "serverRef+protocols"],
)
def test_a_tenant_keeps_no_domain_whose_grant_was_withdrawn_behind_a_parse_error(
    api: ApiServer, operator: OperatorThread, broken: dict[str, Any]
) -> None:
    """As above with an error the parser itself refuses (``spec.serverRef`` beside a server
    section): ``render_domain`` stops before ``assemble`` checks any grant, and an invalid
    spec keeps its last objects. Once a.example went to tenant-b, tenant-a must keep no
    StatefulSet, no DNSEndpoint and no Certificate for it (``controller.unparsed``)."""
    two_tenants(api)
    dns = {"provider": {"externalDNS": {}}, "addresses": {"ipv4": ["192.0.2.25"]}}
    api.create(in_namespace(maildomain("a", "a.example", dns=dns, tls=TLS), "tenant-a"))
    wait_for(lambda: api.get("dnsendpoints", "a-dns", "tenant-a"), 60)
    wait_for(lambda: serving_objects(api, "tenant-a")["certificates"], 60)
    api.patch("maildomains", "a", {"spec": broken}, "tenant-a")
    wait_for(lambda: valid_reason(api, "a", "tenant-a") == "InvalidSpec", 60)
    assert serving_objects(api, "tenant-a")["statefulsets"]  # bad input loses nothing

    api.patch("maildomainpolicies", "a", {"spec": {"domains": ["*.a.example"]}}, None)
    b_domains = ["b.example", "*.b.example", "a.example", "*.a.example"]
    api.patch("maildomainpolicies", "b", {"spec": {"domains": b_domains}}, None)
    b_dns = {"provider": {"externalDNS": {}}, "addresses": {"ipv4": ["192.0.2.26"]}}
    api.create(in_namespace(maildomain("b", "a.example", dns=b_dns, tls=TLS), "tenant-b"))
    wait_for(lambda: api.get("dnsendpoints", "b-dns", "tenant-b"), 60)
    empty = {"statefulsets": [], "certificates": [], "dnsendpoints": []}
    wait_for(lambda: serving_objects(api, "tenant-a") == empty, 30)
    assert valid_reason(api, "a", "tenant-a") == "DomainNotGranted"
    b_valid = conditions(api.get("maildomains", "b", "tenant-b")).get("Valid", {})
    assert b_valid.get("status") == "True", b_valid


@pytest.mark.parametrize("api", [WITH_DNS_AND_CERTS], indirect=True)
def test_a_served_maildomain_that_joins_a_server_stops_serving_and_says_why(
    api: ApiServer, operator: OperatorThread
) -> None:
    """tenant-a serves a.example, then names a MailServer of its own namespace: the operator
    does not run shared servers yet, so its StatefulSets, Certificate and DNSEndpoint go
    (tenant-b, given the domain afterwards, is the only one serving it) and it says so
    (``ServerPending``, not ``DomainConflict``). One joining a server of another namespace that
    no grant lists gets ``ServerNotAllowed``."""
    two_tenants(api)
    dns = {"provider": {"externalDNS": {}}, "addresses": {"ipv4": ["192.0.2.25"]}}
    api.create(in_namespace(maildomain("a", "a.example", dns=dns, tls=TLS), "tenant-a"))
    wait_for(lambda: api.get("dnsendpoints", "a-dns", "tenant-a"), 60)
    api.patch("maildomains", "a", {"spec": {"serverRef": {"name": "shared"}}}, "tenant-a")
    empty = {"statefulsets": [], "certificates": [], "dnsendpoints": []}
    wait_for(lambda: serving_objects(api, "tenant-a") == empty, 60)
    assert valid_reason(api, "a", "tenant-a") == "ServerPending"
    message = conditions(api.get("maildomains", "a", "tenant-a"))["Valid"]["message"]
    assert "remove spec.serverRef" in message

    other = {"namespace": "platform", "name": "shared"}
    api.create(in_namespace(maildomain("o", "o.a.example", serverRef=other), "tenant-a"))
    wait_for(lambda: valid_reason(api, "o", "tenant-a") is not None, 60)
    assert valid_reason(api, "o", "tenant-a") == "ServerNotAllowed"
    message = conditions(api.get("maildomains", "o", "tenant-a"))["Valid"]["message"]
    assert "ask the platform team to add it" in message
