"""Who may serve which domain: MailDomainPolicy parsing, matching and the grant check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailstack.api.assemble import assemble
from mailstack.api.errors import ValidationError
from mailstack.api.models import ServiceSpec
from mailstack.api.parse import parse_maildomain
from mailstack.api.policy import Grants, MailDomainPolicy, domain_matches, parse_policy
from mailstack.api.service_limits import ServiceLimits
from mailstack.commands.main import main

API = "mailstack.dev/v1alpha1"


def policy_doc(name: str, namespaces: list[str], domains: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "MailDomainPolicy",
        "metadata": {"name": name},
        "spec": {"namespaces": namespaces, "domains": domains},
    }


def claim(namespace: str, domain: str, created: str) -> Any:
    return parse_maildomain(
        {
            "apiVersion": API,
            "kind": "MailDomain",
            "metadata": {"name": "mail", "namespace": namespace, "creationTimestamp": created},
            "spec": {"domain": domain},
        }
    )


@pytest.mark.parametrize(
    ("pattern", "domain", "matches"),
    [
        ("tenant-a.example", "tenant-a.example", True),
        ("tenant-a.example", "shop.tenant-a.example", False),
        ("*.tenant-a.example", "shop.tenant-a.example", True),
        ("*.tenant-a.example", "a.b.tenant-a.example", True),
        ("*.tenant-a.example", "tenant-a.example", False),  # the suffix itself is not under it
        ("*.tenant-a.example", "evil-tenant-a.example", False),  # a label boundary, not a suffix
        ("*.tenant-a.example", "tenant-a.example.evil", False),
    ],
)
def test_a_pattern_matches_its_name_or_the_names_under_it(
    pattern: str, domain: str, matches: bool
) -> None:
    assert domain_matches(pattern, domain) is matches


def test_a_policy_parses_sorted_and_refuses_bad_entries_with_their_place() -> None:
    parsed = parse_policy(policy_doc("a", ["tenant-a", "ops"], ["*.a.example", "a.example"]))
    assert parsed == MailDomainPolicy("a", ("ops", "tenant-a"), ("*.a.example", "a.example"))
    with pytest.raises(ValidationError) as raised:
        parse_policy(policy_doc("a", ["Tenant_A"], ["*", "a.*.example"]))
    assert [(p.document, p.path) for p in raised.value.problems] == [
        ("MailDomainPolicy/a", "spec.namespaces[0]"),
        ("MailDomainPolicy/a", "spec.domains[0]"),
        ("MailDomainPolicy/a", "spec.domains[1]"),
    ]


def test_without_policies_every_namespace_may_claim_any_domain() -> None:
    assert not Grants().enforced
    assert Grants().refusal("tenant-a", "anything.example") is None


def test_with_a_policy_only_what_it_grants_may_be_served_and_the_refusal_says_whom_to_ask() -> None:
    grants = Grants((parse_policy(policy_doc("tenant-a", ["tenant-a"], ["a.example"])),))
    assert grants.refusal("tenant-a", "a.example") is None
    assert grants.refusal("tenant-a", "b.example") == (
        "no MailDomainPolicy grants namespace tenant-a the domain b.example; "
        "ask the platform team to add it to MailDomainPolicy/tenant-a"
    )
    assert grants.refusal("tenant-b", "a.example") == (
        "no MailDomainPolicy grants namespace tenant-b the domain a.example; "
        "ask the platform team for a MailDomainPolicy granting it"
    )
    required = Grants(required=True)
    assert required.enforced and required.refusal("tenant-a", "a.example") is not None


def test_an_ungranted_claim_neither_serves_nor_blocks_the_granted_one() -> None:
    # Tenant a claimed victim.example first; the platform grants it to tenant b, the owner.
    grants = Grants(
        (parse_policy(policy_doc("b", ["tenant-b"], ["victim.example", "*.victim.example"])),)
    )
    squatter = claim("tenant-a", "victim.example", "2026-12-01T00:00:00Z")
    owner = claim("tenant-b", "victim.example", "2026-12-07T00:00:00Z")
    services, problems = assemble([squatter, owner], [], grants)
    assert [s.domain.ref for s in services] == ["MailDomain/tenant-b/mail"]
    assert [(p.document, p.path) for p in problems] == [("MailDomain/tenant-a/mail", "spec.domain")]
    assert problems[0].message.startswith("no MailDomainPolicy grants namespace tenant-a")


def test_mailstack_render_applies_the_policies_in_its_files(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "policy.yaml").write_text(
        "apiVersion: mailstack.dev/v1alpha1\nkind: MailDomainPolicy\nmetadata: {name: b}\n"
        "spec: {namespaces: [tenant-b], domains: [victim.example, '*.victim.example']}\n"
    )
    for ns in ("tenant-a", "tenant-b"):
        (tmp_path / f"{ns}.yaml").write_text(
            "apiVersion: mailstack.dev/v1alpha1\nkind: MailDomain\n"
            f"metadata: {{name: mail, namespace: {ns}}}\nspec: {{domain: victim.example}}\n"
        )
    files = ["-f", str(tmp_path / "policy.yaml")]
    assert main(["render", *files, "-f", str(tmp_path / "tenant-a.yaml")]) == 2
    assert "no MailDomainPolicy grants namespace tenant-a" in capsys.readouterr().err
    assert main(["render", *files, "-f", str(tmp_path / "tenant-b.yaml")]) == 0
    assert "namespace: tenant-b" in capsys.readouterr().out


def service_claim(namespace: str, **service: Any) -> Any:
    return parse_maildomain(
        {
            "apiVersion": API,
            "kind": "MailDomain",
            "metadata": {"name": "mail", "namespace": namespace},
            "spec": {"domain": "a.example", "service": service},
        }
    )


def limited(name: str, **service: Any) -> MailDomainPolicy:
    doc = policy_doc(name, ["tenant-a"], ["a.example", "*.a.example"])
    doc["spec"]["service"] = service
    return parse_policy(doc)


def test_a_grant_limits_what_the_operator_makes_of_the_public_service() -> None:
    strict = limited(
        "strict",
        types=["ClusterIP", "LoadBalancer"],
        annotations=["metallb.universe.tf/*"],
        loadBalancerIP=False,
    )
    dom = service_claim(
        "tenant-a",
        type="NodePort",
        loadBalancerIP="192.0.2.7",
        annotations={
            "metallb.universe.tf/address-pool": "public",
            "service.beta.kubernetes.io/aws-load-balancer-internal": "false",
        },
    )
    services, problems = assemble([dom], [], Grants((strict,)))
    assert services == []
    assert [(p.path, p.message) for p in problems] == [
        ("spec.service.type", "NodePort is not allowed by MailDomainPolicy/strict"),
        (
            "spec.service.annotations.service.beta.kubernetes.io/aws-load-balancer-internal",
            "this annotation is not allowed by MailDomainPolicy/strict",
        ),
        (
            "spec.service.loadBalancerIP",
            "a fixed address is not allowed by MailDomainPolicy/strict",
        ),
    ]
    allowed = service_claim("tenant-a", annotations={"metallb.universe.tf/address-pool": "p"})
    assert assemble([allowed], [], Grants((strict,)))[1] == []
    # Grants add up: a second policy granting the same domain without limits allows it all.
    services, problems = assemble([dom], [], Grants((strict, limited("open"))))
    assert problems == [] and len(services) == 1


def test_no_annotation_at_all_can_be_required() -> None:
    none = limited("none", annotations=[])
    dom = service_claim("tenant-a", annotations={"x.example/y": "z"})
    assert [p.path for p in assemble([dom], [], Grants((none,)))[1]] == [
        "spec.service.annotations.x.example/y"
    ]


def pointed(relay: str, dns: dict[str, Any] | None = None) -> Any:
    spec: dict[str, Any] = {"domain": "a.example", "relay": {"host": relay}}
    if dns is not None:
        spec["dns"] = {"provider": dns}
    return parse_maildomain(
        {
            "apiVersion": API,
            "kind": "MailDomain",
            "metadata": {"name": "mail", "namespace": "tenant-a"},
            "spec": spec,
        }
    )


def test_under_policies_the_relay_and_dns_server_must_be_public_or_allowed() -> None:
    plain = Grants((parse_policy(policy_doc("a", ["tenant-a"], ["a.example", "*.a.example"])),))
    inside = pointed(
        "169.254.169.254",
        {
            "powerdns": {
                "apiUrl": "http://pdns.tenant-b.svc.cluster.local:8081",
                "apiKeySecretRef": {"name": "k"},
            }
        },
    )
    services, problems = assemble([inside], [], plain)
    assert services == []
    assert [p.path for p in problems] == ["spec.relay.host", "spec.dns.provider.powerdns.apiUrl"]
    assert problems[0].message == (
        "169.254.169.254 is a link-local address (cloud metadata lives there); "
        "a MailDomainPolicy may allow it"
    )
    doc = policy_doc("a", ["tenant-a"], ["a.example", "*.a.example"])
    doc["spec"]["allowedHosts"] = ["169.254.169.254", "*.tenant-b.svc.cluster.local"]
    assert assemble([inside], [], Grants((parse_policy(doc),)))[1] == []
    # Without policies nothing is checked: a single team's own cluster.
    assert assemble([inside], [], Grants())[1] == []
    public = pointed(
        "smtp.example.net",
        {"rfc2136": {"server": "9.9.9.9", "tsigKeyName": "k", "tsigSecretRef": {"name": "t"}}},
    )
    assert assemble([public], [], plain)[1] == []


def test_the_host_name_must_be_granted_too() -> None:
    # The host name gets A/AAAA, SPF and CAA records and the certificate: naming another
    # tenant's domain there would publish and certify it.
    grants = Grants((parse_policy(policy_doc("a", ["tenant-a"], ["a.example", "*.a.example"])),))

    def with_hostname(hostname: str) -> Any:
        return parse_maildomain(
            {
                "apiVersion": API,
                "kind": "MailDomain",
                "metadata": {"name": "mail", "namespace": "tenant-a"},
                "spec": {"domain": "a.example", "hostname": hostname},
            }
        )

    assert assemble([with_hostname("mail.a.example")], [], grants)[1] == []
    services, problems = assemble([with_hostname("victim.example")], [], grants)
    assert services == []
    assert [(p.path, p.message.split(";")[0]) for p in problems] == [
        ("spec.hostname", "no MailDomainPolicy grants namespace tenant-a the domain victim.example")
    ]


def test_no_fixed_address_also_refuses_the_annotations_that_pin_one() -> None:
    # The policy allows MetalLB's annotations (a pool, sharing) but no fixed address: MetalLB's
    # loadBalancerIPs annotation is a fixed address by another spelling.
    strict = limited("strict", annotations=["metallb.universe.tf/*"], loadBalancerIP=False)
    pinned = service_claim(
        "tenant-a", annotations={"metallb.universe.tf/loadBalancerIPs": "203.0.113.7"}
    )
    assert [(p.path, p.message) for p in assemble([pinned], [], Grants((strict,)))[1]] == [
        (
            "spec.service.annotations.metallb.universe.tf/loadBalancerIPs",
            "a fixed address (MetalLB) is not allowed by MailDomainPolicy/strict",
        )
    ]
    # Another implementation's, with every annotation allowed.
    any_annotation = limited("any", loadBalancerIP=False)
    azure = service_claim(
        "tenant-a", annotations={"service.beta.kubernetes.io/azure-load-balancer-ipv4": "20.1.2.3"}
    )
    assert [p.path for p in assemble([azure], [], Grants((any_annotation,)))[1]] == [
        "spec.service.annotations.service.beta.kubernetes.io/azure-load-balancer-ipv4"
    ]
    # A fixed address allowed: the annotation is fine.
    assert assemble([pinned], [], Grants((limited("open"),)))[1] == []


@pytest.mark.parametrize(
    "key",
    [
        # The IPv6 counterparts of AWS's and Azure's listed IPv4 keys, and DigitalOcean's
        # adoption of an existing load balancer by id.
        "service.beta.kubernetes.io/aws-load-balancer-ipv6-addresses",
        "service.beta.kubernetes.io/azure-pip-name-ipv6",
        "kubernetes.digitalocean.com/load-balancer-id",
    ],
)
def test_no_fixed_address_refuses_the_ipv6_and_adoption_annotations(key: str) -> None:
    # The policy allows the cloud's annotations by prefix, as for its listed IPv4 keys.
    prefix = key.split("/")[0] + "/*"
    strict = limited("strict", annotations=[prefix], loadBalancerIP=False)
    pinned = service_claim("tenant-a", annotations={key: "2001:db8::7"})
    assert [p.path for p in assemble([pinned], [], Grants((strict,)))[1]] == [
        f"spec.service.annotations.{key}"
    ]


@pytest.mark.parametrize(
    "key",
    [
        # #13 re-check F7: Linode's NodeBalancer to front the Service (an existing one, with
        # its address), OpenStack's load balancer to reuse and floating IP to put on it, Azure's
        # public IP prefix the address comes from (another team's reserved addresses).
        "service.beta.kubernetes.io/linode-loadbalancer-nodebalancer-id",
        "loadbalancer.openstack.org/load-balancer-id",
        "loadbalancer.openstack.org/load-balancer-address",
        "service.beta.kubernetes.io/azure-pip-prefix-id",
        # The fifth check's G10: no word of the rule in their names. OpenStack's VIP port (with
        # its address) and Hetzner's load balancer name (the controller takes over the one of
        # that name).
        "loadbalancer.openstack.org/port-id",
        "load-balancer.hetzner.cloud/name",
    ],
)
def test_no_fixed_address_refuses_adopting_another_load_balancer_or_its_address(key: str) -> None:
    # The policy leaves annotations at their default (any): the tenant names the id of another
    # tenant's load balancer or address prefix, and the cloud controller hands it over.
    any_annotation = limited("any", loadBalancerIP=False)
    adopting = service_claim("tenant-a", annotations={key: "lb-of-another-tenant"})
    assert [p.path for p in assemble([adopting], [], Grants((any_annotation,)))[1]] == [
        f"spec.service.annotations.{key}"
    ]


@pytest.mark.parametrize(
    ("key", "refused"),
    [
        # Not in the table, judged by their words under a load balancer controller's prefix.
        ("service.beta.kubernetes.io/exoscale-loadbalancer-id", True),
        ("service.beta.kubernetes.io/scw-loadbalancer-id", True),
        ("load-balancer.hetzner.cloud/ipv4", True),
        ("service.beta.kubernetes.io/oci-load-balancer-reserved-ip", True),
        ("metallb.universe.tf/allow-shared-ip", True),  # another Service's address by its key
        ("kube-vip.io/loadbalancerIPv6", True),
        # Words of an address that choose no address, and an id that is no load balancer's.
        ("metallb.universe.tf/address-pool", False),
        ("service.beta.kubernetes.io/aws-load-balancer-ip-address-type", False),
        ("service.beta.kubernetes.io/azure-disable-load-balancer-floating-ip", False),
        ("service.beta.kubernetes.io/linode-loadbalancer-firewall-id", False),
        ("service.beta.kubernetes.io/aws-load-balancer-nlb-target-type", False),
        # Outside the controllers' prefixes nothing but the table counts.
        ("example.com/ip", False),
    ],
)
def test_no_fixed_address_refuses_what_a_load_balancer_controllers_key_says(
    key: str, refused: bool
) -> None:
    assert (
        bool(ServiceLimits(load_balancer_ip=False).refusals(ServiceSpec(annotations=((key, "x"),))))
        is refused
    )
    assert ServiceLimits().refusals(ServiceSpec(annotations=((key, "x"),))) == []


def test_the_hosts_the_mail_pods_contact_are_held_to_the_host_rule() -> None:
    spec = {
        "domain": "a.example",
        "resolvers": ["169.254.169.254", "10.96.0.10", "9.9.9.9"],
        "spam": {
            "antivirus": {
                "enabled": True,
                "signatures": {
                    "privateMirror": "http://169.254.169.254/latest/meta-data",
                    "urls": [
                        "http://kubernetes.default.svc.cluster.local/x.ndb",
                        "https://sigs.example.net/y.ndb",
                    ],
                },
            }
        },
    }
    meta = {"name": "mail", "namespace": "tenant-a"}
    dom = parse_maildomain(
        {"apiVersion": API, "kind": "MailDomain", "metadata": meta, "spec": spec}
    )
    doc = policy_doc("a", ["tenant-a"], ["a.example", "*.a.example"])
    services, problems = assemble([dom], [], Grants((parse_policy(doc),)))
    assert services == []
    assert [p.path for p in problems] == [
        "spec.spam.antivirus.signatures.privateMirror",
        "spec.spam.antivirus.signatures.urls[0]",
        "spec.resolvers[0]",
        "spec.resolvers[1]",
    ]
    # The platform may let its tenants name the cluster DNS and an internal mirror.
    doc["spec"]["allowedHosts"] = ["10.96.0.10", "169.254.169.254", "*.svc.cluster.local"]
    assert assemble([dom], [], Grants((parse_policy(doc),)))[1] == []


@pytest.mark.parametrize(
    "key",
    [
        "external-dns.alpha.kubernetes.io/hostname",
        "external-dns.alpha.kubernetes.io/internal-hostname",
    ],
)
def test_a_service_publishes_no_name_but_its_own_through_dns_annotations(key: str) -> None:
    # The policy says nothing of annotations (any allowed): still, a shared external-dns must
    # not publish another tenant's names, nor a name under the domain (another grant's), at
    # this tenant's load balancer.
    grants = Grants((limited("open"),))
    own = service_claim("tenant-a", annotations={key: "a.example, MAIL.a.example."})
    assert assemble([own], [], grants)[1] == []
    for value in ("mail.b.example,b.example", "a.example,shop.a.example"):
        hostile = service_claim("tenant-a", annotations={key: value})
        services, problems = assemble([hostile], [], grants)
        assert services == []
        assert [p.path for p in problems] == [f"spec.service.annotations.{key}"]
    foreign = service_claim("tenant-a", annotations={key: "b.example"})
    assert "it would publish b.example" in assemble([foreign], [], grants)[1][0].message
    # Shaping the records of its own names is fine; without policies, anything goes.
    shaped = {key: "a.example", "external-dns.alpha.kubernetes.io/ttl": "60"}
    assert assemble([service_claim("tenant-a", annotations=shaped)], [], grants)[1] == []
    hostile = service_claim("tenant-a", annotations={key: "b.example"})
    assert assemble([hostile], [], Grants(()))[1] == []


def test_a_service_takes_no_label_in_the_clouds_dns_zone() -> None:
    key = "service.beta.kubernetes.io/azure-dns-label-name"
    labelled = service_claim("tenant-a", annotations={key: "mail"})
    assert [p.path for p in assemble([labelled], [], Grants((limited("open"),)))[1]] == [
        f"spec.service.annotations.{key}"
    ]
