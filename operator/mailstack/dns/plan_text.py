"""A plan as text for people: ``mailstack dns plan`` prints it, ``dns apply`` logs it."""

from __future__ import annotations

from mailstack.dns.plan import Plan
from mailstack.dns.records import txt_zone_text


def _show(rtype: str, value: str) -> str:
    return txt_zone_text(value) if rtype == "TXT" else value


def format_plan(plan: Plan, verbose: bool = True) -> str:
    """The plan for people: one line per value created (+), removed (-), and every conflict."""
    lines = [f"; zone {plan.zone}, owner {plan.owner}"]
    for change in plan.changes:
        if change.marker and not verbose:
            continue
        ttl = (change.after or change.before).ttl  # type: ignore[union-attr]
        head = f"{change.action:<6} {change.name}. {ttl} {change.type}"
        lines.append(f"; {change.reason}" if change.reason else ";")
        for value in change.removed:
            lines.append(f"- {head} {_show(change.type, value)}")
        for value in change.added:
            lines.append(f"+ {head} {_show(change.type, value)}")
        if not change.added and not change.removed:
            lines.append(f"~ {head} (TTL {change.before.ttl if change.before else '?'} -> {ttl})")
    for status in plan.statuses:
        if status.state in ("Conflict", "Manual"):
            lines.append(
                f"! {status.state.lower():<8} {status.name}. {status.type}: {status.message}"
            )
    published = sum(1 for s in plan.statuses if s.state == "Published")
    lines.append(
        f"; {len(plan.record_changes('create'))} to create, "
        f"{len(plan.record_changes('update'))} to update, "
        f"{len(plan.record_changes('delete'))} to delete, {published} up to date, "
        f"{len(plan.conflicts)} in conflict"
    )
    return "\n".join(lines) + "\n"
