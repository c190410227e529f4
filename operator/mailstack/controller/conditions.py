"""The condition policies: each condition of a MailDomain or Mailbox, decided from one pass.

Owns ``Condition`` and one builder per condition type, in cert-manager's policy style: Valid and
Rendered from the render, WorkloadsReady from the StatefulSets (and the pods the API server
refused, found by ``rejections``), CertificateReady from the TLS
material or cert-manager's Certificate, DNSReady from what the DNS provider (or external-dns)
said, and a Mailbox's Valid and Ready (its verdict). The reasons come from ``reasons``; how the
conditions become a status document (order, ``lastTransitionTime``, the Ready summary) is
``status``'s business. Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mailstack.api.errors import Problem, ValidationError
from mailstack.api.limits import LIMIT_EXCEEDED
from mailstack.api.models import MailDomain
from mailstack.api.parse import parse_mailbox
from mailstack.controller import reasons
from mailstack.controller.documents import address_domain, doc_name
from mailstack.controller.plan import SOURCE, Rendered
from mailstack.dns.errors import DnsError
from mailstack.dns.outbound import AddressCheck
from mailstack.kubedoc import ObjectRef, meta_of, spec_of

Truth = Literal["True", "False", "Unknown"]

# The condition types.
READY = "Ready"
VALID = "Valid"
RENDERED = "Rendered"
WORKLOADS_READY = "WorkloadsReady"
CERTIFICATE_READY = "CertificateReady"
DNS_READY = "DNSReady"
OUTBOUND_IDENTITY = "OutboundIdentityVerified"  # informative: not part of Ready

MAX_MESSAGE = 4000  # well under the CRD's 32768; a status is read by people


@dataclass(frozen=True)
class Condition:
    type: str
    status: Truth
    reason: str
    message: str = ""


def unknown(type_: str, reason: str, message: str = "") -> Condition:
    return Condition(type_, "Unknown", reason, message)


def waiting_for_render(type_: str) -> Condition:
    """A condition that only a successful render can decide (WorkloadsReady, DNSReady)."""
    return unknown(type_, reasons.NOT_RENDERED, "waiting for a successful render")


def problems_message(problems: Iterable[Problem]) -> str:
    """Problems of one document as one line each, without repeating the document's name."""
    lines = []
    for problem in problems:
        lines.append(f"{problem.path}: {problem.message}" if problem.path else problem.message)
    text = "; ".join(dict.fromkeys(lines))
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


# --- MailDomain ---------------------------------------------------------------------------


def valid_condition(rendered: Rendered) -> Condition:
    if rendered.domain_problems:
        return Condition(
            VALID, "False", rendered.invalid_reason, problems_message(rendered.domain_problems)
        )
    return Condition(VALID, "True", reasons.VALID, "the spec is valid")


def rendered_condition(rendered: Rendered, apply_error: str | None) -> Condition:
    if not rendered.valid and rendered.invalid_reason == reasons.NAME_TAKEN:
        return Condition(
            RENDERED,
            "False",
            reasons.NAME_TAKEN,
            "not applied: an object of a child's name is not this MailDomain's (see Valid)",
        )
    if not rendered.valid:
        why = (
            "the MailDomain may not serve its domain (see Valid); what made it serve is removed"
            if rendered.withdrawn
            else "the spec is not valid; the objects of the last valid spec stay"
        )
        return Condition(RENDERED, "False", reasons.INVALID_SPEC, f"not rendered: {why}")
    if rendered.render_error is not None:
        return Condition(RENDERED, "False", reasons.RENDER_FAILED, rendered.render_error)
    if apply_error is not None:
        return Condition(RENDERED, "False", reasons.APPLY_FAILED, apply_error)
    # Nothing about this pass in the message (how many objects it wrote): the status would
    # change with every pass that writes, and be written again by the next one that does not.
    return Condition(RENDERED, "True", reasons.APPLIED, f"{len(rendered.objects)} objects applied")


def workloads_condition(
    statefulsets: Mapping[str, Mapping[str, Any] | None],
    rejections: Mapping[str, str] | None = None,
) -> Condition:
    """WorkloadsReady from the StatefulSets' status (``readyReplicas`` of the current revision)
    and, for those whose pods the API server refuses, its message (``rejections``, by name)."""
    if not statefulsets:
        return unknown(WORKLOADS_READY, reasons.NOT_RENDERED, "no workloads rendered yet")
    rejected, pending, rolling, not_ready, ready = [], [], [], [], []
    for name, sts in sorted(statefulsets.items()):
        if sts is None:
            pending.append(f"{name}: not found")
            continue
        if rejections and name in rejections:
            rejected.append(f"{name}: {rejections[name]}")
            continue
        spec = spec_of(sts)
        status = sts.get("status") or {}
        want = int(spec.get("replicas", 1))
        generation = int(meta_of(sts).get("generation", 0))
        observed = status.get("observedGeneration")
        have = int(status.get("readyReplicas") or 0)
        updated = int(status.get("updatedReplicas", want) or 0)
        if observed is None:
            pending.append(f"{name}: waiting for the StatefulSet controller")
        elif int(observed) < generation or updated < want:
            rolling.append(f"{name}: rolling out ({have}/{want} ready)")
        elif have < want:
            not_ready.append(f"{name}: {have}/{want} ready")
        else:
            ready.append(f"{name}: {have}/{want} ready")
    if rejected:  # a person must act (the namespace's policy, a quota): say it first
        message = "; ".join(rejected + rolling + not_ready + pending + ready)
        return Condition(WORKLOADS_READY, "False", reasons.POD_REJECTED, message)
    if rolling or not_ready:
        reason = reasons.ROLLING_OUT if rolling else reasons.NOT_READY
        return Condition(WORKLOADS_READY, "False", reason, "; ".join(rolling + not_ready + ready))
    if pending:
        return unknown(WORKLOADS_READY, reasons.PENDING, "; ".join(pending + ready))
    return Condition(WORKLOADS_READY, "True", reasons.READY, "; ".join(ready))


def certificate_condition(rendered: Rendered, certificate: Mapping[str, Any] | None) -> Condition:
    model, material = rendered.model, rendered.material
    if model is None or material is None:
        return unknown(CERTIFICATE_READY, reasons.NOT_RENDERED, "no certificate rendered yet")
    issuer = model.tls.issuer
    if issuer == "certManager":
        if certificate is None:
            return unknown(
                CERTIFICATE_READY, reasons.PENDING, "the cert-manager Certificate is new"
            )
        for cond in (certificate.get("status") or {}).get("conditions") or []:
            if isinstance(cond, Mapping) and cond.get("type") == "Ready":
                truth = cond.get("status")
                if truth in ("True", "False", "Unknown"):
                    return Condition(
                        CERTIFICATE_READY,
                        truth,
                        f"{reasons.CERT_MANAGER_PREFIX}{cond.get('reason') or truth}",
                        str(cond.get("message", "")),
                    )
        return unknown(CERTIFICATE_READY, reasons.PENDING, "cert-manager has not reported yet")
    tls = material.tls
    if tls is None:  # resolve_material always issues one for internal and acme
        return Condition(
            CERTIFICATE_READY, "False", reasons.CERTIFICATE_MISSING, "no certificate material"
        )
    until = tls.not_after.strftime("%Y-%m-%d")
    if issuer == "acme":
        return Condition(
            CERTIFICATE_READY,
            "False",
            reasons.ACME_NOT_AVAILABLE,
            "ACME issuance is not available in this version; serving a certificate of the "
            f"internal CA (valid until {until}) meanwhile",
        )
    return Condition(
        CERTIFICATE_READY,
        "True",
        reasons.ISSUED,
        f"issued by the internal CA for {', '.join(tls.names)}, valid until {until}",
    )


# --- MailDomain: DNSReady -------------------------------------------------------------------


def dns_not_configured(records: int) -> Condition:
    """Provider manual: only the user can publish, so this never holds back Ready."""
    return unknown(
        DNS_READY,
        reasons.NOT_CONFIGURED,
        f"provider manual: publish the {records} records of status.dns.records "
        "(`mailstack dns plan` prints them as a zone file)",
    )


def dns_pending(provider: str) -> Condition:
    """Any other provider before its first publish (or DNSEndpoint) of this spec."""
    written = "DNSEndpoint is written" if provider == "externalDNS" else "records are published"
    return unknown(
        DNS_READY,
        reasons.PENDING,
        f"provider {provider}: the {written} once the children are applied",
    )


def dns_published(provider: str, records: int) -> Condition:
    return Condition(
        DNS_READY, "True", reasons.PUBLISHED, f"provider {provider}: {records} record(s) published"
    )


def dns_conflict(provider: str, conflicts: Sequence[str]) -> Condition:
    return Condition(
        DNS_READY,
        "False",
        reasons.DNS_CONFLICT,
        f"provider {provider}: held by someone else, not overwritten: {', '.join(conflicts)}",
    )


def dns_failed(provider: str, err: DnsError) -> Condition:
    """The provider refused or failed: its error's reason and one-line message."""
    return Condition(DNS_READY, "False", err.reason, f"provider {provider}: {err}")


def endpoint_failure(endpoint: Mapping[str, Any], status: int, message: str) -> Condition:
    """DNSReady for a DNSEndpoint the API server refused (404: external-dns's CRD is missing)."""
    name = endpoint["metadata"]["name"]
    if status == 404:
        return Condition(
            DNS_READY,
            "False",
            reasons.EXTERNAL_DNS_NOT_INSTALLED,
            f"provider externalDNS: the API server does not serve {endpoint['apiVersion']} "
            f"DNSEndpoint: install external-dns's CRD (DNSEndpoint {name} is written once it is "
            "served), or choose another provider",
        )
    return Condition(
        DNS_READY,
        "False",
        reasons.DNS_ENDPOINT_REFUSED,
        f"provider externalDNS: writing DNSEndpoint {name} failed: {message}",
    )


def waiting_for_external_dns(endpoint: str) -> Condition:
    return unknown(
        DNS_READY,
        reasons.WAITING_FOR_EXTERNAL_DNS,
        f"provider externalDNS: DNSEndpoint {endpoint} is written; external-dns has not read "
        "it yet (it sets status.observedGeneration when it does: is it running with "
        "--source=crd and the mail record types in --managed-record-types?)",
    )


def accepted_by_external_dns(read: str, manual: Sequence[str]) -> Condition:
    """external-dns has read the DNSEndpoint (``read`` says which generation)."""
    message = f"provider externalDNS: {read}; it publishes on its own schedule"
    if manual:
        message += f"; publish yourself what it cannot: {', '.join(manual)}"
    return Condition(DNS_READY, "True", reasons.ACCEPTED_BY_EXTERNAL_DNS, message)


_FAILED = {
    "ptr": reasons.PTR_MISMATCH,
    "forward": reasons.FORWARD_MISMATCH,
    "spf": reasons.SPF_NOT_PASSING,
    "lookup": reasons.LOOKUP_FAILED,
}


def outbound_condition(
    model: MailDomain | None, checks: Sequence[AddressCheck] | None
) -> Condition:
    """OutboundIdentityVerified: every outbound address has FCrDNS to the HELO name and passes
    the domain's SPF; False names each failing address and its first failed check (the reason
    is the first address's)."""
    if model is None:
        return waiting_for_render(OUTBOUND_IDENTITY)
    if model.relay is not None:
        why = f"mail leaves through the relay {model.relay.host}: its addresses and names count"
        return unknown(OUTBOUND_IDENTITY, reasons.OUTBOUND_THROUGH_RELAY, why)
    addresses = model.outbound.ipv4 + model.outbound.ipv6
    if not addresses:
        why = "spec.outbound.addresses is empty: nothing to check; the SPF names the MX hosts"
        return unknown(OUTBOUND_IDENTITY, reasons.OUTBOUND_NOT_CONFIGURED, why)
    if checks is None:
        why = f"looking up the PTR and SPF of {', '.join(addresses)}"
        return unknown(OUTBOUND_IDENTITY, reasons.OUTBOUND_CHECKING, why)
    failed = [c for c in checks if not c.ok]
    if failed:
        message = "; ".join(c.problem for c in failed)
        return Condition(
            OUTBOUND_IDENTITY, "False", _FAILED[failed[0].failed], message[:MAX_MESSAGE]
        )
    return Condition(
        OUTBOUND_IDENTITY,
        "True",
        reasons.OUTBOUND_VERIFIED,
        f"{', '.join(addresses)}: the PTR names {model.helo_name}, whose addresses include "
        f"each, and the SPF of {model.domain} passes",
    )


# --- Mailbox ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MailboxVerdict:
    name: str
    valid: Condition
    ready: Condition


def _mailbox_valid(problems: Sequence[Problem]) -> Condition:
    if not problems:
        return Condition(VALID, "True", reasons.VALID, "the spec is valid")
    reason = reasons.INVALID_SPEC
    if any(p.kind == LIMIT_EXCEEDED for p in problems):
        reason = reasons.LIMIT_EXCEEDED
    elif all(p.path.startswith("spec.passwordSecretRef") for p in problems):
        reason = reasons.PASSWORD_UNAVAILABLE
    elif any("already used by" in p.message for p in problems):
        reason = reasons.ADDRESS_CONFLICT
    return Condition(VALID, "False", reason, problems_message(problems))


def _mailbox_ready(
    rendered: Rendered, valid: Condition, domain_name: str, apply_error: str | None
) -> Condition:
    if not rendered.valid:
        return Condition(
            READY, "False", reasons.MAIL_DOMAIN_INVALID, f"MailDomain {domain_name} is not valid"
        )
    if rendered.render_error is not None or apply_error is not None:
        return Condition(
            READY,
            "False",
            reasons.MAIL_DOMAIN_NOT_RENDERED,
            f"MailDomain {domain_name} could not be rendered",
        )
    if valid.status == "False" and valid.reason != reasons.PASSWORD_UNAVAILABLE:
        return Condition(READY, "False", valid.reason, f"Valid: {valid.message}")
    if valid.status == "False":
        return Condition(
            READY, "False", valid.reason, f"mail is accepted but no login: {valid.message}"
        )
    return Condition(
        READY, "True", reasons.READY, f"the account is served by MailDomain {domain_name}"
    )


def mailbox_verdicts(
    rendered: Rendered,
    mailboxes: Sequence[Mapping[str, Any]],
    domain_name: str,
    apply_error: str | None = None,
) -> list[MailboxVerdict]:
    """Valid and Ready of each Mailbox on the domain (empty when another MailDomain serves it)."""
    if not rendered.serves_mailboxes:
        return []
    verdicts = []
    for doc in mailboxes:
        name = doc_name(doc)
        valid = _mailbox_valid(rendered.mailbox_problems.get(name, []))
        ready = _mailbox_ready(rendered, valid, domain_name, apply_error)
        verdicts.append(MailboxVerdict(name, valid, ready))
    return verdicts


def orphan_verdict(mailbox: Mapping[str, Any]) -> tuple[Condition, Condition]:
    """Valid and Ready of a Mailbox that no MailDomain of its namespace serves."""
    namespace = ObjectRef.of(mailbox).namespace
    domain = address_domain(mailbox)
    if domain is None:
        try:
            parse_mailbox(mailbox, SOURCE, namespace or "default")
        except ValidationError as err:
            message = problems_message(err.problems)
        else:  # pragma: no cover - an address without '@' never parses
            message = "spec.address: not an address"
        valid = Condition(VALID, "False", reasons.INVALID_SPEC, message)
    else:
        valid = Condition(
            VALID,
            "False",
            reasons.NO_MAIL_DOMAIN,
            f"spec.address: no MailDomain in namespace {namespace} serves the domain {domain}",
        )
    ready = Condition(READY, "False", valid.reason, f"Valid: {valid.message}")
    return valid, ready
