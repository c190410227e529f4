"""Owns the per-namespace limits of the MailDomainPolicies and the decision of what they admit
(pure).

A policy's ``spec.limits`` bounds what each namespace it names may claim::

    limits:
      maxMailDomains: 3      # MailDomains
      maxStorage: 60Gi       # the volumes their StatefulSets request (mailboxes + queue)
      maxMailboxes: 200      # Mailboxes on the domains of those MailDomains
      maxQuota: 100Gi        # the total of those Mailboxes' spec.quota

Several policies naming the same namespace add up as their grants do: a limit is the most
generous of theirs, and a policy naming the namespace without that limit leaves it unbounded.

What is admitted is decided in a stable order, the oldest first (``creationTimestamp``, then the
uid; in files, which have neither, namespace and name): each object is admitted when it fits
beside those admitted before it, and refused otherwise, so that a new object never pushes out
an older one that serves. A refused object is one that would not fit; a later, smaller one may
still fit. Only MailDomains that may otherwise serve (granted, proven, Service and hosts
allowed) count, before the contest for their domains: a MailDomain that an older claim in
another namespace outserves still counts against its own namespace. Mailboxes count when a
MailDomain of their namespace admitted here claims their domain; a Mailbox without a quota is
refused under ``maxQuota``, which it would make unbounded.

``maxStorage`` counts what the volumes really request, not only what the specs say: the
shell passes the namespace's mail volume claims (by MailDomain name, their requests summed).
Claims of a name that no counted MailDomain holds (a deleted MailDomain's, kept by the default
``retention: Retain``, or a refused one's) take their room first: they are there; a counted
MailDomain needs the larger of its spec and its claims (a volume does not shrink with its
spec). Deleting a MailDomain and creating it under another name then no longer adds volumes
beyond the limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mailstack.api import validate
from mailstack.api.errors import FieldError, Problem
from mailstack.api.models import Mailbox, MailDomain
from mailstack.api.reader import Reader, integer

# Problem.kind of a refusal here (the controller's reason LimitExceeded).
LIMIT_EXCEEDED = "limit-exceeded"
FIELDS = {"maxMailDomains", "maxMailboxes", "maxQuota", "maxStorage"}
MAX_COUNT = 100_000


@dataclass(frozen=True)
class NamespaceLimits:
    """What one namespace may claim; None: unbounded. ``source``: the policies that set it."""

    max_mail_domains: int | None = None
    max_mailboxes: int | None = None
    max_quota: int | None = None  # bytes
    max_storage: int | None = None  # bytes
    source: str = ""

    @property
    def bounded(self) -> bool:
        return any(
            v is not None
            for v in (self.max_mail_domains, self.max_mailboxes, self.max_quota, self.max_storage)
        )


UNBOUNDED = NamespaceLimits()


def _most_generous(values: Sequence[int | None]) -> int | None:
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def combine(named: Sequence[tuple[str, NamespaceLimits]]) -> NamespaceLimits:
    """The limits of a namespace from those of the policies naming it, (policy ref, limits):
    each the most generous (unset in one policy: unbounded)."""
    if not named:
        return UNBOUNDED
    all_limits = [limits for _, limits in named]
    return NamespaceLimits(
        _most_generous([x.max_mail_domains for x in all_limits]),
        _most_generous([x.max_mailboxes for x in all_limits]),
        _most_generous([x.max_quota for x in all_limits]),
        _most_generous([x.max_storage for x in all_limits]),
        " or ".join(sorted(ref for ref, _ in named)),
    )


def parse_limits(r: Reader, value: object, path: str = "spec.limits") -> NamespaceLimits:
    """``spec.limits`` of a MailDomainPolicy (problems go to ``r``)."""
    if value is None:
        return UNBOUNDED
    section = r.mapping(value, path, FIELDS)
    count = integer(0, MAX_COUNT)
    return NamespaceLimits(
        max_mail_domains=r.field(section, "maxMailDomains", path, count, None),
        max_mailboxes=r.field(section, "maxMailboxes", path, count, None),
        max_quota=r.field(section, "maxQuota", path, validate.size_bytes, None),
        max_storage=r.field(section, "maxStorage", path, validate.size_bytes, None),
    )


def storage_of(dom: MailDomain) -> int:
    """The bytes a MailDomain's StatefulSets request: its mailbox and queue volumes."""
    return sum(_size(v.size) for v in (dom.storage.mailboxes, dom.storage.queue))


def _size(text: str) -> int:
    try:
        return validate.size_bytes(text)
    except FieldError:  # pragma: no cover - the parser accepted it
        return 0


def show(size: int) -> str:
    """A byte count as the quantity a user wrote, when it is a whole number of Ki..Ti."""
    for unit, factor in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def mailbox_order(box: Mailbox) -> tuple[str, str, str, str]:
    return (box.created, box.uid, box.namespace, box.name)


@dataclass(frozen=True)
class Admission:
    """What the limits refuse: a problem per refused document, and the refused refs."""

    problems: tuple[Problem, ...] = ()

    @property
    def refused(self) -> frozenset[str]:
        return frozenset(p.document for p in self.problems)


def _refusal(ref: str, path: str, limits: NamespaceLimits, what: str) -> Problem:
    return Problem(ref, path, f"{what} ({limits.source})", kind=LIMIT_EXCEEDED)


def admit_domains(
    limits: NamespaceLimits, domains: Iterable[MailDomain], claims: Mapping[str, int] | None = None
) -> Admission:
    """Which of one namespace's candidate MailDomains its limits refuse (the oldest first).

    ``claims``: the bytes the namespace's mail volume claims request, by MailDomain name."""
    problems: list[Problem] = []
    ordered = sorted(domains, key=lambda d: d.claim_order)
    claims = claims or {}
    names = {dom.name for dom in ordered}
    retained = sum(size for name, size in claims.items() if name not in names)
    count, storage = 0, retained
    for dom in ordered:
        need = max(storage_of(dom), claims.get(dom.name, 0))
        if limits.max_mail_domains is not None and count + 1 > limits.max_mail_domains:
            what = (
                f"namespace {dom.namespace} may have {limits.max_mail_domains} MailDomain(s), "
                f"and {count} older one(s) use them: maxMailDomains exceeded"
            )
            problems.append(_refusal(dom.ref, "metadata.namespace", limits, what))
        elif limits.max_storage is not None and storage + need > limits.max_storage:
            kept = (
                f" ({show(retained)} by volume claims no MailDomain here holds: deleted ones' "
                "kept volumes, to delete or reuse under their name)"
                if retained
                else ""
            )
            what = (
                f"its volumes request {show(need)}, {show(storage)} of namespace "
                f"{dom.namespace}'s {show(limits.max_storage)} are used by older MailDomains"
                f"{kept}: maxStorage exceeded"
            )
            problems.append(_refusal(dom.ref, "spec.storage", limits, what))
        else:
            count, storage = count + 1, storage + need
    return Admission(tuple(problems))


def admit_mailboxes(limits: NamespaceLimits, mailboxes: Iterable[Mailbox]) -> Admission:
    """Which of one namespace's counted Mailboxes its limits refuse (the oldest first)."""
    problems: list[Problem] = []
    count = quota = 0
    for box in sorted(mailboxes, key=mailbox_order):
        ns = box.namespace
        if limits.max_mailboxes is not None and count + 1 > limits.max_mailboxes:
            what = (
                f"namespace {ns} may have {limits.max_mailboxes} Mailbox(es), and {count} older "
                "one(s) use them: maxMailboxes exceeded"
            )
            problems.append(_refusal(box.ref, "metadata.namespace", limits, what))
        elif limits.max_quota is not None and box.quota is None:
            what = (
                f"the Mailboxes of namespace {ns} share a total quota of "
                f"{show(limits.max_quota)}: this one needs a spec.quota (maxQuota)"
            )
            problems.append(_refusal(box.ref, "spec.quota", limits, what))
        elif limits.max_quota is not None and quota + (box.quota or 0) > limits.max_quota:
            what = (
                f"its quota {show(box.quota or 0)} does not fit: {show(quota)} of namespace "
                f"{ns}'s {show(limits.max_quota)} are used by older Mailboxes: maxQuota exceeded"
            )
            problems.append(_refusal(box.ref, "spec.quota", limits, what))
        else:
            count, quota = count + 1, quota + (box.quota or 0)
    return Admission(tuple(problems))
