"""The operator serves a shared MailServer (#18): MailDomains of three namespaces join it, one
leaves, one is not allowed to join.

The server's objects are in its namespace, owned by the MailServer; each domain's own material
(its DKIM key) in its own namespace, owned by its MailDomain, and copied into the server's
Secrets. A domain leaving changes those Secrets only, never the pod templates.
"""

from __future__ import annotations

import base64
from typing import Any

from tests.component.conftest import API, conditions, mailbox, maildomain, password
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread

PLATFORM = "platform"
TENANTS = {"a": "tenant-a", "b": "tenant-b", "c": "tenant-c"}
SHARED = {"namespace": PLATFORM, "name": "shared"}


def in_namespace(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    doc["metadata"]["namespace"] = namespace
    return doc


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def policy(name: str, namespaces: list[str], domains: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "MailDomainPolicy",
        "metadata": {"name": name},
        "spec": {"namespaces": namespaces, "domains": domains, **spec},
    }


def mailserver() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "MailServer",
        "metadata": {"name": "shared", "namespace": PLATFORM},
        "spec": {"hostname": "mx.hosting.example", "tls": {"issuer": "internal"}},
    }


def secret_data(api: ApiServer, name: str, namespace: str) -> dict[str, str]:
    found = api.get("secrets", name, namespace) or {}
    return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}


def templates(api: ApiServer) -> dict[str, Any]:
    return {
        s["metadata"]["name"]: s["spec"]["template"] for s in api.list("statefulsets", PLATFORM)
    }


def server_status(api: ApiServer) -> dict[str, Any]:
    return (api.get("mailservers", "shared", PLATFORM) or {}).get("status") or {}


def valid(api: ApiServer, name: str, namespace: str) -> dict[str, Any]:
    return conditions(api.get("maildomains", name, namespace)).get("Valid", {})


def owner_kinds(obj: dict[str, Any] | None) -> set[tuple[str, str]]:
    refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return {(r["kind"], r["name"]) for r in refs}


def test_three_domains_of_three_namespaces_join_one_leaves_one_is_not_allowed(
    api: ApiServer, operator: OperatorThread
) -> None:
    for ns in [PLATFORM, *TENANTS.values(), "tenant-d"]:
        api.create(namespace(ns), None)
    api.create(
        policy(
            "tenants",
            list(TENANTS.values()),
            [d for x in TENANTS for d in (f"{x}.example", f"mail.{x}.example")],
            servers=["platform/shared"],
        ),
        None,
    )
    api.create(policy("d", ["tenant-d"], ["d.example", "mail.d.example"]), None)
    api.create(mailserver(), PLATFORM)
    for x, ns in TENANTS.items():
        doc = maildomain(x, f"{x}.example", serverRef=SHARED, dkim={"selector": f"sel{x}"})
        api.create(in_namespace(doc, ns), ns)
    api.create(in_namespace(password("ada-password"), "tenant-a"), "tenant-a")
    api.create(
        in_namespace(mailbox("ada", "ada@a.example", "ada-password"), "tenant-a"), "tenant-a"
    )
    denied = maildomain("d", "d.example", serverRef=SHARED, dkim={"selector": "seld"})
    api.create(in_namespace(denied, "tenant-d"), "tenant-d")

    # Every domain's key, in its own namespace and in the server's Secret.
    def dkim_keys() -> dict[str, str]:
        return secret_data(api, "shared-dkim", PLATFORM)

    wanted = {f"{x}.example.sel{x}.key" for x in TENANTS}
    wait_for(lambda: wanted <= set(dkim_keys()), 90)
    wait_for(lambda: server_status(api).get("domains") == 3, 30)
    for x, ns in TENANTS.items():
        own = api.get("secrets", f"{x}-dkim", ns)
        assert owner_kinds(own) == {("MailDomain", x)}
        assert (
            secret_data(api, f"{x}-dkim", ns)[f"sel{x}.key"]
            == dkim_keys()[f"{x}.example.sel{x}.key"]
        )
    assert {s["metadata"]["name"] for s in api.list("statefulsets", PLATFORM)} == {
        "shared-mta",
        "shared-mda",
    }
    for sts in api.list("statefulsets", PLATFORM):
        assert owner_kinds(sts) == {("MailServer", "shared")}

    def passwd() -> str:
        return secret_data(api, "shared-users", PLATFORM).get("passwd", "")

    wait_for(lambda: "ada@a.example:" in passwd(), 30)

    # Its Mailboxes' statuses are the server pass's (the MailDomain renders none of them).
    def ada() -> dict[str, Any]:
        return conditions(api.get("mailboxes", "ada", "tenant-a"))

    wait_for(lambda: ada().get("Ready", {}).get("status") == "True", 30)
    assert ada()["Valid"]["status"] == "True"
    # A joined domain's Mailbox password changes: the server's passwd follows, no pod template.
    unchanged = templates(api)
    line = next(x for x in passwd().splitlines() if x.startswith("ada@a.example:"))
    api.patch("secrets", "ada-password", {"stringData": {"password": "another-horse"}}, "tenant-a")
    wait_for(lambda: line not in passwd() and "ada@a.example:" in passwd(), 30)
    assert templates(api) == unchanged
    status = server_status(api)
    assert status["mailboxes"] == 1
    # Each joined MailDomain says that the server serves it (no stack of its own).
    for x, ns in TENANTS.items():
        wait_for(lambda x=x, ns=ns: valid(api, x, ns).get("reason") == "ServedByServer", 30)
        assert valid(api, x, ns)["status"] == "True"
        assert "MailServer/platform/shared" in valid(api, x, ns)["message"]
        assert not api.list("statefulsets", ns)
    assert conditions(api.get("mailservers", "shared", PLATFORM))["Valid"]["status"] == "True"

    # Not allowed: its own pass says why, and nothing of it is in the server's Secrets.
    wait_for(
        lambda: (
            conditions(api.get("maildomains", "d", "tenant-d")).get("Valid", {}).get("reason")
            == "ServerNotAllowed"
        ),
        30,
    )
    for name in ("shared-dkim", "shared-users", "shared-domain-tls"):
        data = secret_data(api, name, PLATFORM)
        assert not any("d.example" in k or "d.example" in v for k, v in data.items()), name

    # c leaves: its entries go from the server's Secrets; no pod template changes.
    before = templates(api)
    api.patch("maildomains", "c", {"spec": {"serverRef": None}}, "tenant-c")
    wait_for(lambda: "c.example.selc.key" not in dkim_keys(), 60)
    wait_for(lambda: server_status(api).get("domains") == 2, 30)
    assert "c.example" not in "".join(secret_data(api, "shared-users", PLATFORM).values())
    assert "mail.c.example.crt" not in secret_data(api, "shared-domain-tls", PLATFORM)
    assert {f"{x}.example.sel{x}.key" for x in "ab"} <= set(dkim_keys())
    assert templates(api) == before


def test_a_domain_whose_own_secret_name_is_taken_is_left_out_and_named(
    api: ApiServer, operator: OperatorThread
) -> None:
    for ns in (PLATFORM, "tenant-e"):
        api.create(namespace(ns), None)
    foreign = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "e-dkim"}}
    api.create(in_namespace({**foreign, "stringData": {"x": "not ours"}}, "tenant-e"), "tenant-e")
    api.create(mailserver(), PLATFORM)
    for x in "ef":
        doc = maildomain(x, f"{x}.example", serverRef=SHARED, dkim={"selector": f"sel{x}"})
        api.create(in_namespace(doc, "tenant-e"), "tenant-e")
    wait_for(lambda: "f.example.self.key" in secret_data(api, "shared-dkim", PLATFORM), 90)
    wait_for(lambda: server_status(api).get("domains") == 1, 30)
    message = conditions(api.get("mailservers", "shared", PLATFORM))["Valid"]["message"]
    assert "not serving tenant-e/e" in message
    assert not any(k.startswith("e.example") for k in secret_data(api, "shared-dkim", PLATFORM))
    assert secret_data(api, "e-dkim", "tenant-e") == {"x": "not ours"}
