"""Owns the state behind the operator's gauges: objects by condition, and each MailDomain's
certificate expiry and DKIM key creation time (``metrics`` exposes them at each scrape).

Both are fed from what a pass computes anyway, never from extra API reads:

- ``ConditionTracker``: the conditions of every status the operator computes (written, or
  found current), one entry per object; counted per (kind, type, status, reason) as they change,
  so a scrape costs the number of distinct label sets, not the number of Mailboxes. An object is
  forgotten when it is deleted (the finalizer, the Mailbox informer).
- ``DomainFacts``: per MailDomain, the server certificate's ``notAfter`` (the internal CA's
  certificate from the material; with cert-manager the Certificate child's ``status.notAfter``)
  and when its DKIM key was made. No creation time is recorded with the key: the ``<n>-dkim``
  Secret's ``creationTimestamp`` stands for it, unless the key in use changed while this
  process watched (an algorithm change rewrites the key in the same Secret): then the pass that
  saw the new key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailstack.controller.kinds import SECRET, ChildKey
from mailstack.kubedoc import Obj
from mailstack.material import Material
from mailstack.material.resolve import dkim_secret_name

# (type, status, reason) of each condition of one status, in the status's order.
Shape = tuple[tuple[str, str, str], ...]
ConditionKey = tuple[str, str, str, str]  # kind, type, status, reason


def shape_of(status: Mapping[str, Any]) -> Shape:
    conditions = status.get("conditions") or []
    return tuple(
        (str(c.get("type")), str(c.get("status")), str(c.get("reason") or ""))
        for c in conditions
        if isinstance(c, Mapping)
    )


class ConditionTracker:
    """The conditions of each object the operator computed a status for, and their counts."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[tuple[str, str], Shape]] = {}  # kind → (ns, name) → shape
        self._counts: Counter[ConditionKey] = Counter()
        self._shapes: dict[Shape, Shape] = {}  # one tuple per distinct shape: 10,000 Mailboxes

    def note(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        found = shape_of(status)
        shape = self._shapes.setdefault(found, found)
        objects = self._objects.setdefault(kind, {})
        old = objects.get((namespace, name))
        if old is shape:
            return
        self._count(kind, old, -1)
        self._count(kind, shape, 1)
        objects[(namespace, name)] = shape

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self._count(kind, self._objects.get(kind, {}).pop((namespace, name), None), -1)

    def _count(self, kind: str, shape: Shape | None, step: int) -> None:
        for type_, status, reason in shape or ():
            key = (kind, type_, status, reason)
            self._counts[key] += step
            if self._counts[key] <= 0:
                del self._counts[key]

    def counts(self) -> Iterator[tuple[ConditionKey, int]]:
        """Objects per (kind, type, status, reason); only label sets some object has."""
        yield from sorted(self._counts.items())

    def of_kind(self, kind: str) -> Iterator[tuple[str, str, Shape]]:
        """Each object of ``kind``: namespace, name and its conditions."""
        for (namespace, name), shape in sorted(self._objects.get(kind, {}).items()):
            yield namespace, name, shape


@dataclass(frozen=True)
class DomainFact:
    """What the gauges show of one MailDomain (times in seconds since the epoch)."""

    domain: str
    certificate_not_after: float | None
    dkim_selector: str
    dkim_public_key: str
    dkim_created: float | None


def parse_stamp(value: object) -> float | None:
    """An RFC 3339 time of the API (``2026-12-07T10:00:00Z``) in seconds, None if it is none."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def certificate_not_after(material: Material, certificate: Obj | None) -> float | None:
    """The server certificate's end: the internal CA's (material), else cert-manager's."""
    if material.tls is not None:
        return material.tls.not_after.timestamp()
    return parse_stamp(((certificate or {}).get("status") or {}).get("notAfter"))


def dkim_secret_key(name: str) -> ChildKey:
    return SECRET.key(dkim_secret_name(name))


class DomainFacts:
    """Each MailDomain's certificate expiry and DKIM key creation time, as its passes saw them."""

    def __init__(self) -> None:
        self._facts: dict[tuple[str, str], DomainFact] = {}

    def note(
        self,
        namespace: str,
        name: str,
        *,
        domain: str,
        material: Material,
        children: Mapping[ChildKey, Obj | None],
        certificate: Obj | None,
        now: float,
    ) -> None:
        """After a pass that rendered: ``children`` as they are now (the DKIM Secret among them)."""
        dkim = material.dkim
        public_key = dkim.dns_value()
        secret = children.get(dkim_secret_key(name)) or {}
        created = parse_stamp((secret.get("metadata") or {}).get("creationTimestamp"))
        before = self._facts.get((namespace, name))
        if before is not None and before.dkim_public_key != public_key:
            created = now  # a new key in the same Secret: its creation time says nothing
        elif before is not None and before.dkim_created is not None:
            created = before.dkim_created
        self._facts[(namespace, name)] = DomainFact(
            domain,
            certificate_not_after(material, certificate),
            dkim.selector,
            public_key,
            created,
        )

    def forget(self, namespace: str, name: str) -> None:
        self._facts.pop((namespace, name), None)

    def items(self) -> Iterator[tuple[str, str, DomainFact]]:
        for (namespace, name), fact in sorted(self._facts.items()):
            yield namespace, name, fact
