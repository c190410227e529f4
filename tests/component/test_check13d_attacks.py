"""The fourth #13 check (hostile tenants on the emulator): attacks through fields that name a
host the operator's own account then hands to a shared controller. Each test fails while its
attack works."""

from __future__ import annotations

from typing import Any

from tests.component.conftest import maildomain, wait_ready
from tests.component.emulator import ApiServer, wait_for
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
