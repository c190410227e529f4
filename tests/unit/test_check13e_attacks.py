"""Fifth #13 check: attacks around the fixes of the earlier checks (G1 publishing annotations,
G2 the policy window, G4 proof status, F6 nested host names), on the pure core.

Tests named ``test_held_*`` are attacks that held; the others fail while the weakness exists.
"""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.api import proof
from mailstack.api.assemble import assemble
from mailstack.api.errors import ValidationError
from mailstack.api.policy import Grants, parse_policy
from mailstack.controller.grants import PolicySet
from mailstack.controller.index import Documents
from tests.unit.test_tenancy_attacks import API, GRANTS, domain
from tests.unit.test_tenancy_fairness import _domain

A_CREATED = "2026-01-02T00:00:00Z"
B_CREATED = "2026-01-01T00:00:00Z"  # the victim is the older tenant


def served(annotations: dict[str, str], grants: Grants = GRANTS) -> bool:
    """Whether tenant-a's MailDomain with these Service annotations is served."""
    a = domain(
        "tenant-a", "a", "a.example", A_CREATED, hostname="mail.a.example",
        service={"annotations": annotations},
    )  # fmt: skip
    services, _ = assemble([a], [], grants)
    return [s.domain.ref for s in services] == [a.ref]


def test_held_own_names_are_published() -> None:
    own = "a.example,mail.a.example"
    assert served({"external-dns.alpha.kubernetes.io/hostname": own})


# G1 variants on the known keys: every spelling of a foreign name is refused.
@pytest.mark.parametrize(
    "value",
    [
        "b.example",
        "B.EXAMPLE",
        "b.example.",
        "*.b.example",
        "*.a.example",  # a wildcard under my own domain may be another tenant's grant
        "x.a.example",
        "a.example,b.example",
        "a.example, b.example",
        "a.example,\tb.example",
        "a.example ,b.example ,",
        "a.example b.example",  # external-dns drops the space: one name, not mine
        "xn--b-example",
        "mail.b.example",
    ],
)
@pytest.mark.parametrize(
    "key",
    [
        "external-dns.alpha.kubernetes.io/hostname",
        "external-dns.alpha.kubernetes.io/internal-hostname",
    ],
)
def test_held_known_publishing_keys_refuse_foreign_names(key: str, value: str) -> None:
    assert not served({key: value})


def test_held_azure_dns_label_is_refused() -> None:
    assert not served({"service.beta.kubernetes.io/azure-dns-label-name": "a"})


# G5: external-dns v0.22.0 and later read ``external-dns.kubernetes.io/`` by default (its
# ``--annotation-prefix``; the alpha prefix only with ``--enable-legacy-annotation-prefix``), so
# the G1 table misses the current external-dns: under a policy with the default ``annotations``
# (any), a tenant publishes the victim's names at its own load balancer.
@pytest.mark.parametrize(
    "key",
    [
        "external-dns.kubernetes.io/hostname",
        "external-dns.kubernetes.io/internal-hostname",
    ],
)
def test_current_external_dns_prefix_is_held_to_own_names(key: str) -> None:
    assert served({key: "a.example"})
    assert not served({key: "b.example"})


# G6: other DNS controllers read Service annotations to publish names: kops's dns-controller
# (``dns.alpha.kubernetes.io/external``/``internal``), CoreDNS's k8s_gateway plugin
# (``coredns.io/hostname``). With the default ``annotations`` (any) they pass unchecked.
@pytest.mark.parametrize(
    "key",
    [
        "dns.alpha.kubernetes.io/external",
        "dns.alpha.kubernetes.io/internal",
        "coredns.io/hostname",
    ],
)
def test_other_dns_controllers_annotations_are_held_to_own_names(key: str) -> None:
    assert not served({key: "b.example"})


# G7: ``spec.pods.annotations`` goes onto the mail pods unchecked; external-dns's pod source
# publishes ``hostname``/``internal-hostname`` of a pod (its node's or its own address).
@pytest.mark.parametrize(
    "key",
    [
        "external-dns.alpha.kubernetes.io/hostname",
        "external-dns.alpha.kubernetes.io/internal-hostname",
    ],
)
def test_pod_annotations_publish_no_foreign_name(key: str) -> None:
    a = domain("tenant-a", "a", "a.example", A_CREATED, pods={"annotations": {key: "b.example"}})
    services, _ = assemble([a], [], GRANTS)
    assert services == []


# G2 variants: the policy deleted and re-created under another name, an invalid one deleted.
def policy_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": name}
    return {"apiVersion": API, "kind": "MailDomainPolicy", "metadata": meta, "spec": spec}


GOOD = {"namespaces": ["tenant-a"], "domains": ["a.example"]}


def test_held_policy_renamed_keeps_grants_required() -> None:
    policies = PolicySet()
    policies.update("ADDED", policy_body("old", GOOD))
    policies.update("DELETED", policy_body("old", GOOD))
    assert policies.grants.enforced
    assert not policies.may_serve("tenant-b", "b.example")
    policies.update("ADDED", policy_body("new", GOOD))
    assert policies.may_serve("tenant-a", "a.example")
    assert not policies.may_serve("tenant-b", "a.example")


def test_held_invalid_policy_deleted_keeps_grants_required() -> None:
    policies = PolicySet()
    policies.update("ADDED", policy_body("typo", {"namespaces": 3}))
    policies.update("DELETED", policy_body("typo", {"namespaces": 3}))
    assert policies.grants.enforced


def test_held_restart_without_policy_with_require_grant_serves_nothing() -> None:
    policies = PolicySet(required=True)
    assert not policies.may_serve("tenant-a", "a.example")


# G4 variants: a status proof whose record name is spelt otherwise never counts.
@pytest.mark.parametrize(
    "name",
    [
        "_MAILSTACK-CHALLENGE.A.EXAMPLE",
        "_mailstack-challenge.a.example.",
        "_mailstack-challenge.A.example",
        " _mailstack-challenge.a.example",
        "_mailstack-challenge.b.example",
        "_mailstack-challenge.x.a.example",
    ],
)
def test_held_proof_status_with_other_record_name_does_not_count(name: str) -> None:
    status = {"proof": {"token": "abc", "record": {"name": name}, "proven": True}}
    assert proof.from_status("a.example", status) is None


# F6 variants: host names and domains under an older tenant's names at several depths.
SHARED = Grants(
    (
        parse_policy(
            policy_body(
                "shared",
                {"namespaces": ["tenant-a", "tenant-b"], "domains": ["*.customers.example"]},
            )
        ),
    )
)
OLDER = domain(
    "tenant-b", "b", "b.customers.example", B_CREATED, hostname="mx.host.customers.example"
)


def contest(namespace: str, dom: str, hostname: str) -> bool:
    """Whether the newer claim is served beside the older tenant's."""
    newer = domain(namespace, "n", dom, A_CREATED, hostname=hostname)
    services, _ = assemble([OLDER, newer], [], SHARED)
    refs = [s.domain.ref for s in services]
    assert OLDER.ref in refs  # the older tenant keeps serving, whatever the newer claims
    return newer.ref in refs


@pytest.mark.parametrize(
    "hostname",
    [
        "mx.host.customers.example",
        "x.mx.host.customers.example",
        "y.x.mx.host.customers.example",
        "z.y.x.mx.host.customers.example",
        "b.customers.example",
        "mail.b.customers.example",
        "a.b.c.b.customers.example",
    ],
)
def test_held_host_name_at_or_under_older_tenants_names_is_refused(hostname: str) -> None:
    assert not contest("tenant-a", "a.customers.example", hostname)


@pytest.mark.parametrize(
    "dom",
    [
        "mx.host.customers.example",
        "x.mx.host.customers.example",
        "y.x.mx.host.customers.example",
        "x.b.customers.example",
        "y.x.b.customers.example",
    ],
)
def test_held_domain_at_or_under_older_tenants_names_is_refused(dom: str) -> None:
    assert not contest("tenant-a", dom, f"mail.{dom}")


def test_held_name_above_older_host_name_is_free() -> None:
    assert contest("tenant-a", "a.customers.example", "host.customers.example")


@pytest.mark.parametrize("hostname", ["mx.host.customers.example", "x.y.mx.host.customers.example"])
def test_held_same_namespace_may_share_and_nest(hostname: str) -> None:
    assert contest("tenant-b", "c.customers.example", hostname)


# Names in other spellings never reach the contest: spec.domain and spec.hostname are canonical.
@pytest.mark.parametrize(
    "field, value",
    [
        ("domain", "B.EXAMPLE"),
        ("domain", "b.example."),
        ("domain", "bü.example"),
        ("domain", " b.example"),
        ("hostname", "MAIL.B.EXAMPLE"),
        ("hostname", "mail.b.example."),
        ("hostname", "*.b.example"),
    ],
)
def test_held_other_spellings_of_a_name_are_refused_at_parse(field: str, value: str) -> None:
    spec = {"domain": "a.example", field: value}
    with pytest.raises(ValidationError):
        domain("tenant-a", "a", spec.pop("domain"), A_CREATED, **spec)


# G9: cloud load balancer annotations that attach a certificate of the cloud account (shared by
# every tenant of the cluster) to tenant-a's load balancer, or have the cloud issue one for the
# names given: under the default ``annotations`` (any) they pass, so tenant-a's load balancer
# terminates TLS with tenant-b's certificate (the operator's Service selects by labels a tenant
# can put on a pod of its own, which then reads the plaintext).
@pytest.mark.parametrize(
    "key, value",
    [
        ("service.beta.kubernetes.io/aws-load-balancer-ssl-cert", "arn:aws:acm:r:1:certificate/b"),
        ("service.beta.kubernetes.io/do-loadbalancer-certificate-id", "b-cert-id"),
        ("load-balancer.hetzner.cloud/http-certificates", "b-cert"),
        ("load-balancer.hetzner.cloud/http-managed-certificate-domains", "b.example"),
    ],
)
def test_load_balancer_certificate_annotations_take_no_other_tenants_certificate(
    key: str, value: str
) -> None:
    assert not served({key: value})


# F7 variants: keys that adopt an existing load balancer (or its address) by a name or a port,
# with the controller's prefix allowed and ``loadBalancerIP: false``.
NO_PINNING = Grants(
    (
        parse_policy(
            policy_body(
                "a",
                {
                    "namespaces": ["tenant-a"],
                    "domains": ["a.example", "*.a.example"],
                    "service": {
                        "loadBalancerIP": False,
                        "annotations": [
                            "loadbalancer.openstack.org/*",
                            "load-balancer.hetzner.cloud/*",
                            "metallb.universe.tf/*",
                            "service.beta.kubernetes.io/*",
                        ],
                    },
                },
            )
        ),
    )
)


@pytest.mark.parametrize(
    "key, value",
    [
        ("metallb.universe.tf/loadBalancerIPs", "192.0.2.9"),
        ("metallb.universe.tf/allow-shared-ip", "b-key"),
        ("service.beta.kubernetes.io/azure-pip-name", "b-pip"),
        ("service.beta.kubernetes.io/scw-loadbalancer-id", "b-lb"),
        ("loadbalancer.openstack.org/load-balancer-id", "b-lb"),
    ],
)
def test_held_pinning_keys_refused(key: str, value: str) -> None:
    assert not served({key: value}, NO_PINNING)


# G10: OpenStack's ``port-id`` (the VIP port, with its address) and Hetzner's ``name`` (the CCM
# takes over a load balancer of that name) pin another tenant's address; their names carry none
# of the rule's words.
@pytest.mark.parametrize(
    "key, value",
    [
        ("loadbalancer.openstack.org/port-id", "b-vip-port"),
        ("load-balancer.hetzner.cloud/name", "b-lb"),
    ],
)
def test_keys_adopting_by_name_or_port_are_refused(key: str, value: str) -> None:
    assert served({}, NO_PINNING)
    assert not served({key: value}, NO_PINNING)


# F2 variant (G11): an ungranted MailDomain that never published still refers to its relay
# credentials Secret (``Documents.references`` counts every MailDomain's references so that a
# withdrawn one can remove its records with its DNS key): a namespace with no grant, hence no
# limit on its MailDomains, makes the operator keep one large labelled Secret per MailDomain.
def test_ungranted_maildomain_that_never_published_keeps_no_relay_secret() -> None:
    documents = Documents(granted=lambda namespace, dom: False)
    for i in range(3):
        documents.put_domain(_domain(f"d{i}", f"d{i}.example", relay_secret=f"big{i}"))
    assert not any(documents.references("t", f"big{i}") for i in range(3))
