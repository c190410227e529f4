"""Attacks of a hostile tenant on the pure rules, end to end through ``mailstack render`` (with
the platform's policy for tenant-a) and the API functions: the spellings that must not reach
the mail pods' resolver, and the admission policy on updates. Each test fails while its attack
works; the ``test_held_*`` ones are attacks that were stopped from the start. The rules' own
tests are in ``test_hosts``, ``test_render_antivirus``, ``test_hostname_claims``,
``test_policy`` and ``test_material_passwords``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.api import hosts
from mailstack.api.assemble import assemble
from mailstack.api.errors import ValidationError
from mailstack.api.parse import parse_mailbox, parse_maildomain
from mailstack.api.policy import Grants, parse_policy
from mailstack.dns.records import desired_records
from mailstack.material.dkim import generate_dkim_key

# The first check's render through the CLI, with its policy for tenant-a.
from tests.component.test_hostile_check_pure import render


def antivirus(urls: list[str]) -> str:
    listed = ", ".join(urls)
    return (
        "  spam:\n    antivirus:\n      enabled: true\n      signatures:\n"
        f"        official: false\n        urls: [{listed}]\n"
    )


def test_freshclam_is_not_pointed_at_the_metadata_address_by_a_hex_spelling(
    tmp_path: Path,
) -> None:
    """Attack: an address spelled with a hex last label (``test_hosts.HEX_SPELLINGS``):
    ``mailstack render`` with a policy accepts the URL and writes ``DatabaseCustomURL
    http://169.254.169.0xfe/...`` into freshclam.conf, which fetches from 169.254.169.254."""
    done = render(tmp_path, antivirus(["http://169.254.169.0xfe/latest/meta-data/x.ndb"]))
    assert done.returncode != 0, "rendered: freshclam fetches from 169.254.169.254"


def test_freshclam_is_not_pointed_at_a_cluster_service_through_the_search_domains(
    tmp_path: Path,
) -> None:
    """Attack: ``urls: [http://kubernetes.default/x.ndb, http://shop.tenant-b/x.ndb]``. The host
    rule refuses single labels and ``.svc`` names, but a two-label name passes as public; the
    MTA pod has the default ``dnsPolicy: ClusterFirst`` (``ndots:5`` and the search list), and
    freshclam resolves through getaddrinfo, so these would become ``kubernetes.default.svc.
    <cluster domain>`` (the API server) and tenant-b's Service ``shop``. Rendered, each host
    must be an absolute name (a trailing dot: no search list completes it) or the pods must not
    search at all (``dnsPolicy: None``)."""
    done = render(
        tmp_path, antivirus(["http://kubernetes.default/x.ndb", "http://shop.tenant-b/y"])
    )
    if done.returncode != 0:
        return
    configs = [
        text
        for path in (tmp_path / "out").rglob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap"
        for name, text in (doc.get("data") or {}).items()
        if name == "freshclam.conf"
    ]
    dns_policies = [
        doc["spec"]["template"]["spec"].get("dnsPolicy", "ClusterFirst")
        for path in (tmp_path / "out").rglob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "StatefulSet"
    ]
    assert configs, "no freshclam.conf rendered"
    if all(policy == "None" for policy in dns_policies):
        return
    tenants = ("DatabaseCustomURL ", "PrivateMirror ")  # the hosts a tenant writes
    urls = [line.split()[1] for line in configs[0].splitlines() if line.startswith(tenants)]
    relative = [url for url in urls if not hosts.url_host(url).endswith(".")]
    assert urls and not relative, (
        f"rendered: freshclam resolves {relative} through the search domains "
        f"(dnsPolicy {dns_policies})"
    )


# --- held: other spellings and the address rules --------------------------------------------

HELD_NOT_PUBLIC = [
    "169.254.169.254",
    "[::ffff:169.254.169.254]",
    "::ffff:a9fe:a9fe",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",
    "::169.254.169.254",
    "fd00:ec2::254",
    "192.0.0.192",
    "100.100.100.200",  # Alibaba's metadata address (CGNAT range)
    "relay.tenant-b.svc.cluster.test",
    "x.y.pod.cluster.local",
    "kubernetes",
    "metadata.google.internal",
]


@pytest.mark.parametrize("host", HELD_NOT_PUBLIC)
def test_held_not_public(host: str) -> None:
    assert hosts.host_problem(host) is not None


# --- held: the admission policy on updates (the first check's #3) ---------------------------

from tests.unit.test_chart_admission import ALICE, MALLORY, admit  # noqa: E402
from tests.unit.test_chart_admission import mailbox as admission_mailbox  # noqa: E402
from tests.unit.test_chart_admission import maildomain as admission_maildomain  # noqa: E402

RELAY = {"host": "smtp.example.net", "credentialsSecretRef": {"name": "relay"}}


@pytest.mark.parametrize(
    "change",
    [
        {"relay": {**RELAY, "credentialsSecretRef": {"name": "relay", "passwordKey": "token"}}},
        {"relay": {**RELAY, "port": 2525}},
        {"relay": RELAY, "limits": {"recipientsPerMessage": 5}},
        {"relay": RELAY, "pods": {"imagePullSecrets": [{"name": "pull"}]}},
        {"relay": {**RELAY, "caSecretRef": {"name": "relay-ca"}}},
    ],
)
def test_held_any_spec_change_of_a_maildomain_naming_an_unreadable_secret(
    change: dict[str, Any],
) -> None:
    before = admission_maildomain(relay=RELAY)
    assert admit(MALLORY, admission_maildomain(**change), old=before) is not None
    assert admit(ALICE, admission_maildomain(**change), old=before) is None


def test_held_a_mailbox_moved_to_another_address_is_checked() -> None:
    before = admission_mailbox("alice-pw")
    after = admission_mailbox("alice-pw")
    after["spec"]["address"] = "boss@example.com"
    assert admit(MALLORY, after, old=before) is not None


def test_held_metadata_only_updates_pass_by_design() -> None:
    before = admission_maildomain(relay=RELAY)
    after = admission_maildomain(relay=RELAY)
    after["metadata"]["labels"] = {"x": "y"}
    assert admit(MALLORY, after, old=before) is None


# Mailboxes, aliases, catch-all, DKIM selector, published names and host name across tenants.
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
