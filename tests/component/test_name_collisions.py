"""A MailDomain named after objects it did not make does not take them over.

The children have fixed names (``<n>``, ``<n>-tls``, ``<n>-dkim``, ...). A tenant who may create
MailDomains, but not write Services or Secrets, names one after an existing app: the operator
neither merges into the app's objects, nor makes itself their controller (so deleting the
MailDomain does not delete them), nor reads or mounts their Secrets. The MailDomain says
``NameTaken`` and gets nothing applied until the name is free; the objects the operator made
(its ownerReference) stay its own across passes.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from tests.component.conftest import NS, conditions, maildomain, settle
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread


def shop_service() -> dict[str, Any]:
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


def shop_tls() -> dict[str, Any]:
    """Another app's TLS Secret (cert-manager's for an Ingress, say): not the operator's."""
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


def valid_condition(api: ApiServer, name: str) -> dict[str, Any]:
    return conditions(api.get("maildomains", name)).get("Valid", {})


def test_a_maildomain_does_not_take_over_an_existing_service_or_secret(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(shop_service(), manager="helm")
    api.create(shop_tls(), manager="cert-manager")
    before_svc = api.get("services", "shop")
    before_secret = api.get("secrets", "shop-tls")

    api.create(maildomain("shop", "shop.example"))
    wait_for(lambda: valid_condition(api, "shop").get("reason") == "NameTaken", 30)
    settle(api, operator)

    svc = api.get("services", "shop")
    secret = api.get("secrets", "shop-tls")
    assert svc["spec"]["selector"] == before_svc["spec"]["selector"]
    assert not svc["metadata"].get("ownerReferences")
    assert secret["data"] == before_secret["data"]
    assert not secret["metadata"].get("ownerReferences")
    # All or nothing: no child of the stack was written, so no half stack runs.
    assert api.get("statefulsets", "shop-mta") is None
    assert api.get("secrets", "shop-dkim") is None
    found = conditions(api.get("maildomains", "shop"))
    valid = found["Valid"]
    assert valid["status"] == "False"
    assert "Service/shop" in valid["message"] and "Secret/shop-tls" in valid["message"]
    assert "rename the MailDomain or remove the object" in valid["message"]
    assert found["Rendered"]["reason"] == "NameTaken"
    assert found["Ready"]["status"] == "False"


def test_deleting_that_maildomain_does_not_delete_the_apps_service_and_secret(
    api: ApiServer, operator: OperatorThread
) -> None:
    # The emulator's garbage collector, like kube-controller-manager's, follows ownerReferences.
    api.create(shop_service(), manager="helm")
    api.create(shop_tls(), manager="cert-manager")
    api.create(maildomain("shop", "shop.example"))
    wait_for(lambda: valid_condition(api, "shop").get("reason") == "NameTaken", 30)
    settle(api, operator)
    api.delete("maildomains", "shop")
    wait_for(lambda: api.get("maildomains", "shop") is None, 30)
    time.sleep(2)
    gone = [n for p, n in (("services", "shop"), ("secrets", "shop-tls")) if api.get(p, n) is None]
    assert not gone, f"deleting MailDomain shop deleted the app's {gone}"


def test_a_foreign_dkim_secret_is_neither_merged_into_nor_mounted(
    api: ApiServer, operator: OperatorThread
) -> None:
    # corp-dkim is someone else's (another mail system's keys), even labelled like the
    # operator's: without the MailDomain's ownerReference its key is not read back as corp's
    # DKIM key, and nothing is added to it.
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "corp-dkim",
                "namespace": NS,
                "labels": {
                    "app.kubernetes.io/managed-by": "mailstack",
                    "app.kubernetes.io/instance": "corp",
                },
            },
            "stringData": {"payroll-signing.key": "TOP-SECRET-KEY"},
        },
        manager="someone-else",
    )
    api.create(maildomain("corp", "corp.example"))
    valid = wait_for(lambda: valid_condition(api, "corp").get("reason") == "NameTaken" or None, 30)
    assert valid
    settle(api, operator)
    assert "Secret/corp-dkim" in valid_condition(api, "corp")["message"]
    secret = api.get("secrets", "corp-dkim")
    assert sorted(secret["data"]) == ["payroll-signing.key"]
    assert not secret["metadata"].get("ownerReferences")
    assert api.get("statefulsets", "corp-mta") is None


def test_the_dkim_volume_mounts_only_the_key_rspamd_reads(
    api: ApiServer, operator: OperatorThread
) -> None:
    # A key added to the operator's own corp-dkim (by hand, by another tool) never reaches the
    # MTA pod: the volume lists its items.
    api.create(maildomain("corp", "corp.example"))
    sts = wait_for(lambda: api.get("statefulsets", "corp-mta"), 30)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    dkim = volumes["dkim"]["secret"]
    assert dkim["secretName"] == "corp-dkim"
    assert [item["key"] for item in dkim["items"]] == ["mailstack.key"]


def test_the_maildomain_is_applied_once_the_name_is_free_and_keeps_its_own_objects(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(shop_service(), manager="helm")
    api.create(maildomain("shop", "shop.example"))
    wait_for(lambda: valid_condition(api, "shop").get("reason") == "NameTaken", 30)
    api.delete("services", "shop")
    # Any change of the MailDomain (here a label) runs a pass; so does the periodic resync.
    api.patch("maildomains", "shop", {"metadata": {"labels": {"retry": "1"}}})
    wait_for(lambda: valid_condition(api, "shop").get("status") == "True", 30)
    owner_uid = api.get("maildomains", "shop")["metadata"]["uid"]
    svc = wait_for(lambda: api.get("services", "shop"), 30)
    assert [ref["uid"] for ref in svc["metadata"]["ownerReferences"]] == [owner_uid]
    assert svc["spec"]["selector"]["app.kubernetes.io/instance"] == "shop"
    # Its own objects stay its own on the next passes: no NameTaken, nothing rewritten.
    since = settle(api, operator)
    api.patch("maildomains", "shop", {"metadata": {"labels": {"retry": "2"}}})
    time.sleep(1)
    settle(api, operator)
    applies = [w for w in api.writes(since) if w.verb == "apply" and w.changed]
    assert not applies, applies
    assert valid_condition(api, "shop")["status"] == "True"
