"""The fourth #13 check: attacks on the pure rules that held (these pass)."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.api.assemble import assemble
from mailstack.api.errors import ValidationError
from mailstack.api.parse import parse_mailbox, parse_maildomain
from mailstack.api.policy import Grants, parse_policy
from mailstack.dns.records import desired_records
from mailstack.material.dkim import generate_dkim_key

API = "mailstack.dev/v1alpha1"


def policy(name: str, namespace: str, domains: list[str]) -> Any:
    doc = {"apiVersion": API, "kind": "MailDomainPolicy", "metadata": {"name": name}}
    return parse_policy({**doc, "spec": {"namespaces": [namespace], "domains": domains}})


GRANTS = Grants(
    (
        policy("a", "tenant-a", ["a.example", "*.a.example"]),
        policy("b", "tenant-b", ["b.example", "*.b.example"]),
    )
)


def domain(namespace: str, name: str, dom: str, created: str, **spec: Any) -> Any:
    meta = {"name": name, "namespace": namespace, "uid": name, "creationTimestamp": created}
    doc = {"apiVersion": API, "kind": "MailDomain", "metadata": meta}
    return parse_maildomain({**doc, "spec": {"domain": dom, **spec}})


def box(namespace: str, name: str, address: str, **spec: Any) -> Any:
    meta = {"name": name, "namespace": namespace, "uid": name}
    doc = {"apiVersion": API, "kind": "Mailbox", "metadata": meta}
    spec = {"address": address, "passwordSecretRef": {"name": "p"}, **spec}
    return parse_mailbox({**doc, "spec": spec})


def test_held_a_mailbox_of_another_namespace_does_not_join_my_domain() -> None:
    a = domain("tenant-a", "a", "a.example", "2026-01-01T00:00:00Z")
    intruder = box("tenant-b", "ceo", "ceo@a.example")
    services, problems = assemble([a], [intruder], GRANTS)
    assert [s.domain.ref for s in services] == [a.ref]
    assert services[0].mailboxes == ()
    assert any(p.document == intruder.ref for p in problems)


@pytest.mark.parametrize(
    "spec",
    [
        {"aliases": ["ceo@b.example"]},  # a Mailbox alias on another domain
    ],
)
def test_held_a_mailbox_alias_may_not_name_another_domain(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="must be on the mailbox's domain"):
        box("tenant-a", "x", "x@a.example", **spec)


@pytest.mark.parametrize("catch_all", ["x@b.example"])
def test_held_a_catch_all_may_not_name_another_domain(catch_all: str) -> None:
    with pytest.raises(ValidationError, match="is not on the domain"):
        domain("tenant-a", "a", "a.example", "2026-01-01T00:00:00Z", catchAll=catch_all)


@pytest.mark.parametrize("selector", ["x._domainkey.b", "_mailstack-challenge", "a.b.example."])
def test_held_a_dkim_selector_cannot_name_a_record_outside_the_domain(selector: str) -> None:
    with pytest.raises(ValidationError, match="one DNS label"):
        domain("tenant-a", "a", "a.example", "2026-01-01T00:00:00Z", dkim={"selector": selector})


def test_held_every_published_name_is_under_the_granted_domain_or_host_name() -> None:
    a = domain(
        "tenant-a",
        "a",
        "a.example",
        "2026-01-01T00:00:00Z",
        hostname="mx.a.example",
        dns={"mtaSts": {"enabled": True}, "tlsRpt": {"enabled": True}},
    )
    names = {r.name for r in desired_records(a, generate_dkim_key("mailstack", "ed25519"))}
    outside = {n for n in names if not (n == "a.example" or n.endswith(".a.example"))}
    assert not outside


def test_held_a_granted_tenant_cannot_name_another_tenants_domain_as_its_host_name() -> None:
    b = domain("tenant-b", "b", "b.example", "2026-01-01T00:00:00Z")
    a = domain("tenant-a", "a", "a.example", "2026-01-02T00:00:00Z", hostname="mail.b.example")
    services, problems = assemble([a, b], [], GRANTS)
    assert [s.domain.ref for s in services] == [b.ref]
    assert any(p.document == a.ref and p.path == "spec.hostname" for p in problems)
