"""An in-memory DNS provider for the DNS unit tests: a zone that applies a plan atomically and
refuses a change whose ``before`` is stale, as RFC 2136 prerequisites do.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from mailstack.dns.errors import ProviderError
from mailstack.dns.ownership import marker_name
from mailstack.dns.plan import Change, RRset, ZoneState
from mailstack.dns.providers.base import Provider


class MemoryProvider(Provider):
    """A provider over an in-memory zone that applies changes like an atomic API with
    prerequisites: a change whose ``before`` is not what the zone holds fails the whole batch."""

    kind = "memory"

    def __init__(self, zone: str, rrsets: Sequence[RRset] = (), complete: bool = True) -> None:
        super().__init__(zone)
        self.rrsets = {r.key: r for r in rrsets}
        self.complete = complete

    def read(self, names: Collection[str]) -> ZoneState:
        wanted = set(names) | {marker_name(n) for n in names}
        found = [r for r in self.rrsets.values() if self.complete or r.name in wanted]
        return ZoneState(self.zone, tuple(sorted(found)), complete=self.complete)

    def apply(self, changes: Sequence[Change]) -> None:
        staged = dict(self.rrsets)
        for change in changes:
            key = (change.name, change.type)
            held = staged.get(key)
            if (held is None) != (change.before is None) or (
                held is not None
                and change.before is not None
                and sorted(held.values) != sorted(change.before.values)
            ):
                raise ProviderError(f"prerequisite failed at {key}: {held} != {change.before}")
            if change.after is None:
                del staged[key]
            else:
                staged[key] = change.after
        self.writes += 1
        self.rrsets = staged
