"""The fourth #13 check (hostile tenants on the emulator): attacks through fields that name a
host the operator's own account then hands to a shared controller. Each test fails while its
attack works."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.component.conftest import conditions, maildomain, wait_ready
from tests.component.emulator import (
    ApiServer,
    builtin_resources,
    cert_manager_resources,
    crd_resources,
    external_dns_resources,
    wait_for,
)
from tests.component.harness import OperatorThread
from tests.component.test_limits import namespace, policy
from tests.component.test_operator import in_namespace

# Annotations by which a shared external-dns (its default sources include Services) publishes
# the names they list, pointing at the Service's load balancer.
NAME_ANNOTATIONS = (
    "external-dns.alpha.kubernetes.io/hostname",
    "external-dns.alpha.kubernetes.io/internal-hostname",
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
    """Attack: tenant-a, granted a.example only (the policy says nothing about annotations,
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


WITH_EXTERNAL_DNS = {
    "resources": [*builtin_resources(), *crd_resources(), *external_dns_resources()]
}


def valid_reason(api: ApiServer, name: str, ns: str) -> str | None:
    return conditions(api.get("maildomains", name, ns)).get("Valid", {}).get("reason")


@pytest.mark.parametrize("api", [WITH_EXTERNAL_DNS], indirect=True)
@pytest.mark.parametrize(
    "broken",
    [
        {"catchAll": "nobody@a.example"},
        {"relay": {"host": "smtp.example.net", "credentialsSecretRef": {"name": "gone"}}},
    ],
    ids=["no-such-mailbox", "missing-secret"],
)
def test_held_a_tenant_keeps_no_domain_whose_grant_was_withdrawn_by_breaking_its_spec(
    api: ApiServer, operator: OperatorThread, broken: dict[str, Any]
) -> None:
    """Attack: tenant-a serves a.example through the shared external-dns. Told that the platform
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


def test_held_spec_domain_cannot_be_changed_to_carry_a_proof_over(api: ApiServer) -> None:
    """Attack: prove one's own name, then change ``spec.domain`` to the victim's (the status's
    ``proven: true`` is read without its domain: tests/unit/test_check13d_proof.py). Held by the
    CRD's ``self == oldSelf`` rule, which the API server (and the emulator) enforces."""
    namespace(api, "tenant-a")
    api.create(in_namespace(maildomain("a", "squat.a.example"), "tenant-a"))
    with pytest.raises(Exception, match="immutable"):
        api.patch("maildomains", "a", {"spec": {"domain": "shop.a.example"}}, "tenant-a")


def test_another_tenants_label_churn_does_not_reconcile_my_maildomain(api: ApiServer) -> None:
    """Attack: tenant-b, granted nothing of a.example, creates a MailDomain claiming a.example
    (refused: DomainNotGranted) and then changes only its labels, again and again (any tenant
    may; the API server takes each write). Every event of a MailDomain marks the other claims
    of its names for a reconcile, metadata-only ones too (``Documents.put_domain``), so each
    label change costs tenant-a's MailDomain a reconcile in tenant-a's own turns (renders,
    applies, reads of its Secrets), paid from tenant-a's slots, at tenant-b's pace."""
    two_tenants(api)
    running = OperatorThread(api)
    passes: list[str] = []
    inner = running.operator.reconcile

    async def counted(body: Any, *, resync: bool = False) -> Any:
        passes.append(body["metadata"]["namespace"])
        return await inner(body, resync=resync)

    running.operator.reconcile = counted  # type: ignore[method-assign]
    with running:
        api.create(in_namespace(maildomain("a", "a.example"), "tenant-a"))
        wait_ready(api, "a", timeout=60, namespace="tenant-a")
        api.create(in_namespace(maildomain("x", "a.example"), "tenant-b"))
        wait_for(lambda: valid_reason(api, "x", "tenant-b") == "DomainNotGranted", 60)
        time.sleep(2)
        before = passes.count("tenant-a")
        for i in range(30):
            labels = {"metadata": {"labels": {"churn": str(i)}}}
            api.patch("maildomains", "x", labels, "tenant-b")
            time.sleep(0.2)
        time.sleep(3)
        caused = passes.count("tenant-a") - before
    assert caused <= 1, (
        f"30 label changes of tenant-b's refused MailDomain cost tenant-a's MailDomain {caused} "
        "reconciles"
    )


WITH_CERT_MANAGER = {
    "resources": [*builtin_resources(), *crd_resources(), *cert_manager_resources()]
}


@pytest.mark.parametrize("api", [WITH_CERT_MANAGER], indirect=True)
def test_replacing_the_only_policy_opens_no_window_for_a_waiting_squatter(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Attack: the platform has one MailDomainPolicy (tenant-b: b.example) and the chart's
    default ``policy.requireGrant=false``. Tenant-a waits with a refused MailDomain of its own
    domain whose host name is tenant-b's mail host, with a ClusterIssuer. The platform replaces
    its policy (``kubectl replace --force``, a GitOps prune and re-create, a rename): for the
    moment no policy exists, the operator serves "as for a single team", where host names are
    not contested and every issuer is allowed, and tenant-a's Certificate for mail.b.example is
    created through the operator's account."""
    for ns in ("tenant-a", "tenant-b"):
        namespace(api, ns)
    only = policy("b", namespaces=["tenant-b"], domains=["b.example", "*.b.example"])
    api.create(only, None)
    api.create(in_namespace(maildomain("b", "b.example"), "tenant-b"))
    wait_ready(api, "b", timeout=60, namespace="tenant-b")
    tls = {
        "issuer": "certManager",
        "certManager": {"issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
    }
    squat = maildomain("squat", "squat.example", hostname="mail.b.example", tls=tls)
    api.create(in_namespace(squat, "tenant-a"))
    wait_for(lambda: valid_reason(api, "squat", "tenant-a") == "DomainNotGranted", 60)

    api.delete("maildomainpolicies", "b", None)
    seen: set[str] = set()
    deadline = time.monotonic() + 4  # the replacement takes a few seconds
    while time.monotonic() < deadline:
        for cert in api.list("certificates", "tenant-a"):
            seen.update(cert["spec"]["dnsNames"])
        time.sleep(0.05)
    api.create(only, None)
    assert "mail.b.example" not in seen, (
        f"while the platform replaced its only policy, tenant-a got a Certificate for {seen}"
    )
