"""Status documents of MailDomain and Mailbox, computed purely from their conditions.

A status always carries the full list of condition types, in a fixed order, so ``kubectl get``,
Argo CD and scripts never have to guess whether a missing condition means "fine" or "not yet".
``lastTransitionTime`` only moves when a condition's status changes; reasons and messages may be
refined without a transition. ``Ready`` summarises the others: False when any is False, Unknown
when any is Unknown (the manual DNS provider excepted: nobody but the user can publish those
records, so it never blocks readiness), True otherwise. Each condition itself is decided in
``conditions``; which transitions are worth an Event is decided here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailstack.api.assemble import MailService
from mailstack.api.models import ClusterNetworks, MailDomain
from mailstack.controller import reasons
from mailstack.controller.conditions import (
    CERTIFICATE_READY,
    DNS_READY,
    MAX_MESSAGE,
    OUTBOUND_IDENTITY,
    READY,
    RENDERED,
    VALID,
    WORKLOADS_READY,
    Condition,
    certificate_condition,
    outbound_condition,
    problems_message,
    rendered_condition,
    valid_condition,
    waiting_for_render,
    workloads_condition,
)
from mailstack.controller.dns_publisher import DnsOutcome, dns_outcome
from mailstack.controller.masked_clients import CLIENT_ADDRESSES_MASKED, masked_condition
from mailstack.controller.plan import Rendered
from mailstack.dns.outbound import AddressCheck
from mailstack.kubedoc import Obj
from mailstack.render.workloads import enabled_public_ports

DOMAIN_CONDITIONS = (
    READY,
    VALID,
    RENDERED,
    WORKLOADS_READY,
    CERTIFICATE_READY,
    DNS_READY,
    OUTBOUND_IDENTITY,
    CLIENT_ADDRESSES_MASKED,
)
MAILBOX_CONDITIONS = (READY, VALID)

# Reasons that say "nothing for the operator to check" rather than "not ready yet".
NON_BLOCKING = {(DNS_READY, reasons.NOT_CONFIGURED)}


def summarise(conditions: Sequence[Condition], what: str) -> Condition:
    """The Ready condition over the others."""
    for cond in conditions:
        if cond.status == "False":
            return Condition(READY, "False", cond.reason, f"{cond.type}: {cond.message}")
    for cond in conditions:
        if cond.status == "Unknown" and (cond.type, cond.reason) not in NON_BLOCKING:
            return Condition(READY, "Unknown", cond.reason, f"{cond.type}: {cond.message}")
    return Condition(READY, "True", reasons.READY, f"{what} is ready")


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
    if change.type == READY:
        if change.after == "True":
            return "Normal"
        return "Warning" if change.before == "True" else None
    if change.type == VALID and change.after == "False":
        return "Warning"
    if (
        change.type == RENDERED
        and change.after == "False"
        and change.reason != reasons.INVALID_SPEC
    ):
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


# --- the status documents -------------------------------------------------------------------


def endpoints(model: MailDomain, service: MailService) -> list[Obj]:
    return [
        {"name": port.name, "host": model.hostname, "port": port.number}
        for port in enabled_public_ports(service)
    ]


def domain_status(
    rendered: Rendered,
    *,
    generation: int,
    previous: Any,
    now: datetime,
    apply_error: str | None = None,
    statefulsets: Mapping[str, Mapping[str, Any] | None] | None = None,
    rejections: Mapping[str, str] | None = None,
    certificate: Mapping[str, Any] | None = None,
    valid_mailboxes: int = 0,
    dns: DnsOutcome | None = None,
    dns_published: bool = False,
    outbound: Sequence[AddressCheck] | None = None,
    masked: Condition | None = None,
    server_ready: bool = False,
) -> Obj:
    """The MailDomain's status document after a reconcile.

    ``rejections``: the admission message of each StatefulSet whose pods are refused.
    ``dns``: what the provider said (``dns_publisher.DnsPublisher``); without it, the records as
    the spec wants them, not published. ``dns_published``: whether the operator may have
    written records at the provider (``status.dns.published``, ``DnsPublisher.holds_records``).
    ``outbound``: the last verdict on the outbound addresses (``outbound_lookup``); it is
    reported, not summarised into Ready (mail is served whatever receivers think of it).
    ``masked``: ``ClientAddressesMasked`` (``tripwire``); it never counts for Ready.
    ``server_ready``: for a MailDomain served by a MailServer, whether the server is ready.
    """
    previous_map: Mapping[str, Any] = previous if isinstance(previous, Mapping) else {}
    if dns is None and rendered.model is not None and rendered.material is not None:
        dns = dns_outcome(rendered.model, rendered.material.dkim)
    conditions = [
        valid_condition(rendered),
        rendered_condition(rendered, apply_error),
        workloads_condition(statefulsets or {}, rejections)
        if rendered.ok
        else waiting_for_render(WORKLOADS_READY),
        certificate_condition(rendered, certificate),
        dns.condition if dns is not None else waiting_for_render(DNS_READY),
    ]
    if rendered.invalid_reason == reasons.SERVED_BY_SERVER:
        conditions = served_conditions(rendered, server_ready)
    ready = summarise(conditions, "the mail service")
    # Informative conditions, never summarised into Ready.
    identity = outbound_condition(rendered.model if rendered.ok else None, outbound)
    warnings = [identity, masked or masked_condition((), ClusterNetworks())]
    status: Obj = {
        "observedGeneration": generation,
        "conditions": condition_list(
            [ready, *conditions, *warnings],
            DOMAIN_CONDITIONS,
            previous_map.get("conditions"),
            generation,
            now,
        ),
        "mailboxes": valid_mailboxes,
    }
    if rendered.proof is not None:
        status["proof"] = rendered.proof.as_status()
    elif "proof" in previous_map:  # no longer required: kept, should it be required again
        status["proof"] = previous_map["proof"]
    if rendered.ok and rendered.model is not None and rendered.material is not None:
        dkim = rendered.material.dkim
        status["dkim"] = {"selector": dkim.selector, "record": dkim.dns_value()}
        status["dns"] = {
            "records": dns.records if dns is not None else [],
            "published": dns_published,
        }
        if rendered.service is not None:
            status["endpoints"] = endpoints(rendered.model, rendered.service)
        if outbound:
            status["outbound"] = [check.as_status() for check in outbound]
    else:
        # Keep reporting what is still in place from the last valid spec.
        for key in ("dkim", "dns", "endpoints"):
            if key in previous_map:
                status[key] = previous_map[key]
        if "dns" in status or dns_published:
            status["dns"] = {**status.get("dns", {}), "published": dns_published}
    return status


def served_conditions(rendered: Rendered, server_ready: bool) -> list[Condition]:
    """A MailDomain on a shared MailServer whose last pass served it: valid and rendered (with
    the server), its workloads the server's; its certificate and DNS records as the server
    serves them are not reported here yet (#18), so they, and Ready, stay Unknown."""
    served = reasons.SERVED_BY_SERVER
    message = problems_message(rendered.domain_problems)
    not_yet = "not reported for a domain on a shared server yet; see the MailServer"
    return [
        Condition(VALID, "True", served, message),
        Condition(RENDERED, "True", served, "rendered with its MailServer"),
        Condition(
            WORKLOADS_READY,
            "True" if server_ready else "False",
            served,
            "the MailServer is ready" if server_ready else "the MailServer is not ready",
        ),
        Condition(CERTIFICATE_READY, "Unknown", served, not_yet),
        Condition(DNS_READY, "Unknown", served, not_yet),
    ]


def mailbox_status(
    valid: Condition,
    ready: Condition,
    *,
    generation: int,
    previous: Any,
    now: datetime,
    domain_name: str | None,
) -> Obj:
    previous_map: Mapping[str, Any] = previous if isinstance(previous, Mapping) else {}
    status: Obj = {
        "observedGeneration": generation,
        "conditions": condition_list(
            [ready, valid], MAILBOX_CONDITIONS, previous_map.get("conditions"), generation, now
        ),
    }
    if domain_name is not None:
        status["mailDomain"] = domain_name
    return status
