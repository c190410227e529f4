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

Grants are enforced as soon as one policy exists, or when the operator is told to require them
(``--require-domain-grant``; the chart's ``policy.requireGrant``): a platform that writes
policies means them. Without either, every namespace may claim any domain, as for a single team.
A MailDomain whose domain is not granted to its namespace serves nothing and takes no part in
the contest for its domain (``assemble``), so a tenant cannot squat a domain before the
platform grants it to its owner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailstack.api import validate
from mailstack.api.errors import FieldError, ValidationError
from mailstack.api.parse.common import METADATA_FIELDS, check_header, raise_problems
from mailstack.api.reader import Reader
from mailstack.kubedoc import meta_of

KIND = "MailDomainPolicy"
MAX_ENTRIES = 256  # namespaces and domains per policy, as the CRD says


@dataclass(frozen=True)
class MailDomainPolicy:
    name: str
    namespaces: tuple[str, ...]
    domains: tuple[str, ...]  # exact names, or "*." + a suffix

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

    def refusal(self, namespace: str, domain: str) -> str | None:
        """Why ``namespace`` may not serve ``domain``, naming whom to ask; None if it may."""
        if not self.enforced or any(p.grants(namespace, domain) for p in self.policies):
            return None
        message = f"no MailDomainPolicy grants namespace {namespace} the domain {domain}"
        mine = sorted(p.ref for p in self.policies if namespace in p.namespaces)
        if mine:
            return f"{message}; ask the platform team to add it to {' or '.join(mine)}"
        return f"{message}; ask the platform team for a MailDomainPolicy granting it"


def _pattern(value: object) -> str:
    if isinstance(value, str) and value.startswith("*."):
        return "*." + validate.domain_name(value[2:])
    return validate.domain_name(value)


def _entries(r: Reader, spec: Mapping[str, Any], key: str, check: Any) -> tuple[str, ...]:
    raw = spec.get(key)
    path = f"spec.{key}"
    if not isinstance(raw, list) or not raw:
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
    spec = r.mapping(doc.get("spec"), "spec", {"namespaces", "domains"})
    namespaces = _entries(r, spec, "namespaces", validate.kubernetes_name)
    domains = _entries(r, spec, "domains", _pattern)
    raise_problems(r)
    return MailDomainPolicy(name=name, namespaces=namespaces, domains=domains)
