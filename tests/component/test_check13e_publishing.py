"""Fifth #13 check on the emulator: names of another tenant published through annotations the
G1 fix does not know (external-dns's current prefix, other DNS controllers, the mail pods).

Each test fails while the operator's account writes the hostile annotation onto an object of
tenant-a naming tenant-b's names.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.component.conftest import maildomain, wait_ready
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.component.test_external_dns import public_services, two_tenants
from tests.component.test_operator import in_namespace

FOREIGN = "mail.b.example,b.example"


def valid(api: ApiServer) -> str | None:
    obj = api.get("maildomains", "a", "tenant-a") or {}
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Valid":
            return str(cond["status"])
    return None


def hostile_tenant(api: ApiServer, **spec: Any) -> str:
    """tenant-b serves b.example; tenant-a, granted a.example only, writes ``spec``."""
    two_tenants(api)
    api.create(in_namespace(maildomain("b", "b.example"), "tenant-b"))
    wait_ready(api, "b", timeout=60, namespace="tenant-b")
    api.create(in_namespace(maildomain("a", "a.example", **spec), "tenant-a"))
    verdict = wait_for(lambda: valid(api), 60)
    assert verdict is not None
    return verdict


@pytest.mark.parametrize(
    "key",
    [
        # external-dns v0.22.0 and later: its default --annotation-prefix
        "external-dns.kubernetes.io/hostname",
        "external-dns.kubernetes.io/internal-hostname",
        # kops's dns-controller
        "dns.alpha.kubernetes.io/external",
        # CoreDNS's k8s_gateway plugin
        "coredns.io/hostname",
    ],
)
def test_no_dns_controller_annotation_on_the_service_names_another_tenant(
    api: ApiServer, operator: OperatorThread, key: str
) -> None:
    verdict = hostile_tenant(api, service={"annotations": {key: FOREIGN}})
    if verdict == "True":
        wait_for(lambda: public_services(api, "tenant-a"), 60)
    published = [
        value
        for service in public_services(api, "tenant-a")
        for k, value in (service["metadata"].get("annotations") or {}).items()
        if k == key
    ]
    assert not published, f"Valid={verdict}: tenant-a's Service asks {key} for {published}"


def test_no_external_dns_annotation_on_the_mail_pods_names_another_tenant(
    api: ApiServer, operator: OperatorThread
) -> None:
    key = "external-dns.alpha.kubernetes.io/internal-hostname"
    verdict = hostile_tenant(api, pods={"annotations": {key: FOREIGN}})
    if verdict == "True":
        wait_for(lambda: api.list("statefulsets", "tenant-a"), 60)
    published = [
        (sts["metadata"]["name"], value)
        for sts in api.list("statefulsets", "tenant-a")
        for k, value in (sts["spec"]["template"]["metadata"].get("annotations") or {}).items()
        if k == key
    ]
    assert not published, f"Valid={verdict}: tenant-a's pods ask external-dns for {published}"
