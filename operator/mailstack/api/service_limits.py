"""What a MailDomainPolicy's grant lets the public Service be: ``ServiceLimits``, and the
address-pinning and load-balancer-adopting annotations that ``loadBalancerIP: false`` refuses
(``pins_address``: a table of known keys, and a rule for the keys of load balancer controllers
that name an address or an existing load balancer), and the certificates of the cloud account
a load balancer may take only where a policy lists the key (``CERTIFICATE_ANNOTATIONS``).

Owns the check of ``spec.service`` against a grant (``ServiceLimits.refusals``); parsing the
policy's ``service`` section stays in ``api.policy``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailstack.api.models import ServiceSpec

# Annotations by which a load balancer implementation takes a fixed address for a Service:
# ``loadBalancerIP: false`` refuses them as it refuses the field, whatever the policy's
# ``annotations`` list allows; so does adopting an existing load balancer by its id (its address
# comes with it). Keys not listed are judged by their words (``pins_address``); one of an
# implementation whose prefix is not in ``CONTROLLER_PREFIXES`` is not: a platform must not allow
# such a key through ``annotations``. Choosing a pool (``metallb.universe.tf/address-pool``) is
# not pinning: the pools say who may use them.
ADDRESS_ANNOTATIONS = {
    "metallb.universe.tf/loadBalancerIPs": "MetalLB",
    "metallb.io/loadBalancerIPs": "MetalLB",
    "kube-vip.io/loadbalancerIPs": "kube-vip",
    "lbipam.cilium.io/ips": "Cilium LB IPAM",
    "io.cilium/lb-ipam-ips": "Cilium LB IPAM",
    "projectcalico.org/loadBalancerIPs": "Calico",
    "purelb.io/addresses": "PureLB",
    "service.beta.kubernetes.io/azure-load-balancer-ipv4": "Azure",
    "service.beta.kubernetes.io/azure-load-balancer-ipv6": "Azure",
    "service.beta.kubernetes.io/azure-pip-name": "Azure (a public IP resource)",
    "service.beta.kubernetes.io/aws-load-balancer-eip-allocations": "AWS (Elastic IPs)",
    "service.beta.kubernetes.io/aws-load-balancer-private-ipv4-addresses": "AWS",
    "service.beta.kubernetes.io/aws-load-balancer-ipv6-addresses": "AWS",
    "service.beta.kubernetes.io/azure-pip-name-ipv6": "Azure (a public IP resource)",
    "kubernetes.digitalocean.com/load-balancer-id": "DigitalOcean (adopts a load balancer)",
    "service.beta.kubernetes.io/linode-loadbalancer-nodebalancer-id": (
        "Linode (adopts a NodeBalancer)"
    ),
    "loadbalancer.openstack.org/load-balancer-id": "OpenStack (adopts a load balancer)",
    "loadbalancer.openstack.org/load-balancer-address": "OpenStack (a floating IP)",
    "loadbalancer.openstack.org/port-id": "OpenStack (a VIP port, with its address)",
    "load-balancer.hetzner.cloud/name": "Hetzner (adopts a load balancer by its name)",
    "service.beta.kubernetes.io/azure-pip-prefix-id": "Azure (a public IP prefix)",
    "service.beta.kubernetes.io/azure-pip-prefix-id-ipv6": "Azure (a public IP prefix)",
    "networking.gke.io/load-balancer-ip-addresses": "GKE (reserved addresses)",
    "oci.oraclecloud.com/reserved-private-ips": "Oracle OKE",
}

# Annotations by which a shared DNS controller publishes names for a Service, pointing at its
# load balancer: under policies every name they carry must be the MailDomain's own admitted
# domain or host name, exactly (a name under the domain may be another tenant's grant, as with
# ``*.customers.example``). None: a label in the cloud's own zone, never the MailDomain's name,
# so always refused. Keys that only shape the records of names published this way (external-dns
# ``target``, ``ttl``, ``access``, ``set-identifier``, ``aws-*`` routing) publish no name of
# their own and are left to the policy's ``annotations`` list.
# external-dns reads ``external-dns.kubernetes.io/`` since v0.22 (its default
# ``--annotation-prefix``), the alpha prefix before and with ``--enable-legacy-annotation-prefix``;
# kops's dns-controller and CoreDNS's k8s_gateway publish comma-separated names the same way.
PUBLISHING_ANNOTATIONS: dict[str, str | None] = {
    "external-dns.alpha.kubernetes.io/hostname": "external-dns",
    "external-dns.alpha.kubernetes.io/internal-hostname": "external-dns",
    "external-dns.kubernetes.io/hostname": "external-dns",
    "external-dns.kubernetes.io/internal-hostname": "external-dns",
    "dns.alpha.kubernetes.io/external": "kops dns-controller",
    "dns.alpha.kubernetes.io/internal": "kops dns-controller",
    "coredns.io/hostname": "CoreDNS k8s_gateway",
    "service.beta.kubernetes.io/azure-dns-label-name": None,
}


def published_name_refusals(
    annotations: Iterable[tuple[str, str]], field: str, own: tuple[str, ...]
) -> list[tuple[str, str]]:
    """(field path, why) for each of ``annotations`` (at ``field``: the Service's, or the mail
    pods', which external-dns's and dns-controller's pod sources read) that would publish a
    name other than ``own``."""
    found: list[tuple[str, str]] = []
    for key, value in annotations:
        if key not in PUBLISHING_ANNOTATIONS:
            continue
        path = f"{field}.{key}"
        if PUBLISHING_ANNOTATIONS[key] is None:
            found.append((path, "a name in the cloud's DNS zone is not allowed"))
            continue
        names = [n.strip().lower().rstrip(".") for n in value.split(",")]
        foreign = sorted({n for n in names if n not in own})
        if foreign:
            why = f"it would publish {', '.join(foreign)}: only {' or '.join(own)} may be"
            found.append((path, why))
    return found


# Annotations by which a cloud load balancer terminates TLS with a certificate of the cloud
# account (shared by every tenant of the cluster), or has the cloud issue one for the names
# given: under policies refused unless a grant lists the key itself (a pattern ending in ``*``
# does not do). The mail ports do their own TLS, so mailstack never needs the load balancer to;
# a platform that wants it sets the key for its tenants' MailDomains.
CERTIFICATE_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-ssl-cert": "AWS (an ACM certificate)",
    "service.beta.kubernetes.io/do-loadbalancer-certificate-id": "DigitalOcean",
    "service.beta.kubernetes.io/do-loadbalancer-certificate-name": "DigitalOcean",
    "load-balancer.hetzner.cloud/http-certificates": "Hetzner",
    "load-balancer.hetzner.cloud/http-managed-certificate-domains": "Hetzner (issued for names)",
    "loadbalancer.openstack.org/default-tls-container-ref": "OpenStack (a Barbican container)",
}


# A table alone always misses one: under the prefixes of load balancer controllers, a key with
# one of these words in its name is taken to pin an address or adopt a load balancer (and with
# it its address) too. Known keys with such words that do neither are in ``NOT_PINNING``.
CONTROLLER_PREFIXES = (
    "service.beta.kubernetes.io/",
    "service.kubernetes.io/",
    "loadbalancer.openstack.org/",
    "kubernetes.digitalocean.com/",
    "load-balancer.hetzner.cloud/",
    "networking.gke.io/",
    "cloud.google.com/",
    "oci.oraclecloud.com/",
    "oci-network-load-balancer.oraclecloud.com/",
    "metallb.universe.tf/",
    "metallb.io/",
    "kube-vip.io/",
    "lbipam.cilium.io/",
    "io.cilium/",
    "projectcalico.org/",
    "purelb.io/",
    "yandex.cpi.flant.com/",
)
ADDRESS_WORDS = frozenset(
    {"ip", "ips", "ipv4", "ipv6", "address", "addresses", "pip", "eip", "eips", "floatingip"}
)
BALANCER_WORDS = frozenset({"balancer", "loadbalancer", "nodebalancer", "lb", "nlb"})
NOT_PINNING = frozenset(
    {
        "metallb.universe.tf/address-pool",  # a pool: the pools say who may use them
        "metallb.io/address-pool",
        "service.beta.kubernetes.io/aws-load-balancer-ip-address-type",  # ipv4 or dualstack
        "service.beta.kubernetes.io/azure-pip-tags",
        "service.beta.kubernetes.io/azure-pip-ip-tags",
        "service.beta.kubernetes.io/azure-load-balancer-ip-tags",
        "service.beta.kubernetes.io/azure-disable-load-balancer-floating-ip",  # direct return
    }
)


def _words(name: str) -> list[str]:
    """The words of an annotation's name: split at ``-``, ``.``, ``_`` and lower-to-upper
    case changes (``loadBalancerIPs``: load, balancer, ips)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name)
    return [word.lower() for word in re.split(r"[-._]+", spaced) if word]


def pins_address(key: str) -> str | None:
    """Whose fixed address (or adopted load balancer) the annotation ``key`` asks for, or None:
    the table first, then the words of a key under a load balancer controller's prefix."""
    if key in ADDRESS_ANNOTATIONS:
        return ADDRESS_ANNOTATIONS[key]
    prefix = next((p for p in CONTROLLER_PREFIXES if key.startswith(p)), None)
    if prefix is None or key in NOT_PINNING:
        return None
    words = _words(key[len(prefix) :])
    if ADDRESS_WORDS & set(words):
        return f"{prefix[:-1]}: the name says an address"
    if any(w in BALANCER_WORDS and after == "id" for w, after in itertools.pairwise(words)):
        return f"{prefix[:-1]}: the name says an existing load balancer"
    return None


# What a grant allows when its policy names no ``exposures``: all but HostPort, which binds the
# mail ports of the node the pod runs on (and needs Pod Security "privileged"): a platform allows
# it by name.
DEFAULT_EXPOSURES = ("LoadBalancer", "NodePort", "ClusterIP", "ProxyProtocol")


@dataclass(frozen=True)
class ServiceLimits:
    """What a grant allows the public Service to be; None: anything."""

    types: tuple[str, ...] | None = None
    annotations: tuple[str, ...] | None = None  # keys; a trailing "*" matches a prefix
    load_balancer_ip: bool = True
    exposures: tuple[str, ...] | None = None  # None: DEFAULT_EXPOSURES

    def refusals(self, service: ServiceSpec) -> list[tuple[str, str]]:
        """(field path, why) for every part of ``service`` these limits do not allow."""
        found: list[tuple[str, str]] = []
        exposures = DEFAULT_EXPOSURES if self.exposures is None else self.exposures
        if service.exposure not in exposures:
            why = f"{service.exposure} is not allowed"
            if service.exposure == "HostPort" and self.exposures is None:
                why += " unless the policy lists it in service.exposures (it binds node ports)"
            found.append(("spec.service.exposure", why))
        if self.types is not None and service.type not in self.types:
            found.append(("spec.service.type", f"{service.type} is not allowed"))
        for key, _ in service.annotations:
            if self.annotations is not None and not any(
                key == p or (p.endswith("*") and key.startswith(p[:-1])) for p in self.annotations
            ):
                found.append((f"spec.service.annotations.{key}", "this annotation is not allowed"))
            elif key in CERTIFICATE_ANNOTATIONS and key not in (self.annotations or ()):
                why = (
                    f"a certificate of the cloud account ({CERTIFICATE_ANNOTATIONS[key]}) is not "
                    "allowed unless the policy lists this key in service.annotations"
                )
                found.append((f"spec.service.annotations.{key}", why))
            elif not self.load_balancer_ip and (pinned := pins_address(key)) is not None:
                why = f"a fixed address ({pinned}) is not allowed"
                found.append((f"spec.service.annotations.{key}", why))
        if service.load_balancer_ip and not self.load_balancer_ip:
            found.append(("spec.service.loadBalancerIP", "a fixed address is not allowed"))
        return found
