"""The change set between the desired records and a provider's current records (pure).

Owns: the diff (``plan_zone``, ``cleanup_plan``), conflicts and the safety threshold; the data a
provider reads and applies (``RRset``, ``ZoneState``, ``Change``). The text form of a plan is
``plan_text.py``'s.

Ownership (which records are ours to change) is ``ownership.py``'s.

Every plan is idempotent: applied, the provider's records read back give an empty plan.
A plan deleting more than ``MAX_DELETE_FRACTION`` of a zone's records (zones of at least
``MIN_EXISTING_RECORDS``) is refused unless forced (octoDNS's safety threshold); ``cleanup_plan``
only ever deletes what is claimed, so it is not subject to it.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mailstack.dns.ownership import Claim, claims_in, is_marker_name, marker_name
from mailstack.dns.records import Record

MAX_DELETE_FRACTION = 0.3
MIN_EXISTING_RECORDS = 10

State = Literal["Published", "Pending", "Conflict", "Manual"]
Action = Literal["create", "update", "delete"]


def in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


@dataclass(frozen=True, order=True)
class RRset:
    """A record set as a provider holds it: canonical values (see ``records.canonical_value``)."""

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.type)


@dataclass(frozen=True)
class ZoneState:
    """What a provider read: the whole zone (``complete``) or the RRsets of the names asked for."""

    zone: str
    rrsets: tuple[RRset, ...]
    complete: bool = True

    def index(self) -> dict[tuple[str, str], RRset]:
        return {rrset.key: rrset for rrset in self.rrsets}


@dataclass(frozen=True)
class Change:
    """One RRset going from ``before`` to ``after`` (None: absent)."""

    action: Action
    before: RRset | None
    after: RRset | None
    reason: str = ""
    marker: bool = False

    @property
    def name(self) -> str:
        return (self.after or self.before).name  # type: ignore[union-attr]

    @property
    def type(self) -> str:
        return (self.after or self.before).type  # type: ignore[union-attr]

    @property
    def added(self) -> tuple[str, ...]:
        old = set(self.before.values) if self.before else set()
        return tuple(v for v in (self.after.values if self.after else ()) if v not in old)

    @property
    def removed(self) -> tuple[str, ...]:
        new = set(self.after.values) if self.after else set()
        return tuple(v for v in (self.before.values if self.before else ()) if v not in new)


@dataclass(frozen=True)
class RecordStatus:
    """One desired record's state, as written to ``status.dns.records[]``."""

    name: str
    type: str
    values: tuple[str, ...]
    state: State
    message: str = ""
    ttl: int = 0
    reason: str = ""  # why the record exists (records.Record.reason)

    @staticmethod
    def of(record: Record, state: State, message: str = "") -> RecordStatus:
        return RecordStatus(
            record.name, record.type, record.values, state, message, record.ttl, record.reason
        )

    def to_dict(self) -> dict[str, object]:
        result: dict[str, object] = {
            "name": self.name,
            "type": self.type,
            "ttl": self.ttl,
            "values": list(self.values),
            "state": self.state,
            "reason": self.reason,
        }
        if self.message:
            result["message"] = self.message
        return result


@dataclass
class Plan:
    zone: str
    owner: str
    changes: list[Change] = field(default_factory=list)
    statuses: list[RecordStatus] = field(default_factory=list)
    zone_records: int = 0  # values in the zone (or the names read), ownership markers excluded

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def conflicts(self) -> list[RecordStatus]:
        return [s for s in self.statuses if s.state == "Conflict"]

    def record_changes(self, action: Action | None = None) -> list[Change]:
        return [c for c in self.changes if not c.marker and (action is None or c.action == action)]

    @property
    def deleted_values(self) -> int:
        return sum(len(c.removed) for c in self.changes if not c.marker)

    def refusal(
        self,
        max_fraction: float = MAX_DELETE_FRACTION,
        min_records: int = MIN_EXISTING_RECORDS,
    ) -> str | None:
        """Why the plan is unsafe to apply unforced, or None."""
        deleted = self.deleted_values
        if self.zone_records < min_records or deleted <= max_fraction * self.zone_records:
            return None
        return (
            f"the plan would delete {deleted} of the {self.zone_records} records of zone "
            f"{self.zone} (more than {max_fraction:.0%}); re-run with --force if that is intended"
        )

    def applied(self) -> list[RecordStatus]:
        """The statuses once the plan's changes are applied: Pending becomes Published."""
        return [
            dataclasses.replace(s, state="Published") if s.state == "Pending" else s
            for s in self.statuses
        ]


def _same(a: Iterable[str], b: Iterable[str]) -> bool:
    return sorted(a) == sorted(b)


class _Builder:
    """Accumulates one plan: record changes, claim edits, statuses."""

    def __init__(self, zone: str, owner: str, current: ZoneState) -> None:
        self.zone = zone
        self.owner = owner
        self.index = current.index()
        self.claims = claims_in(current.rrsets)
        self.changes: list[Change] = []
        self.statuses: list[RecordStatus] = []
        self.claim_add: dict[str, set[Claim]] = defaultdict(set)
        self.claim_remove: dict[str, set[Claim]] = defaultdict(set)
        self.marker_ttl: dict[str, int] = {}

    def ours(self, key: tuple[str, str]) -> Claim | None:
        return next((c for c in self.claims.get(key, ()) if c.owner == self.owner), None)

    def others(self, key: tuple[str, str]) -> list[str]:
        return sorted({c.owner for c in self.claims.get(key, ()) if c.owner != self.owner})

    def status(self, record: Record, state: State, message: str = "") -> None:
        self.statuses.append(RecordStatus.of(record, state, message))

    def change(self, before: RRset | None, after: RRset | None, reason: str) -> None:
        if after is not None and not after.values:
            after = None
        if before is None and after is None:
            return
        action: Action = "create" if before is None else "delete" if after is None else "update"
        self.changes.append(Change(action, before, after, reason))

    def claim(self, record: Record) -> None:
        self.claim_add[record.name].add(Claim(self.owner, record.type, record.value_prefix))
        self.marker_ttl.setdefault(record.name, record.ttl)

    def desired(self, record: Record, supports: Collection[str] | None) -> None:
        key = (record.name, record.type)
        if not in_zone(record.name, self.zone):
            self.status(
                record, "Manual", f"outside zone {self.zone}: publish it where its zone is served"
            )
            return
        if supports is not None and record.type not in supports:
            self.status(record, "Manual", f"the provider cannot publish {record.type} records")
            return
        others = self.others(key)
        if others:
            self.status(record, "Conflict", f"claimed by another owner: {', '.join(others)}")
            return
        owned = self.ours(key) is not None
        cname = self.index.get((record.name, "CNAME"))
        if record.type != "CNAME" and cname is not None and self.ours(cname.key) is None:
            self.status(
                record, "Conflict", f"a CNAME to {cname.values[0]} not written by mailstack is here"
            )
            return
        current = self.index.get(key)
        if record.value_prefix:
            self._shared(record, current, owned)
        else:
            self._whole(record, current, owned)

    def _whole(self, record: Record, current: RRset | None, owned: bool) -> None:
        desired = RRset(record.name, record.type, record.ttl, record.values)
        if current is None:
            self.change(None, desired, record.reason)
            if not owned:
                self.claim(record)
            self.status(record, "Pending")
        elif owned:
            if _same(current.values, record.values) and current.ttl == record.ttl:
                self.status(record, "Published")
            else:
                self.change(current, desired, record.reason)
                self.status(record, "Pending")
        elif _same(current.values, record.values):
            self.status(record, "Published", "matches, but not written by mailstack: left alone")
        else:
            shown = ", ".join(current.values)
            self.status(record, "Conflict", f"held by records mailstack did not write: {shown}")

    def _shared(self, record: Record, current: RRset | None, owned: bool) -> None:
        values = current.values if current else ()
        mine = [v for v in values if record.owns_value(v)]
        foreign = tuple(v for v in values if not record.owns_value(v))
        ttl_only = owned and current is not None and not foreign and current.ttl != record.ttl
        if _same(mine, record.values) and not ttl_only:
            note = "" if owned else "matches, but not written by mailstack: left alone"
            self.status(record, "Published", note)
            return
        if mine and not owned:
            shown = ", ".join(mine)
            self.status(
                record,
                "Conflict",
                f"a {record.value_prefix} value mailstack did not write is published: {shown}",
            )
            return
        # Other owners' values keep the RRset's TTL: it is theirs as much as ours.
        ttl = current.ttl if current and foreign else record.ttl
        self.change(
            current, RRset(record.name, record.type, ttl, foreign + record.values), record.reason
        )
        if not owned:
            self.claim(record)
        self.status(record, "Pending")

    def release(self, key: tuple[str, str], claim: Claim, reason: str) -> None:
        """Delete what ``claim`` covers at ``key``, then the claim."""
        current = self.index.get(key)
        if current is not None:
            if claim.prefix:
                kept = tuple(v for v in current.values if not v.startswith(claim.prefix))
                after = RRset(current.name, current.type, current.ttl, kept)
                if kept != current.values:
                    self.change(current, after, f"{claim.prefix} value {reason}")
            else:
                self.change(current, None, reason)
        self.claim_remove[key[0]].add(claim)

    def marker_changes(self) -> tuple[list[Change], list[Change]]:
        """Claim edits: (those adding a claim: first, those only removing: last)."""
        first: list[Change] = []
        last: list[Change] = []
        for name in sorted(set(self.claim_add) | set(self.claim_remove)):
            mname = marker_name(name)
            current = self.index.get((mname, "TXT"))
            values = list(current.values) if current else []
            drop = {(c.owner, c.type) for c in self.claim_remove.get(name, ())}
            values = [
                v
                for v in values
                if (claim := Claim.parse(v)) is None or (claim.owner, claim.type) not in drop
            ]
            adds = [c for c in sorted(self.claim_add.get(name, ())) if c.text() not in values]
            values += [c.text() for c in adds]
            ttl = current.ttl if current else self.marker_ttl.get(name, 3600)
            after = RRset(mname, "TXT", ttl, tuple(values)) if values else None
            if current is not None and after is not None and _same(current.values, after.values):
                continue
            action: Action = (
                "create" if current is None else "delete" if after is None else "update"
            )
            what = "ownership claim" + (
                f" for {', '.join(c.type for c in adds)}" if adds else " released"
            )
            change = Change(action, current, after, what, marker=True)
            (first if adds else last).append(change)
        return first, last


def _zone_records(current: ZoneState) -> int:
    return sum(len(r.values) for r in current.rrsets if not is_marker_name(r.name))


def plan_zone(
    desired: Sequence[Record],
    current: ZoneState,
    owner: str,
    supports: Collection[str] | None = None,
) -> Plan:
    """The changes that make ``current`` hold ``desired``, as far as ``owner`` may change it.

    ``current`` must hold at least every desired name and its marker (a provider reading the
    whole zone also finds records of ours that are no longer desired, and deletes them).
    ``supports``: the record types the provider can write (None: any).
    """
    zone = current.zone
    builder = _Builder(zone, owner, current)
    keys = {(r.name, r.type) for r in desired}
    if len(keys) != len(desired):
        raise ValueError("desired records must have distinct (name, type)")
    for record in desired:
        builder.desired(record, supports)
    for key, claims in sorted(builder.claims.items()):
        claim = next((c for c in claims if c.owner == owner), None)
        if claim is not None and key not in keys and in_zone(key[0], zone):
            builder.release(key, claim, "no longer desired")
    return _assemble(builder, current)


def cleanup_plan(current: ZoneState, owner: str) -> Plan:
    """Remove exactly what ``owner`` claims: its records (its values, at the apex) and claims."""
    builder = _Builder(current.zone, owner, current)
    for key, claims in sorted(builder.claims.items()):
        claim = next((c for c in claims if c.owner == owner), None)
        if claim is not None:
            builder.release(key, claim, "the MailDomain is being deleted")
    return _assemble(builder, current)


def _assemble(builder: _Builder, current: ZoneState) -> Plan:
    first, last = builder.marker_changes()
    # Addresses first: servers check that an MX/SRV target in the zone has one (BIND refuses
    # an update adding an MX whose in-zone target has no A/AAAA record).
    order = {"create": 0, "update": 1, "delete": 2}
    records = sorted(builder.changes, key=lambda c: (order[c.action], c.type not in ("A", "AAAA")))
    return Plan(
        zone=current.zone,
        owner=builder.owner,
        changes=first + records + last,
        statuses=builder.statuses,
        zone_records=_zone_records(current),
    )
