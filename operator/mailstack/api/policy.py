"""Who may serve which domain: the platform's MailDomainPolicy objects and the grant check (pure).

A MailDomainPolicy is cluster-scoped and written by the platform team, never by a tenant. It
grants the namespaces it names the domains it names, each an exact name (``example.com``) or
every name under a suffix (``*.example.com``: ``shop.example.com``, not ``example.com`` itself)::

    apiVersion: mailstack.dev/v1alpha1
    kind: MailDomainPolicy
    metadata: {name: tenant-a}
    spec:
      namespaces: [tenant-a]
      domains: [tenant-a.example, "*.tenant-a.example"]
      service:                                   # optional: what the public Service may be
        exposures: [LoadBalancer, ProxyProtocol] # default: any but HostPort
        types: [LoadBalancer]                    # default: any type
        annotations: ["metallb.universe.tf/*"]   # keys, a trailing * a prefix; default: any
        loadBalancerIP: false                    # default: allowed (ADDRESS_ANNOTATIONS)
      limits: {maxMailDomains: 3, maxStorage: 60Gi, maxMailboxes: 200, maxQuota: 100Gi}
      requireProof: true                         # a TXT record proves control of a domain
      outbound:                                  # optional: addresses Postfix may bind to
        bindAddresses: [203.0.113.0/28]          # default: none (spec.outbound.bindAddress)
      servers: [mail-platform/shared]            # MailServers its MailDomains may join

``limits`` bound what each namespace named may claim (``api.limits``); ``requireProof`` serves a
granted domain only once its MailDomain proves control of it in DNS (``api.proof``).
``outbound.bindAddresses`` lists the addresses (CIDRs) the platform gave the namespace: a
MailDomain binds Postfix to its ``spec.outbound.addresses`` only within them. Listing an address
in ``spec.outbound`` without binding is not restricted: it is published in the tenant's own SPF
record and looked up, which concerns its own domain only. ``servers`` lists the shared
MailServers (``namespace/name``) the granted domains may join with ``spec.serverRef``; a server
of the MailDomain's own namespace needs no listing (``SERVER_NOT_ALLOWED`` otherwise).

The public Service of a MailDomain is created by the operator's account, past whatever stops
the tenant from making a LoadBalancer or annotating one itself; a policy's ``service`` section
says what its grant allows there. Several policies granting the same domain add up: a setting
is allowed when one of them allows it; a limit is the most generous of the policies naming the
namespace; proof is required when every policy granting the domain requires it.

Grants are enforced as soon as one policy exists, or when the operator is told to require them
(``--require-domain-grant``; the chart's ``policy.requireGrant``): a platform that writes
policies means them. Without either, every namespace may claim any domain, as for a single team.
A MailDomain whose domain is not granted to its namespace serves nothing and takes no part in
the contest for its domain (``assemble``), so a tenant cannot squat a domain before the
platform grants it to its owner.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailstack.api import hosts, issuers, validate
from mailstack.api.dns_models import PowerDnsSettings, Rfc2136Settings
from mailstack.api.errors import FieldError, ValidationError
from mailstack.api.issuers import NO_CLUSTER_ISSUERS, IssuerLimits
from mailstack.api.limits import UNBOUNDED, NamespaceLimits, combine, parse_limits
from mailstack.api.models import MailDomain
from mailstack.api.parse.common import METADATA_FIELDS, check_header, raise_problems
from mailstack.api.parse.service import EXPOSURES
from mailstack.api.reader import Reader, boolean, one_of
from mailstack.api.service_limits import ServiceLimits, published_name_refusals
from mailstack.kubedoc import meta_of

KIND = "MailDomainPolicy"
SERVER_NOT_ALLOWED = "ServerNotAllowed"  # Problem.kind: spec.serverRef names a server not granted
MAX_ENTRIES = 256  # namespaces and domains per policy, as the CRD says


@dataclass(frozen=True)
class MailDomainPolicy:
    name: str
    namespaces: tuple[str, ...]
    domains: tuple[str, ...]  # exact names, or "*." + a suffix
    service: ServiceLimits = field(default_factory=ServiceLimits)
    # Non-public hosts a MailDomain may name (relay, DNS server): names, "*." suffixes, CIDRs.
    allowed_hosts: tuple[str, ...] = ()
    limits: NamespaceLimits = UNBOUNDED
    require_proof: bool = False
    # Networks a granted MailDomain may bind Postfix to (spec.outbound.bindAddress).
    bind_addresses: tuple[str, ...] = ()
    issuers: IssuerLimits = NO_CLUSTER_ISSUERS  # the ClusterIssuers its MailDomains may name
    servers: tuple[str, ...] = ()  # "namespace/name" of the MailServers they may join

    @property
    def ref(self) -> str:
        return f"{KIND}/{self.name}"

    def grants(self, namespace: str, domain: str) -> bool:
        return namespace in self.namespaces and any(
            domain_matches(pattern, domain) for pattern in self.domains
        )


def domain_matches(pattern: str, domain: str) -> bool:
    """``example.com`` matches itself; ``*.example.com`` every name under it, not itself."""
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    return domain == pattern


def within(name: str, domain: str) -> bool:
    """Whether ``name`` is ``domain`` or a name under it."""
    return name == domain or name.endswith("." + domain)


@dataclass(frozen=True)
class Grants:
    """The policies in force, and whether a grant is required even without any."""

    policies: tuple[MailDomainPolicy, ...] = ()
    required: bool = False

    @property
    def enforced(self) -> bool:
        return self.required or bool(self.policies)

    def issuer_refusals(self, dom: MailDomain) -> list[tuple[str, str]]:
        """(field path, why) when the grants of ``dom`` do not allow its certificate's issuer."""
        if not self.enforced:
            return []
        granting = [p for p in self.policies if p.grants(dom.namespace, dom.domain)]
        return issuers.refusals(dom, [(p.ref, p.issuers) for p in granting])

    def service_refusals(self, dom: MailDomain) -> list[tuple[str, str]]:
        """(field path, why) for what the grants of ``dom`` do not allow its Service to be, and
        for names its Service or its pods' annotations would have a DNS controller publish."""
        if not self.enforced:
            return []
        granting = [p for p in self.policies if p.grants(dom.namespace, dom.domain)]
        if not granting:
            return []  # not granted: refused elsewhere
        # Whatever the grants allow: neither the Service nor the mail pods publish a name but
        # the MailDomain's own.
        own = (dom.domain, dom.hostname)
        published = published_name_refusals(
            dom.service.annotations, "spec.service.annotations", own
        )
        pod_annotations = dom.pods.annotations or ()
        published += published_name_refusals(pod_annotations, "spec.pods.annotations", own)
        verdicts = [p.service.refusals(dom.service) for p in granting]
        names = " or ".join(p.ref for p in granting)
        limited = [] if any(not v for v in verdicts) else verdicts[0]  # one grant allows all
        return published + [(path, f"{why} by {names}") for path, why in limited]

    def allowed_hosts(self, dom: MailDomain, removal: bool = False) -> tuple[str, ...]:
        """The ``allowedHosts`` of the policies granting ``dom``'s domain: non-public hosts it
        may name (also what ``dns.providers.reach.HostGuard`` lets through at connect time).

        ``removal``: of every policy naming its namespace, for removing the records of a
        MailDomain whose grant (and with it its own allowedHosts) may be gone.
        """
        if removal:
            chosen = [p for p in self.policies if dom.namespace in p.namespaces]
        else:
            chosen = [p for p in self.policies if p.grants(dom.namespace, dom.domain)]
        return tuple(h for p in chosen for h in p.allowed_hosts)

    def host_refusals(self, dom: MailDomain) -> list[tuple[str, str]]:
        """(field path, why) for each host ``dom`` names that is not public nor allowed."""
        if not self.enforced:
            return []
        patterns = self.allowed_hosts(dom)
        found = []
        for path, host in contacted_hosts(dom):
            problem = hosts.host_problem(host)
            if problem is not None and not hosts.allowed(host, patterns):
                found.append((path, f"{host} is {problem}; a MailDomainPolicy may allow it"))
        return found

    def outbound_refusals(self, dom: MailDomain) -> list[tuple[str, str]]:
        """(field path, why) for each address ``dom`` binds Postfix to that no grant of its
        domain gives it (``outbound.bindAddresses``)."""
        if not self.enforced or not dom.outbound.bind_address:
            return []
        granting = [p for p in self.policies if p.grants(dom.namespace, dom.domain)]
        networks = [ipaddress.ip_network(n) for p in granting for n in p.bind_addresses]
        return [
            (
                f"spec.outbound.addresses[{i}]",
                f"{address} is not among the addresses a MailDomainPolicy lets this namespace "
                "bind to (outbound.bindAddresses)",
            )
            for i, address in enumerate(dom.outbound.ipv4 + dom.outbound.ipv6)
            if not any(ipaddress.ip_address(address) in net for net in networks)
        ]

    def server_refusal(self, dom: MailDomain) -> str | None:
        """Why ``dom`` may not join the MailServer its ``spec.serverRef`` names, or None: a
        server of another namespace must be listed in ``servers`` by a grant of its domain."""
        server = dom.server_ref
        if server is None or not self.enforced or server.namespace == dom.namespace:
            return None
        granting = [p for p in self.policies if p.grants(dom.namespace, dom.domain)]
        if not granting or any(f"{server.namespace}/{server.name}" in p.servers for p in granting):
            return None  # not granted at all: refused as such
        names = " or ".join(p.ref for p in granting)
        return (
            f"{names} does not list the {server.ref} in spec.servers: namespace "
            f"{dom.namespace} may not join it; ask the platform team to add it"
        )

    def limits_for(self, namespace: str) -> NamespaceLimits:
        """The limits of ``namespace``: the most generous of the policies naming it."""
        if not self.enforced:
            return UNBOUNDED
        return combine([(p.ref, p.limits) for p in self.policies if namespace in p.namespaces])

    def proof_required(self, namespace: str, domain: str) -> bool:
        """Whether ``domain`` needs a DNS proof of control: every grant of it says so."""
        granting = [p for p in self.policies if p.grants(namespace, domain)]
        return bool(granting) and all(p.require_proof for p in granting)

    def hostname_refusal(self, dom: MailDomain) -> str | None:
        """Why ``dom`` may not use its ``spec.hostname``, or None. The host name gets A/AAAA,
        SPF and CAA records and the certificate, so it is granted like a domain; where every
        grant of it requires a proof of control, it must be the MailDomain's own domain or under
        it (that domain's proof, required by its own grant, covers it): a proof of one name
        under a shared suffix proves nothing about another."""
        refusal = self.refusal(dom.namespace, dom.hostname)
        if refusal is not None:
            return refusal
        if not self.proof_required(dom.namespace, dom.hostname) or within(dom.hostname, dom.domain):
            return None
        return (
            f"{dom.hostname} needs a proof of control; use a host name under {dom.domain}, "
            "whose proof covers it"
        )

    def refusal(self, namespace: str, domain: str) -> str | None:
        """Why ``namespace`` may not serve ``domain``, naming whom to ask; None if it may."""
        if not self.enforced or any(p.grants(namespace, domain) for p in self.policies):
            return None
        message = f"no MailDomainPolicy grants namespace {namespace} the domain {domain}"
        mine = sorted(p.ref for p in self.policies if namespace in p.namespaces)
        if mine:
            return f"{message}; ask the platform team to add it to {' or '.join(mine)}"
        return f"{message}; ask the platform team for a MailDomainPolicy granting it"


def contacted_hosts(dom: MailDomain) -> list[tuple[str, str]]:
    """(field path, host) of every host contacted on the MailDomain's behalf: by the operator
    (the DNS provider's server) and by its mail pods (the relay, freshclam's signature sources,
    rspamd's DNS resolvers). A resolver is held to the same rule although it gets no secret:
    the pod's own resolver (the cluster DNS) is what an empty list uses, so a platform need
    list the cluster DNS in ``allowedHosts`` only for tenants that must name it."""
    found: list[tuple[str, str]] = []
    if dom.relay is not None:
        found.append(("spec.relay.host", dom.relay.host))
    signatures = dom.spam.antivirus.signatures
    path = "spec.spam.antivirus.signatures"
    if signatures.private_mirror is not None:
        found.append((f"{path}.privateMirror", hosts.url_host(signatures.private_mirror)))
    found += [(f"{path}.urls[{i}]", hosts.url_host(url)) for i, url in enumerate(signatures.urls)]
    found += [(f"spec.resolvers[{i}]", address) for i, address in enumerate(dom.resolvers)]
    settings = dom.dns.provider.settings
    if isinstance(settings, Rfc2136Settings):
        found.append(("spec.dns.provider.rfc2136.server", settings.server))
    elif isinstance(settings, PowerDnsSettings):
        found.append(("spec.dns.provider.powerdns.apiUrl", hosts.url_host(settings.api_url)))
    return found


def _host_pattern(value: object) -> str:
    if isinstance(value, str) and "/" in value:
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise FieldError(f"{value!r} is not a CIDR range") from None
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
    return _pattern(value)


def _pattern(value: object) -> str:
    if isinstance(value, str) and value.startswith("*."):
        return "*." + validate.domain_name(value[2:])
    return validate.domain_name(value)


def _entries(
    r: Reader, section: Mapping[str, Any], path: str, check: Any, allow_empty: bool = False
) -> tuple[str, ...]:
    """A list of checked strings at ``path`` (``spec.domains``), sorted, without repeats."""
    raw = section.get(path.rpartition(".")[2])
    if not isinstance(raw, list) or (not raw and not allow_empty):
        r.fail(path, "must list at least one entry")
        return ()
    if len(raw) > MAX_ENTRIES:
        r.fail(path, f"at most {MAX_ENTRIES} entries")
        return ()
    found: list[str] = []
    for index, value in enumerate(raw):
        try:
            found.append(check(value))
        except FieldError as err:
            r.fail(f"{path}[{index}]", str(err))
    return tuple(sorted(set(found)))


def parse_policy(doc: Mapping[str, Any], source: str = "") -> MailDomainPolicy:
    """A MailDomainPolicy document to its model; raises ``ValidationError`` with every problem."""
    if not isinstance(doc, Mapping):
        r = Reader(f"{KIND}/?", source)
        r.fail("", "expected a mapping (a Kubernetes object)")
        raise ValidationError(r.problems)
    r = Reader(f"{KIND}/{meta_of(doc).get('name', '?')}", source)
    check_header(r, doc, KIND, status=False)
    meta = r.mapping(doc.get("metadata"), "metadata", METADATA_FIELDS)
    name = r.field(meta, "name", "metadata", validate.kubernetes_name)
    fields = {
        "namespaces",
        "domains",
        "service",
        "allowedHosts",
        "limits",
        "requireProof",
        "outbound",
        "issuers",
        "servers",
    }
    spec = r.mapping(doc.get("spec"), "spec", fields)
    namespaces = _entries(r, spec, "spec.namespaces", validate.kubernetes_name)
    domains = _entries(r, spec, "spec.domains", _pattern)
    service = _service_limits(r, spec.get("service"))
    allowed_hosts: tuple[str, ...] = ()
    if "allowedHosts" in spec:
        allowed_hosts = _entries(r, spec, "spec.allowedHosts", _host_pattern, allow_empty=True)
    limits = parse_limits(r, spec.get("limits"))
    require_proof = r.field(spec, "requireProof", "spec", boolean, False)
    outbound = r.mapping(spec.get("outbound"), "spec.outbound", {"bindAddresses"})
    bind_addresses: tuple[str, ...] = ()
    if "bindAddresses" in outbound:
        bind_addresses = _entries(
            r, outbound, "spec.outbound.bindAddresses", _network, allow_empty=True
        )
    issuer_limits = issuers.parse_issuers(r, spec.get("issuers"))
    servers: tuple[str, ...] = ()
    if "servers" in spec:
        servers = _entries(r, spec, "spec.servers", _server, allow_empty=True)
    raise_problems(r)
    return MailDomainPolicy(
        name,
        namespaces,
        domains,
        service,
        allowed_hosts,
        limits,
        require_proof,
        bind_addresses,
        issuer_limits,
        servers,
    )


def _server(value: object) -> str:
    """``namespace/name`` of a MailServer."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise FieldError(f"expected namespace/name of a MailServer, got {value!r}")
    namespace, name = value.split("/")
    return f"{validate.kubernetes_name(namespace)}/{validate.kubernetes_name(name)}"


def _network(value: object) -> str:
    """An address or a CIDR range, canonical (an address is its /32 or /128)."""
    try:
        return str(ipaddress.ip_network(value if isinstance(value, str) else "", strict=False))
    except ValueError:
        raise FieldError(f"{value!r} is not an IP address or CIDR range") from None


def _annotation_pattern(value: object) -> str:
    if isinstance(value, str) and value.endswith("*"):
        return validate.annotation_key(value[:-1] + "x")[:-1] + "*"
    return validate.annotation_key(value)


def _service_limits(r: Reader, value: object) -> ServiceLimits:
    if value is None:
        return ServiceLimits()
    section = r.mapping(
        value, "spec.service", {"exposures", "types", "annotations", "loadBalancerIP"}
    )
    types = annotations = exposures = None
    if "exposures" in section:
        exposures = _entries(r, section, "spec.service.exposures", one_of(*EXPOSURES))
    if "types" in section:
        service_types = one_of("LoadBalancer", "NodePort", "ClusterIP")
        types = _entries(r, section, "spec.service.types", service_types)
    if "annotations" in section:
        annotations = _entries(
            r, section, "spec.service.annotations", _annotation_pattern, allow_empty=True
        )
    allow_ip = r.field(section, "loadBalancerIP", "spec.service", boolean, True)
    return ServiceLimits(types, annotations, allow_ip, exposures)
