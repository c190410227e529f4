"""``mailstack render`` with MailServers: each MailDomain naming one is rendered with it, or,
when it may not or cannot be, refused with a problem that says why; nothing is rendered for it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from mailstack.api.assemble import MailService
from mailstack.api.models import IssuerRef, MailDomain, ServerRef, Tls
from mailstack.api.policy import SERVER_NOT_ALLOWED
from mailstack.api.server_join import join_servers
from mailstack.api.server_models import MailServer
from mailstack.pipeline import prepare
from tests.unit.test_api_server import server_doc

API = "mailstack.dev/v1alpha1"
SHARED = {"namespace": "mail-platform", "name": "shared"}


def domain_doc(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "MailDomain",
        "metadata": {"name": "mail", "namespace": namespace},
        "spec": {"domain": f"{namespace}.example", "serverRef": SHARED, **spec},
    }


def policy_doc(namespace: str, servers: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "MailDomainPolicy",
        "metadata": {"name": namespace},
        "spec": {
            "namespaces": [namespace],
            "domains": [f"{namespace}.example", f"*.{namespace}.example"],
            "servers": servers,
        },
    }


def _prepare(tmp_path: Path, docs: list[dict[str, Any]]) -> Any:
    path = tmp_path / "docs.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return prepare([path], None)


def test_a_namespace_the_grants_do_not_let_join_is_refused_as_the_controller_refuses_it(
    tmp_path: Path,
) -> None:
    prepared = _prepare(
        tmp_path,
        [
            server_doc(),
            domain_doc("tenant-a"),
            domain_doc("tenant-b"),
            policy_doc("tenant-a", ["mail-platform/shared"]),
            policy_doc("tenant-b", []),
        ],
    )
    (refused,) = prepared.problems
    assert (refused.document, refused.path, refused.kind) == (
        "MailDomain/tenant-b/mail",
        "spec.serverRef",
        SERVER_NOT_ALLOWED,
    )
    assert refused.source.endswith("docs.yaml#3")
    (server,) = prepared.servers
    assert [s.domain.ref for s, _ in server.domains] == ["MailDomain/tenant-a/mail"]


def test_a_missing_server_is_named_and_nothing_is_rendered_for_its_domain(tmp_path: Path) -> None:
    prepared = _prepare(tmp_path, [domain_doc("tenant-a")])
    (problem,) = prepared.problems
    assert (problem.document, problem.path) == ("MailDomain/tenant-a/mail", "spec.serverRef")
    assert "MailServer/mail-platform/shared is not among the documents" in problem.message
    assert prepared.services == [] and prepared.servers == []


def test_the_servers_own_problems_name_the_server(tmp_path: Path) -> None:
    relay = {"host": "relay.example.net", "credentialsSecretRef": {"name": "relay"}}
    prepared = _prepare(tmp_path, [server_doc(relay=relay)])
    (problem,) = prepared.problems
    assert problem.document == "MailServer/mail-platform/shared"
    assert problem.path == "spec.relay.credentialsSecretRef"
    assert problem.source.endswith("docs.yaml")


def _service(namespace: str, name: str, hostname: str, joins: bool = True) -> MailService:
    domain = f"{namespace}.example"
    ref = ServerRef("mail-platform", "shared") if joins else None
    return MailService(
        MailDomain(name, namespace, domain, hostname, f"postmaster@{domain}", server_ref=ref), ()
    )


SERVER = MailServer("shared", "mail-platform", "mx.platform.example")


def test_join_splits_stacks_from_each_servers_domains() -> None:
    alone = _service("tenant-a", "mail", "mail.tenant-a.example", joins=False)
    joined = _service("tenant-b", "mail", "mail.tenant-b.example")
    layout = join_servers([alone, joined], [SERVER])
    assert layout.problems == []
    assert layout.isolated == [alone]
    assert layout.joined == {SERVER.ref: [joined]}


def test_join_refuses_names_and_host_names_that_would_collide() -> None:
    same_name = _service("mail-platform", "shared", "mail.mail-platform.example", joins=False)
    servers_host = _service("tenant-a", "mail", "mx.platform.example")
    first = _service("tenant-b", "mail", "mail.shop.example")
    second = _service("tenant-c", "mail", "mail.shop.example")
    layout = join_servers([same_name, servers_host, first, second], [SERVER])
    found = [(p.document, p.path) for p in layout.problems]
    assert found == [
        ("MailDomain/mail-platform/shared", "metadata.name"),
        ("MailDomain/tenant-a/mail", "spec.hostname"),
        ("MailDomain/tenant-c/mail", "spec.hostname"),
    ]
    assert "already the host name of MailServer/mail-platform/shared" in layout.problems[1].message
    assert "already the host name of MailDomain/tenant-b/mail" in layout.problems[2].message
    assert layout.joined == {SERVER.ref: [first]} and layout.isolated == []


def test_join_refuses_a_cert_manager_certificate_until_the_server_copies_one() -> None:
    service = _service("tenant-a", "mail", "mail.tenant-a.example")
    issuer = Tls(issuer="certManager", cert_manager_issuer=IssuerRef("letsencrypt"))
    domain = dataclasses.replace(service.domain, tls=issuer)
    layout = join_servers([MailService(domain, ())], [SERVER])
    assert [(p.document, p.path) for p in layout.problems] == [
        ("MailDomain/tenant-a/mail", "spec.tls.issuer")
    ]
    assert layout.joined == {SERVER.ref: []}
