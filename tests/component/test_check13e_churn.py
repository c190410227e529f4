"""Fifth #13 check on the emulator: G3 (another tenant's label churn reconciling my MailDomain)
through other writes a tenant may make to its own refused MailDomain: annotations, finalizers,
and spec fields the contest for names never reads.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.component.conftest import maildomain, wait_ready
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.component.test_external_dns import two_tenants
from tests.component.test_limits import valid_reason
from tests.component.test_operator import in_namespace

CHURN = 30


def annotations(i: int) -> dict[str, Any]:
    return {"metadata": {"annotations": {"churn": str(i)}}}


def finalizers(i: int) -> dict[str, Any]:
    return {"metadata": {"finalizers": [f"tenant-b.example/churn-{i}"]}}


def unread_spec(i: int) -> dict[str, Any]:
    # a field of the refused claim that no contest reads (its pods' labels)
    return {"spec": {"pods": {"labels": {"churn": str(i)}}}}


@pytest.mark.parametrize("write", [annotations, finalizers, unread_spec])
def test_another_tenants_churn_does_not_reconcile_my_maildomain(api: ApiServer, write: Any) -> None:
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
        for i in range(CHURN):
            api.patch("maildomains", "x", write(i), "tenant-b")
            time.sleep(0.2)
        time.sleep(3)
        caused = passes.count("tenant-a") - before
    assert caused <= 1, (
        f"{CHURN} {write.__name__} writes to tenant-b's refused MailDomain cost tenant-a's "
        f"MailDomain {caused} reconciles"
    )
