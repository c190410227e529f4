"""``spec.service`` of a MailDomain: how clients' connections reach the mail pods.

Owns ``exposure`` and how it relates to the older ``type``, and ``proxyProtocol`` with its
trusted ranges. ``exposure`` is the choice; ``type`` is the public Service's type, which each
exposure fixes (LoadBalancer, NodePort, ClusterIP: the same type; HostPort: ClusterIP) except
ProxyProtocol, whose proxies may reach a Service of any type (ClusterIP by default, a
LoadBalancer for a cloud's load balancer that speaks PROXY itself). A MailDomain written before
``exposure`` existed names only ``type``: its exposure is that type, as it always was.
"""

from __future__ import annotations

import ipaddress

from mailstack.api import models, validate
from mailstack.api.errors import FieldError
from mailstack.api.parse.common import string_map
from mailstack.api.parse.limits import ip_network
from mailstack.api.reader import Reader, join, one_of, string

SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")
EXPOSURES = (*SERVICE_TYPES, "HostPort", "ProxyProtocol")
MAX_TRUSTED_CIDRS = 32
MAX_INTERNAL_NAMESPACES = 16
# The widest range a MailDomain may trust to announce client addresses. Every host in a trusted
# range can claim any client address, the pod's own loopback included (which Postfix trusts to
# relay): trusting the whole internet, or most of it, makes an open relay. No switch allows it.
WIDEST_TRUSTED_PREFIX = {4: 8, 6: 32}


def trusted_cidr(value: object) -> str:
    """A range of upstream proxies: an address or a CIDR range no wider than
    ``WIDEST_TRUSTED_PREFIX``, canonical."""
    network = ip_network(value)
    parsed = ipaddress.ip_network(network)
    widest = WIDEST_TRUSTED_PREFIX[parsed.version]
    if parsed.prefixlen < widest:
        raise FieldError(
            f"{network} would trust {parsed.num_addresses} addresses to announce any client "
            f"address (the pod's own included); name your proxies' ranges, /{widest} or narrower"
        )
    return network


def service_type_for(exposure: str) -> str:
    """The Service type an exposure implies when ``type`` is not given."""
    return exposure if exposure in SERVICE_TYPES else "ClusterIP"


def parse_service(r: Reader, value: object) -> models.ServiceSpec:
    path = "spec.service"
    fields = {
        "exposure",
        "type",
        "annotations",
        "externalTrafficPolicy",
        "loadBalancerIP",
        "proxyProtocol",
    }
    service = r.mapping(value, path, fields)
    annotations = string_map(
        r,
        service.get("annotations"),
        join(path, "annotations"),
        validate.annotation_key,
        string,
        "annotation key to value",
    )
    default = models.ServiceSpec
    given_type: str | None = r.field(service, "type", path, one_of(*SERVICE_TYPES), None)
    exposure: str = r.field(
        service, "exposure", path, one_of(*EXPOSURES), given_type or default.exposure
    )
    service_type = given_type or service_type_for(exposure)
    if exposure != "ProxyProtocol" and service_type != service_type_for(exposure):
        r.fail(
            join(path, "type"),
            f"{service_type} does not go with exposure {exposure}, whose Service is a "
            f"{service_type_for(exposure)}: leave type out",
        )
    proxy = None
    if exposure == "ProxyProtocol":
        proxy = _proxy_protocol(r, service.get("proxyProtocol"), join(path, "proxyProtocol"))
    elif "proxyProtocol" in service:
        r.fail(join(path, "proxyProtocol"), "only with exposure ProxyProtocol")
    return models.ServiceSpec(
        type=service_type,  # type: ignore[arg-type]
        annotations=annotations,
        external_traffic_policy=r.field(
            service,
            "externalTrafficPolicy",
            path,
            one_of("Local", "Cluster"),
            default.external_traffic_policy,
        ),
        load_balancer_ip=r.field(
            service, "loadBalancerIP", path, validate.any_ip_address, default.load_balancer_ip
        ),
        exposure=exposure,  # type: ignore[arg-type]
        proxy_protocol=proxy,
    )


def _proxy_protocol(r: Reader, value: object, path: str) -> models.ProxyProtocol:
    if value is None:
        r.fail(path, "is required with exposure ProxyProtocol (at least trustedCIDRs)")
    section = r.mapping(value, path, {"trustedCIDRs", "internalNamespaces"})
    trusted = r.items(section, "trustedCIDRs", path, trusted_cidr, MAX_TRUSTED_CIDRS)
    if value is not None and section.get("trustedCIDRs") is None:
        r.fail(join(path, "trustedCIDRs"), "is required: the ranges your proxies connect from")
    elif section.get("trustedCIDRs") == []:
        r.fail(join(path, "trustedCIDRs"), "must list at least one range")
    namespaces = r.items(
        section,
        "internalNamespaces",
        path,
        validate.kubernetes_name,
        MAX_INTERNAL_NAMESPACES,
    )
    return models.ProxyProtocol(trusted_cidrs=trusted, internal_namespaces=namespaces)
