"""The manual provider: nothing is pushed; people publish the records themselves.

Owns: a provider that reads nothing and supports no record type, so every desired record's status
is ``Manual``; the records are shown in status, written to ``records.zone`` and printed by
``mailstack dns plan`` in zone-file form, and ``mailstack dns check`` verifies what was published.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from mailstack.api.models import MailDomain, Secret
from mailstack.dns.plan import Change, ZoneState
from mailstack.dns.providers.base import Provider
from mailstack.dns.providers.construction import ProviderOptions


class ManualProvider(Provider):
    kind = "manual"
    supports: frozenset[str] = frozenset()

    def read(self, names: Collection[str]) -> ZoneState:
        return ZoneState(self.zone, (), complete=False)

    def apply(self, changes: Sequence[Change]) -> None:
        if changes:
            raise AssertionError("the manual provider never has changes to apply")

    def describe(self) -> str:
        return f"manual (publish the records of {self.zone} yourself)"


def from_domain(
    domain: MailDomain, secrets: Mapping[str, Secret], options: ProviderOptions
) -> ManualProvider:
    return ManualProvider(domain.domain)
