"""What a grant lets a MailDomain's public Service and pods carry (``api.service_limits``): the
names DNS controllers would publish, the certificates and the addresses of the shared cloud
account a load balancer would take."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.api.assemble import assemble
from mailstack.api.parse import parse_maildomain
from mailstack.api.policy import Grants
from tests.unit.test_policy import API, limited, service_claim

OPEN = Grants((limited("open"),))  # a policy that says nothing of annotations: any allowed


def refused_paths(annotations: dict[str, str], grants: Grants = OPEN) -> list[str]:
    services, problems = assemble([service_claim("tenant-a", annotations=annotations)], [], grants)
    assert (services == []) is bool(problems)
    return [p.path for p in problems]


@pytest.mark.parametrize(
    "key",
    [
        # external-dns v0.22 and later (its default --annotation-prefix)
        "external-dns.kubernetes.io/hostname",
        "external-dns.kubernetes.io/internal-hostname",
        # kops's dns-controller
        "dns.alpha.kubernetes.io/external",
        "dns.alpha.kubernetes.io/internal",
        # CoreDNS's k8s_gateway plugin
        "coredns.io/hostname",
    ],
)
def test_every_dns_controllers_key_publishes_no_name_but_the_services_own(key: str) -> None:
    assert refused_paths({key: "a.example,mail.a.example"}) == []
    for value in ("b.example", "a.example, mail.b.example", "shop.a.example"):
        assert refused_paths({key: value}) == [f"spec.service.annotations.{key}"]


@pytest.mark.parametrize(
    "key",
    [
        "external-dns.alpha.kubernetes.io/hostname",  # external-dns's pod source
        "external-dns.kubernetes.io/internal-hostname",
        "dns.alpha.kubernetes.io/external",  # kops's dns-controller reads pods too
    ],
)
def test_the_mail_pods_publish_no_name_but_the_maildomains_own(key: str) -> None:
    def pods_claim(value: str) -> Any:
        return parse_maildomain(
            {
                "apiVersion": API,
                "kind": "MailDomain",
                "metadata": {"name": "mail", "namespace": "tenant-a"},
                "spec": {"domain": "a.example", "pods": {"annotations": {key: value}}},
            }
        )

    assert assemble([pods_claim("a.example")], [], OPEN)[1] == []
    services, problems = assemble([pods_claim("mail.b.example,b.example")], [], OPEN)
    assert services == []
    assert [(p.path, p.message.split(":")[0]) for p in problems] == [
        (f"spec.pods.annotations.{key}", "it would publish b.example, mail.b.example")
    ]
    assert assemble([pods_claim("b.example")], [], Grants(()))[1] == []  # no policies: any


CERTIFICATE_KEYS = [
    "service.beta.kubernetes.io/aws-load-balancer-ssl-cert",
    "service.beta.kubernetes.io/do-loadbalancer-certificate-id",
    "service.beta.kubernetes.io/do-loadbalancer-certificate-name",
    "load-balancer.hetzner.cloud/http-certificates",
    "load-balancer.hetzner.cloud/http-managed-certificate-domains",
    "loadbalancer.openstack.org/default-tls-container-ref",
]


@pytest.mark.parametrize("key", CERTIFICATE_KEYS)
def test_a_load_balancer_takes_no_certificate_of_the_cloud_account_unless_listed(
    key: str,
) -> None:
    # Another tenant's certificate (or one the cloud issues for its names) on this tenant's load
    # balancer: refused with annotations at their default (any) and under a prefix pattern.
    assert refused_paths({key: "cert-of-tenant-b"}) == [f"spec.service.annotations.{key}"]
    by_prefix = Grants((limited("prefix", annotations=[key.split("/")[0] + "/*"]),))
    assert refused_paths({key: "cert-of-tenant-b"}, by_prefix) == [
        f"spec.service.annotations.{key}"
    ]
    # A platform that wants its load balancers to terminate TLS lists the key itself.
    assert refused_paths({key: "cert"}, Grants((limited("tls", annotations=[key]),))) == []
    assert refused_paths({key: "cert"}, Grants(())) == []  # no policies: a single team's cluster


# Every spelling of a foreign name is refused (the fifth #13 check's variants of its G1).
@pytest.mark.parametrize(
    "value",
    [
        "B.EXAMPLE",
        "b.example.",
        "*.b.example",
        "*.a.example",  # a wildcard under its own domain may be another tenant's grant
        "x.a.example",
        "a.example,\tb.example",
        "a.example ,b.example ,",
        "a.example b.example",  # external-dns drops the space: one name, not its own
        "xn--b-example",
    ],
)
@pytest.mark.parametrize(
    "key",
    ["external-dns.alpha.kubernetes.io/hostname", "external-dns.kubernetes.io/internal-hostname"],
)
def test_no_spelling_of_a_foreign_name_is_published(key: str, value: str) -> None:
    assert refused_paths({key: value}) == [f"spec.service.annotations.{key}"]
