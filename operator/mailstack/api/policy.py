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
        types: [LoadBalancer]                    # default: any type
        annotations: ["metallb.universe.tf/*"]   # keys, a trailing * a prefix; default: any
        loadBalancerIP: false                    # default: allowed

The public Service of a MailDomain is created by the operator's account, past whatever stops
the tenant from making a LoadBalancer or annotating one itself; a policy's ``service`` section
says what its grant allows there. Several policies granting the same domain add up: a setting
is allowed when one of them allows it.

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
from dataclasses import dataclass
from typing import Any

from mailstack.api import hosts, validate
from mailstack.api.errors import FieldError, ValidationError
from mailstack.api.models import (
    MailDomain,
    PowerDnsSettings,
    Rfc2136Settings,
    ServiceSpec,
)
from mailstack.api.parse.common import METADATA_FIELDS, check_header, raise_problems
from mailstack.api.reader import Reader, boolean, one_of
from mailstack.kubedoc import meta_of

KIND = "MailDomainPolicy"
MAX_ENTRIES = 256  # namespaces and domains per policy, as the CRD says


@dataclass(frozen=True)
class ServiceLimits:
    """What a grant allows the public Service to be; None: anything."""

    types: tuple[str, ...] | None = None
    annotations: tuple[str, ...] | None = None  # keys; a trailing "*" matches a prefix
    load_balancer_ip: bool = True

    def refusals(self, service: ServiceSpec) -> list[tuple[str, str]]:
        """(field path, why) for every part of ``service`` these limits do not allow."""
        found: list[tuple[str, str]] = []
        if self.types is not None and service.type not in self.types:
            found.append(("spec.service.type", f"{service.type} is not allowed"))
        for key, _ in service.annotations:
            if self.annotations is not None and not any(
                key == p or (p.endswith("*") and key.startswith(p[:-1])) for p in self.annotations
            ):
                found.append((f"spec.service.annotations.{key}", "this annotation is not allowed"))
        if service.load_balancer_ip and not self.load_balancer_ip:
            found.append(("spec.service.loadBalancerIP", "a fixed address is not allowed"))
        return found


@dataclass(frozen=True)
class MailDomainPolicy:
    name: str
    namespaces: tuple[str, ...]
    domains: tuple[str, ...]  # exact names, or "*." + a suffix
    service: ServiceLimits = ServiceLimits()
    # Non-public hosts a MailDomain may name (relay, DNS server): names, "*." suffixes, CIDRs.
    allowed_hosts: tuple[str, ...] = ()

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


@dataclass(frozen=True)
class Grants:
    """The policies in force, and whether a grant is required even without any."""

    policies: tuple[MailDomainPolicy, ...] = ()
    required: bool = False

    @property
    def enforced(self) -> bool:
        return self.required or bool(self.policies)

    def service_refusals(self, dom: MailDomain) -> list[tuple[str, str]]:
        """(field path, why) for what the grants of ``dom`` do not allow its Service to be."""
        if not self.enforced:
            return []
        granting = [p for p in self.policies if p.grants(dom.namespace, dom.domain)]
        verdicts = [p.service.refusals(dom.service) for p in granting]
        if not verdicts or any(not v for v in verdicts):
            return []  # not granted (refused elsewhere), or one grant allows all of it
        names = " or ".join(p.ref for p in granting)
        return [(path, f"{why} by {names}") for path, why in verdicts[0]]

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
    """(field path, host) of every host contacted on the MailDomain's behalf."""
    found: list[tuple[str, str]] = []
    if dom.relay is not None:
        found.append(("spec.relay.host", dom.relay.host))
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
    fields = {"namespaces", "domains", "service", "allowedHosts"}
    spec = r.mapping(doc.get("spec"), "spec", fields)
    namespaces = _entries(r, spec, "spec.namespaces", validate.kubernetes_name)
    domains = _entries(r, spec, "spec.domains", _pattern)
    service = _service_limits(r, spec.get("service"))
    allowed_hosts: tuple[str, ...] = ()
    if "allowedHosts" in spec:
        allowed_hosts = _entries(r, spec, "spec.allowedHosts", _host_pattern, allow_empty=True)
    raise_problems(r)
    return MailDomainPolicy(name, namespaces, domains, service, allowed_hosts)


def _annotation_pattern(value: object) -> str:
    if isinstance(value, str) and value.endswith("*"):
        return validate.annotation_key(value[:-1] + "x")[:-1] + "*"
    return validate.annotation_key(value)


def _service_limits(r: Reader, value: object) -> ServiceLimits:
    if value is None:
        return ServiceLimits()
    section = r.mapping(value, "spec.service", {"types", "annotations", "loadBalancerIP"})
    types = annotations = None
    if "types" in section:
        service_types = one_of("LoadBalancer", "NodePort", "ClusterIP")
        types = _entries(r, section, "spec.service.types", service_types)
    if "annotations" in section:
        annotations = _entries(
            r, section, "spec.service.annotations", _annotation_pattern, allow_empty=True
        )
    allow_ip = r.field(section, "loadBalancerIP", "spec.service", boolean, True)
    return ServiceLimits(types, annotations, allow_ip)
