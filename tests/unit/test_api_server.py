"""The MailServer kind, a MailDomain's spec.serverRef and the grant of a shared server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.api import models
from mailstack.api.assemble import SERVER_PENDING, assemble, eligibility_problems
from mailstack.api.documents import parse_documents
from mailstack.api.errors import ValidationError
from mailstack.api.parse import parse_maildomain
from mailstack.api.parse.server import parse_mailserver
from mailstack.api.policy import SERVER_NOT_ALLOWED, Grants, parse_policy
from mailstack.api.server_models import SERVER_FIELDS, MailServer, Replicas
from mailstack.commands.main import main

API = "mailstack.dev/v1alpha1"


def server_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "MailServer",
        "metadata": {"name": "shared", "namespace": "mail-platform"},
        "spec": {"hostname": "mx.platform.example", **spec},
    }


def domain_doc(namespace: str = "tenant-a", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "MailDomain",
        "metadata": {"name": "mail", "namespace": namespace},
        "spec": {"domain": f"{namespace}.example", **spec},
    }


def problems(parse: Any, doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as raised:
        parse(doc)
    return [(p.path, p.message) for p in raised.value.problems]


def test_a_minimal_server_takes_the_maildomains_defaults_for_every_section() -> None:
    server = parse_mailserver(server_doc())
    hostname = "mx.platform.example"
    outbound = models.Outbound(helo_name=hostname)  # as a MailDomain's: the host name
    assert server == MailServer("shared", "mail-platform", hostname, outbound=outbound)
    assert server.helo_name == "mx.platform.example"
    assert server.ref == "MailServer/mail-platform/shared"


def test_the_server_sections_are_parsed_by_the_maildomains_own_parsers() -> None:
    spec = {
        "replicas": {"mta": 2, "mda": 3},
        "service": {"exposure": "ClusterIP"},
        "storage": {"mailboxes": {"size": "100Gi"}},
        "spam": {"thresholds": {"reject": 20}},
        "outbound": {"addresses": ["192.0.43.7"]},
        "limits": {"perClient": {"smtpConnections": 5}},
        "protocols": {"pop3": False},
        "pods": {"priorityClassName": "mail"},
    }
    server = parse_mailserver(server_doc(**spec))
    dom = parse_maildomain(domain_doc(**{k: v for k, v in spec.items() if k != "replicas"}))
    assert server.replicas == Replicas(mta=2, mda=3)
    assert server.service == dom.service
    assert server.storage == dom.storage
    assert server.spam == dom.spam
    assert server.limits == dom.limits
    assert server.protocols == dom.protocols
    assert server.pods == dom.pods
    assert server.outbound.ipv4 == dom.outbound.ipv4 == ("192.0.43.7",)
    assert server.helo_name == "mx.platform.example"


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"hostname": None}, "spec.hostname"),
        ({"hostname": "MX.example"}, "spec.hostname"),
        ({"replicas": {"mta": 0}}, "spec.replicas.mta"),
        ({"replicas": {"mda": 17}}, "spec.replicas.mda"),
        ({"replicas": {"mtas": 2}}, "spec.replicas.mtas"),
        ({"domain": "a.example"}, "spec.domain"),  # a server serves no domain of its own
        ({"spam": {"thresholds": {"addHeader": 9, "reject": 8}}}, "spec.spam.thresholds"),
        ({"service": {"exposure": "Tunnel"}}, "spec.service.exposure"),
    ],
)
def test_a_server_refuses_what_its_sections_refuse(spec: dict[str, Any], path: str) -> None:
    doc = server_doc(**spec)
    if spec.get("hostname", "") is None:
        del doc["spec"]["hostname"]
    assert path in [p for p, _ in problems(parse_mailserver, doc)]


def test_a_domain_names_its_server_whose_namespace_defaults_to_its_own() -> None:
    dom = parse_maildomain(domain_doc(serverRef={"namespace": "mail-platform", "name": "shared"}))
    assert dom.server_ref == models.ServerRef("mail-platform", "shared")
    own = parse_maildomain(domain_doc(serverRef={"name": "shared"}))
    assert own.server_ref == models.ServerRef("tenant-a", "shared")
    assert parse_maildomain(domain_doc()).server_ref is None
    found = problems(parse_maildomain, domain_doc(serverRef={"namespace": "mail-platform"}))
    assert [p for p, _ in found] == ["spec.serverRef.name"]


@pytest.mark.parametrize("field", SERVER_FIELDS)
def test_a_domain_on_a_server_refuses_each_field_of_the_server(field: str) -> None:
    values: dict[str, Any] = {
        "service": {"exposure": "ClusterIP"},
        "storage": {"retention": "Delete"},
        "pods": {"priorityClassName": "mail"},
        "spam": {"enabled": False},
        "outbound": {"addresses": ["192.0.43.7"]},
        "limits": {"messageSize": "10Mi"},
        "postscreen": {"deepProtocolTests": True},
        "resolvers": ["192.0.2.53"],
        "protocols": {"pop3": False},
        "relay": {"host": "smtp.example.net"},
    }
    alone = parse_maildomain(domain_doc(**{field: values[field]}))
    assert alone.server_ref is None  # valid on a domain of its own
    doc = domain_doc(serverRef={"namespace": "mail-platform", "name": "shared"})
    doc["spec"][field] = values[field]
    found = problems(parse_maildomain, doc)
    assert len(found) == 1
    path, message = found[0]
    assert path == f"spec.{field}"
    assert "belongs to the MailServer/mail-platform/shared named in spec.serverRef" in message


def test_a_domain_on_a_server_keeps_its_own_host_name_tls_and_dkim() -> None:
    dom = parse_maildomain(
        domain_doc(
            serverRef={"namespace": "mail-platform", "name": "shared"},
            hostname="imap.tenant-a.example",
            dkim={"selector": "a2026"},
            tls={"issuer": "acme", "acme": {"email": "hostmaster@tenant-a.example"}},
        )
    )
    assert (dom.hostname, dom.dkim.selector, dom.tls.issuer) == (
        "imap.tenant-a.example",
        "a2026",
        "acme",
    )


def policy_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "MailDomainPolicy",
        "metadata": {"name": "tenant-a"},
        "spec": {
            "namespaces": ["tenant-a"],
            "domains": ["tenant-a.example", "*.tenant-a.example"],
            **spec,
        },
    }


def joining(namespace: str, server_namespace: str = "mail-platform") -> models.MailDomain:
    ref = {"namespace": server_namespace, "name": "shared"}
    return parse_maildomain(domain_doc(namespace, serverRef=ref))


def test_a_policy_lists_servers_as_namespace_and_name_sorted() -> None:
    parsed = parse_policy(policy_doc(servers=["mail-platform/shared", "a/b"]))
    assert parsed.servers == ("a/b", "mail-platform/shared")
    found = problems(parse_policy, policy_doc(servers=["shared", "a/B", "a/b/c"]))
    assert [p for p, _ in found] == ["spec.servers[0]", "spec.servers[1]", "spec.servers[2]"]


def test_a_server_of_another_namespace_needs_a_grant_that_lists_it() -> None:
    dom = joining("tenant-a")
    refused = eligibility_problems(dom, Grants((parse_policy(policy_doc()),)))
    assert [(p.path, p.kind) for p in refused] == [("spec.serverRef", SERVER_NOT_ALLOWED)]
    assert "MailDomainPolicy/tenant-a does not list the MailServer/mail-platform/shared" in (
        refused[0].message
    )
    listed = Grants((parse_policy(policy_doc(servers=["mail-platform/shared"])),))
    assert eligibility_problems(dom, listed) == []
    other = Grants((parse_policy(policy_doc(servers=["mail-platform/other"])),))
    assert [p.kind for p in eligibility_problems(dom, other)] == [SERVER_NOT_ALLOWED]


def test_a_server_of_the_domains_own_namespace_or_without_policies_needs_no_listing() -> None:
    grants = Grants((parse_policy(policy_doc()),))
    assert eligibility_problems(joining("tenant-a", "tenant-a"), grants) == []
    assert eligibility_problems(joining("tenant-a"), Grants()) == []


def test_an_ungranted_domain_is_refused_for_its_domain_not_its_server() -> None:
    grants = Grants((parse_policy(policy_doc(domains=["other.example"])),))
    refused = eligibility_problems(joining("tenant-a"), grants)
    assert [p.path for p in refused] == ["spec.domain"]


def test_the_document_reader_reads_mailservers_and_their_problems() -> None:
    bad = server_doc(replicas={"mta": 0})
    bad["metadata"]["name"] = "broken"
    inputs = parse_documents([("a.yaml", server_doc()), ("b.yaml", bad), ("c.yaml", server_doc())])
    assert [s.ref for s in inputs.servers] == ["MailServer/mail-platform/shared"]
    assert [(p.document, p.path) for p in inputs.problems] == [
        ("MailServer/mail-platform/broken", "spec.replicas.mta"),
        ("MailServer/mail-platform/shared", "metadata.name"),  # defined twice
    ]
    assert inputs.sources["MailServer/mail-platform/shared"] == "a.yaml"


def test_the_sections_the_api_server_defaults_pass_on_a_domain_on_a_server() -> None:
    """The CRD defaults service, storage, spam, limits and protocols to {}: a stored MailDomain
    naming a server has them, and they are the defaults, not settings of the domain."""
    ref = {"namespace": "mail-platform", "name": "shared"}
    defaulted = {"service": {}, "storage": {}, "spam": {}, "limits": {}, "protocols": {}}
    dom = parse_maildomain(domain_doc(serverRef=ref, **defaulted))
    assert dom.server_ref == models.ServerRef("mail-platform", "shared")
    explicit = {"service": {"exposure": "LoadBalancer"}, "protocols": {"imap": True}}
    assert parse_maildomain(domain_doc(serverRef=ref, **explicit)).service == dom.service


def test_the_mailserver_crd_is_the_generated_one() -> None:
    """crds/mailserver.yaml copies the MailDomain CRD's sections: a change there must reach it."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "gen-mailserver-crd.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_domain_on_a_server_is_no_stack_of_its_own_and_claims_nothing() -> None:
    dom = joining("tenant-a")
    alone = parse_maildomain(domain_doc("tenant-b"))
    services, found = assemble([dom, alone], [])
    assert [s.domain.ref for s in services] == ["MailDomain/tenant-b/mail"]
    assert [(p.document, p.path, p.kind) for p in found] == [
        ("MailDomain/tenant-a/mail", "spec.serverRef", SERVER_PENDING)
    ]
    joined, found = assemble([dom, alone], [], on_servers=True)
    assert [s.domain.ref for s in joined] == [
        "MailDomain/tenant-a/mail",
        "MailDomain/tenant-b/mail",
    ]
    assert found == []


def test_mailstack_render_renders_a_server_with_its_domains_and_no_stack_for_them(
    tmp_path: Path, capsys: Any
) -> None:
    server = tmp_path / "server.yaml"
    server.write_text(yaml.safe_dump(server_doc()))
    domain = tmp_path / "domain.yaml"
    domain.write_text(
        yaml.safe_dump(domain_doc(serverRef={"namespace": "mail-platform", "name": "shared"}))
    )
    alone = tmp_path / "alone.yaml"
    alone.write_text(yaml.safe_dump(domain_doc("tenant-b")))
    assert main(["render", "-f", str(server), "-f", str(alone)]) == 0
    assert "namespace: tenant-b" in capsys.readouterr().out
    assert main(["render", "-f", str(server), "-f", str(domain)]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    tenant = {
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if o["metadata"]["namespace"] == "tenant-a"
    }
    # the domain's own material, and no stack of its own
    assert tenant == {("Secret", f"mail-{n}") for n in ("users", "dkim", "ca", "tls")}
    platform = {
        o["metadata"]["name"] for o in objects if o["metadata"]["namespace"] == "mail-platform"
    }
    assert {"shared-mta", "shared-mda", "shared-domain-tls"} <= platform
    assert main(["render", "-f", str(domain)]) == 2  # without its server: nothing
    err = capsys.readouterr().err
    assert "MailDomain/tenant-a/mail spec.serverRef: MailServer/mail-platform/shared is not" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(server_doc(replicas={"mta": 0})))
    assert main(["render", "-f", str(bad)]) == 2
    assert "MailServer/mail-platform/shared spec.replicas.mta" in capsys.readouterr().err
