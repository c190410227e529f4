"""Outside check (issue #13): the pure rules a tenant's MailDomain meets under the platform's
policies, driven through the CLI (``mailstack render``) and the API functions. Each test FAILS
when the attack works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from mailstack.api import hosts
from mailstack.api.parse.maildomain import parse_maildomain
from mailstack.api.policy import Grants, parse_policy

POLICY = """\
apiVersion: mailstack.dev/v1alpha1
kind: MailDomainPolicy
metadata: {name: tenant-a}
spec:
  namespaces: [tenant-a]
  domains: [a.example, "*.a.example"]
"""


def render(tmp_path: Path, spec: str) -> subprocess.CompletedProcess[str]:
    doc = tmp_path / "in.yaml"
    doc.write_text(
        POLICY
        + "---\napiVersion: mailstack.dev/v1alpha1\nkind: MailDomain\n"
        + "metadata: {name: a, namespace: tenant-a}\nspec:\n  domain: a.example\n"
        + spec
    )
    cli = Path(sys.executable).with_name("mailstack")
    return subprocess.run(
        [str(cli), "render", "-f", str(doc), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_setup_a_relay_at_a_metadata_address_is_refused(tmp_path: Path) -> None:
    done = render(tmp_path, "  relay: {host: 169.254.169.254}\n")
    assert (done.returncode != 0 and "HostNotAllowed" in done.stdout + done.stderr) or (
        "169.254.169.254 is a link-local address" in done.stdout + done.stderr
    )


def test_antivirus_signature_urls_may_not_name_metadata_or_cluster_hosts(tmp_path: Path) -> None:
    # freshclam in the MTA pod fetches these; the rendered NetworkPolicies have no egress rule.
    spec = (
        "  spam:\n    antivirus:\n      enabled: true\n      signatures:\n"
        "        official: true\n"
        "        privateMirror: http://169.254.169.254/latest/meta-data\n"
        "        urls: [http://kubernetes.default.svc.cluster.local/x.ndb, http://10.0.0.1/y.ndb]\n"
    )
    done = render(tmp_path, spec)
    assert done.returncode != 0, "rendered: freshclam pointed at 169.254.169.254 / cluster hosts"


def test_rspamd_resolvers_may_not_name_metadata_or_cluster_addresses(tmp_path: Path) -> None:
    done = render(tmp_path, '  resolvers: ["169.254.169.254", "10.96.0.10"]\n')
    assert done.returncode != 0, "rendered: rspamd sends its DNS queries to 169.254.169.254"


def test_ietf_protocol_assignment_addresses_are_not_public() -> None:
    # 192.0.0.0/24 (RFC 6890, not globally reachable); 192.0.0.192 is Oracle Cloud Classic's
    # metadata address. Python < 3.11.10/3.12.4 ipaddress counts most of it as global.
    print(sys.version)
    assert hosts.host_problem("192.0.0.192") is not None


def test_loadbalancerip_false_is_not_bypassed_by_an_allowed_annotation() -> None:
    # The documented example: annotations ["metallb.universe.tf/*"] with loadBalancerIP: false.
    policy = parse_policy(
        yaml.safe_load(
            POLICY
            + "  service:\n    types: [LoadBalancer]\n"
            + '    annotations: ["metallb.universe.tf/*"]\n    loadBalancerIP: false\n'
        )
    )
    grants = Grants((policy,))
    doc = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "a", "namespace": "tenant-a"},
        "spec": {
            "domain": "a.example",
            "service": {"annotations": {"metallb.universe.tf/loadBalancerIPs": "203.0.113.7"}},
        },
    }
    refusals = grants.service_refusals(parse_maildomain(doc))
    assert refusals, "a fixed address through MetalLB's annotation passes loadBalancerIP: false"


# --- attacks that held (these pass) ------------------------------------------------------------

from mailstack.api.assemble import assemble  # noqa: E402
from mailstack.api.errors import ValidationError  # noqa: E402
from mailstack.api.parse.mailbox import parse_mailbox  # noqa: E402

B_POLICY = POLICY.replace("tenant-a", "tenant-b").replace("a.example", "b.example")


def _md(ns: str, domain: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {
            "name": "x",
            "namespace": ns,
            "uid": ns,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"domain": domain, **spec},
    }


def _grants() -> Grants:
    return Grants((parse_policy(yaml.safe_load(POLICY)), parse_policy(yaml.safe_load(B_POLICY))))


def test_held_spellings_of_another_tenants_domain_are_refused_or_not_granted() -> None:
    for spelling in [
        "B.EXAMPLE",
        "b.example.",
        "xn--b-example",
        "b.example ",
        "*.b.example",
        "b..example",
        "bb.example",
        "b.example.a.example.evil",
        "a.example.b.example",
    ]:
        try:
            dom = parse_maildomain(_md("tenant-a", spelling))
        except ValidationError:
            continue
        assert _grants().refusal("tenant-a", dom.domain) is not None, spelling


def test_held_hostname_or_mailbox_on_another_tenants_domain() -> None:
    mine = parse_maildomain(_md("tenant-a", "a.example", hostname="mail.b.example"))
    services, problems = assemble([mine], [], _grants())
    assert not services and any("spec.hostname" in p.path for p in problems)
    theirs = parse_maildomain(_md("tenant-b", "b.example"))
    box = parse_mailbox(
        {
            "apiVersion": "mailstack.dev/v1alpha1",
            "kind": "Mailbox",
            "metadata": {"name": "m", "namespace": "tenant-a"},
            "spec": {"address": "ceo@b.example", "passwordSecretRef": {"name": "p"}},
        }
    )
    services, problems = assemble([theirs], [box], _grants())
    assert all(box.address not in s.addresses for s in services)


def test_a_service_name_under_a_custom_cluster_domain_is_not_public() -> None:
    # Clusters whose domain is not cluster.local (here cluster.test, as in facts.md): the relay
    # name rule lets another namespace's Service through; Postfix resolves it (absolute) through
    # the pod's cluster DNS, and the relay's address is not checked at connect time.
    assert hosts.host_problem("relay.tenant-b.svc.cluster.test") is not None
