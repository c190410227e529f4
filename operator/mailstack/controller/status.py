"""Conditions and status documents of MailDomain and Mailbox (design §3), computed purely.

A status always carries the full list of condition types, in a fixed order, so ``kubectl get``,
Argo CD and scripts never have to guess whether a missing condition means "fine" or "not yet".
``lastTransitionTime`` only moves when a condition's status changes; reasons and messages may be
refined without a transition. ``Ready`` summarises the others: False when any is False, Unknown
when any is Unknown (the manual DNS provider excepted: nobody but the user can publish those
records, so it never blocks readiness), True otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mailstack.api.errors import Problem
from mailstack.kubedoc import Obj

Truth = Literal["True", "False", "Unknown"]

DOMAIN_CONDITIONS = ("Ready", "Valid", "Rendered", "WorkloadsReady", "CertificateReady", "DNSReady")
MAILBOX_CONDITIONS = ("Ready", "Valid")

# Reasons that say "nothing for the operator to check" rather than "not ready yet".
NON_BLOCKING = {("DNSReady", "NotConfigured")}

MAX_MESSAGE = 4000  # well under the CRD's 32768; a status is read by people


@dataclass(frozen=True)
class Condition:
    type: str
    status: Truth
    reason: str
    message: str = ""


def unknown(type_: str, reason: str = "Reconciling", message: str = "") -> Condition:
    return Condition(type_, "Unknown", reason, message)


def problems_message(problems: Iterable[Problem]) -> str:
    """Problems of one document as one line each, without repeating the document's name."""
    lines = []
    for problem in problems:
        lines.append(f"{problem.path}: {problem.message}" if problem.path else problem.message)
    text = "; ".join(dict.fromkeys(lines))
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def summarise(conditions: Sequence[Condition], what: str) -> Condition:
    """The Ready condition over the others."""
    for cond in conditions:
        if cond.status == "False":
            return Condition("Ready", "False", cond.reason, f"{cond.type}: {cond.message}")
    for cond in conditions:
        if cond.status == "Unknown" and (cond.type, cond.reason) not in NON_BLOCKING:
            return Condition("Ready", "Unknown", cond.reason, f"{cond.type}: {cond.message}")
    return Condition("Ready", "True", "Ready", f"{what} is ready")


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition_list(
    conditions: Sequence[Condition],
    order: Sequence[str],
    previous: Any,
    generation: int,
    now: datetime,
) -> list[Obj]:
    """The conditions as status entries, keeping ``lastTransitionTime`` where nothing flipped."""
    before: dict[str, Mapping[str, Any]] = {}
    if isinstance(previous, list):
        for entry in previous:
            if isinstance(entry, Mapping) and isinstance(entry.get("type"), str):
                before[entry["type"]] = entry
    by_type = {c.type: c for c in conditions}
    missing = [t for t in order if t not in by_type]
    if missing:
        raise ValueError(f"conditions missing: {', '.join(missing)}")
    result = []
    for type_ in order:
        cond = by_type[type_]
        old = before.get(type_)
        if old is not None and old.get("status") == cond.status and old.get("lastTransitionTime"):
            since = str(old["lastTransitionTime"])
        else:
            since = timestamp(now)
        result.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message[:MAX_MESSAGE],
                "observedGeneration": generation,
                "lastTransitionTime": since,
            }
        )
    return result


def conditions_of(status: Any) -> dict[str, Mapping[str, Any]]:
    """Condition entries of a status document by type (empty when there is no status)."""
    found: dict[str, Mapping[str, Any]] = {}
    if isinstance(status, Mapping) and isinstance(status.get("conditions"), list):
        for entry in status["conditions"]:
            if isinstance(entry, Mapping) and isinstance(entry.get("type"), str):
                found[entry["type"]] = entry
    return found


@dataclass(frozen=True)
class Transition:
    """A condition that changed status: worth a Kubernetes Event."""

    type: str
    before: str | None
    after: str
    reason: str
    message: str

    @property
    def warning(self) -> bool:
        return self.after == "False"


def transitions(previous: Any, current: Mapping[str, Any]) -> list[Transition]:
    """The conditions whose status differs between two status documents."""
    old = conditions_of(previous)
    result = []
    for type_, entry in conditions_of(current).items():
        before = old.get(type_, {}).get("status")
        if before != entry.get("status"):
            result.append(
                Transition(
                    type_,
                    None if before is None else str(before),
                    str(entry.get("status")),
                    str(entry.get("reason", "")),
                    str(entry.get("message", "")),
                )
            )
    return result


def domain_event_type(change: Transition) -> str | None:
    """Which MailDomain transitions are worth an Event: "Normal", "Warning", or None.

    Ready becoming True, Ready leaving True, Valid becoming False and a failed render. Not the
    first Ready=False of a new object (its cause has its own event), nor Rendered=False for an
    invalid spec (Valid already says so).
    """
    if change.type == "Ready":
        if change.after == "True":
            return "Normal"
        return "Warning" if change.before == "True" else None
    if change.type == "Valid" and change.after == "False":
        return "Warning"
    if change.type == "Rendered" and change.after == "False" and change.reason != "InvalidSpec":
        return "Warning"
    return None


def status_patch(current: Any, desired: Mapping[str, Any]) -> Obj | None:
    """A JSON merge patch turning ``current`` into ``desired``, or None when they are equal."""
    current = current if isinstance(current, Mapping) else {}
    if dict(current) == dict(desired):
        return None
    patch: Obj = dict(desired)
    for key in current:
        if key not in desired:
            patch[key] = None  # a field the operator no longer reports
    return patch
