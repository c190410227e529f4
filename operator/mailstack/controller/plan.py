"""One MailDomain's reconcile, decided purely: raw documents in, objects and statuses out.

``render_domain`` is the same sequence as ``mailstack render`` (parse → assemble → material →
render) applied to what the cluster holds, with one difference in policy: problems are sorted by
the document they belong to instead of stopping everything. A problem with the MailDomain itself
stops its render (the objects of the last valid spec stay in place); a problem with one Mailbox
only marks that Mailbox. ``domain_status`` and ``mailbox_statuses`` turn the outcome into the
status documents of design §3. Nothing here performs I/O; ``reconcile`` does that around it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailstack.api.assemble import MailService, assemble
from mailstack.api.errors import Problem, ValidationError
from mailstack.api.models import Mailbox, MailDomain, Secret
from mailstack.api.parse import parse_mailbox, parse_maildomain, parse_secret
from mailstack.controller import dnshook
from mailstack.controller.children import ChildKey, Owner, child_key, owned
from mailstack.controller.kinds import CERTIFICATE, DNS_ENDPOINT, SECRET
from mailstack.controller.status import (
    DOMAIN_CONDITIONS,
    MAILBOX_CONDITIONS,
    Condition,
    condition_list,
    problems_message,
    summarise,
    unknown,
)
from mailstack.kubedoc import Obj
from mailstack.material import Material
from mailstack.material.errors import MaterialError
from mailstack.material.resolve import resolve_material
from mailstack.render import layout
from mailstack.render.objects import RenderOptions
from mailstack.render.stack import render_stack
from mailstack.render.templating import RenderError
from mailstack.render.workloads import enabled_public_ports

SOURCE = "cluster"
RandomBytes = Callable[[int], bytes]


def _meta(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = doc.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _spec(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = doc.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def doc_name(doc: Mapping[str, Any]) -> str:
    return str(_meta(doc).get("name", ""))


def doc_generation(doc: Mapping[str, Any]) -> int:
    value = _meta(doc).get("generation", 0)
    return value if isinstance(value, int) else 0


def address_domain(mailbox: Mapping[str, Any]) -> str | None:
    """The domain part of a raw Mailbox's address (lowercased), or None when there is none."""
    address = _spec(mailbox).get("address")
    if not isinstance(address, str) or "@" not in address:
        return None
    return address.rpartition("@")[2].strip().lower() or None


def served_domain(maildomain: Mapping[str, Any]) -> str | None:
    value = _spec(maildomain).get("domain")
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def referenced_secret_names(
    maildomain: Mapping[str, Any], mailboxes: Sequence[Mapping[str, Any]]
) -> set[str]:
    """Names of the user Secrets the raw documents refer to (best effort, before parsing)."""
    names: set[str] = set()
    relay = _spec(maildomain).get("relay")
    if isinstance(relay, Mapping):
        cred = relay.get("credentialsSecretRef")
        if isinstance(cred, Mapping) and isinstance(cred.get("name"), str):
            names.add(cred["name"])
    dns = _spec(maildomain).get("dns")
    provider = dns.get("provider") if isinstance(dns, Mapping) else None
    if isinstance(provider, Mapping):
        for settings in provider.values():
            if not isinstance(settings, Mapping):
                continue
            for field_name, ref in settings.items():
                if (
                    str(field_name).endswith("SecretRef")
                    and isinstance(ref, Mapping)
                    and isinstance(ref.get("name"), str)
                ):
                    names.add(ref["name"])  # the DNS provider's credentials
    for box in mailboxes:
        ref = _spec(box).get("passwordSecretRef")
        if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
            names.add(ref["name"])
    return names


def prune_candidates(name: str) -> list[ChildKey]:
    """Children that one setting writes and another does not (TLS issuer, DNS provider).

    The CA Secret only exists for the internal issuer, the Certificate only for cert-manager:
    a stale Certificate would keep cert-manager rewriting the TLS Secret, and a stale CA Secret
    keeps a private key around that nothing uses. The DNSEndpoint only exists for the
    externalDNS provider: a stale one would keep external-dns publishing records that another
    provider now owns.
    """
    names = layout.object_names(name)
    return [
        (SECRET.api_version, SECRET.kind, names["ca"]),
        (CERTIFICATE.api_version, CERTIFICATE.kind, names["tls"]),
        (DNS_ENDPOINT.api_version, DNS_ENDPOINT.kind, names["dns_endpoint"]),
    ]


def statefulset_names(name: str) -> list[str]:
    names = layout.object_names(name)
    return [names["mta"], names["mda"]]


def secrets_from_live(live: Mapping[ChildKey, Obj | None]) -> dict[str, Secret]:
    """The operator-owned Secrets among the live children, as material input."""
    result = {}
    for (api_version, kind, name), obj in live.items():
        if (api_version, kind) == (SECRET.api_version, SECRET.kind) and obj is not None:
            try:
                result[name] = parse_secret(obj, SOURCE)
            except ValidationError:
                continue  # unreadable: the material in it is generated again
    return result


@dataclass(frozen=True)
class DomainInputs:
    """Everything one reconcile of one MailDomain reads."""

    domain: Mapping[str, Any]
    # Other MailDomains of the namespace that claim the same spec.domain (the first one wins).
    siblings: Sequence[Mapping[str, Any]]
    # Raw Mailboxes whose address is on the MailDomain's spec.domain.
    mailboxes: Sequence[Mapping[str, Any]]
    # Secrets by name: the operator-owned material Secrets and the referenced user Secrets.
    secrets: Mapping[str, Secret]
    now: datetime
    random_bytes: RandomBytes = os.urandom
    options: RenderOptions = field(default_factory=RenderOptions)


@dataclass
class Rendered:
    """The outcome of ``render_domain``."""

    model: MailDomain | None = None
    service: MailService | None = None
    material: Material | None = None
    objects: list[Obj] = field(default_factory=list)  # owned and annotated, in apply order
    domain_problems: list[Problem] = field(default_factory=list)
    mailbox_problems: dict[str, list[Problem]] = field(default_factory=lambda: defaultdict(list))
    # Reason for Valid=False: InvalidSpec, DomainConflict (served twice), InvalidSecret.
    invalid_reason: str = "InvalidSpec"
    render_error: str | None = None
    # Another MailDomain serves the same domain: this one must not touch the Mailboxes.
    serves_mailboxes: bool = True

    @property
    def valid(self) -> bool:
        return not self.domain_problems

    @property
    def ok(self) -> bool:
        return self.valid and self.render_error is None and self.material is not None

    @property
    def externally_published(self) -> bool:
        """Whether the records go to external-dns in a DNSEndpoint (provider externalDNS)."""
        return (
            self.ok
            and self.service is not None
            and self.service.domain.dns.provider.kind == "externalDNS"
        )


def _split(problems: list[Problem], rendered: Rendered, domain_ref: str) -> None:
    for problem in problems:
        kind, _, rest = problem.document.partition("/")
        if problem.document == domain_ref:
            rendered.domain_problems.append(problem)
        elif kind == "Mailbox":
            rendered.mailbox_problems[rest.partition("/")[2]].append(problem)
        # Problems of sibling MailDomains are reported by their own reconcile.


def render_domain(inputs: DomainInputs) -> Rendered:
    """Parse, assemble, resolve material and render one MailDomain with its Mailboxes."""
    out = Rendered()
    try:
        model = parse_maildomain(inputs.domain, SOURCE)
    except ValidationError as err:
        out.domain_problems = err.problems
        return out
    out.model = model

    siblings: list[MailDomain] = []
    for doc in inputs.siblings:
        if doc_name(doc) == model.name:
            continue
        try:
            siblings.append(parse_maildomain(doc, SOURCE))
        except ValidationError:
            continue  # an invalid sibling serves nothing
    boxes: list[Mailbox] = []
    for doc in inputs.mailboxes:
        try:
            boxes.append(parse_mailbox(doc, SOURCE, model.namespace))
        except ValidationError as err:
            out.mailbox_problems[doc_name(doc)].extend(err.problems)

    services, problems = assemble([model, *siblings], boxes)
    _split(problems, out, model.ref)
    service = next((s for s in services if s.domain.ref == model.ref), None)
    if service is None:
        out.serves_mailboxes = False
        out.invalid_reason = "DomainConflict"
        if not out.domain_problems:  # assemble always says why; this is a safety net
            out.domain_problems.append(Problem(model.ref, "spec.domain", "served twice"))
        return out
    if out.domain_problems:
        return out
    out.service = service

    material, problems = resolve_material(service, inputs.secrets, inputs.now, inputs.random_bytes)
    _split(problems, out, model.ref)
    if out.domain_problems:
        out.invalid_reason = "InvalidSecret"
        return out
    out.material = material

    owner = Owner(model.name, model.namespace, str(_meta(inputs.domain).get("uid", "")))
    try:
        objects = render_stack(service, material, inputs.options)
    except (RenderError, MaterialError) as err:
        out.render_error = str(err)
        return out
    out.objects = [owned(obj, owner) for obj in objects]
    return out


# --- status -------------------------------------------------------------------------------


def valid_condition(rendered: Rendered) -> Condition:
    if rendered.domain_problems:
        return Condition(
            "Valid", "False", rendered.invalid_reason, problems_message(rendered.domain_problems)
        )
    return Condition("Valid", "True", "Valid", "the spec is valid")


def rendered_condition(rendered: Rendered, applied: int, apply_error: str | None) -> Condition:
    if not rendered.valid:
        return Condition(
            "Rendered",
            "False",
            "InvalidSpec",
            "not rendered: the spec is not valid; the objects of the last valid spec stay",
        )
    if rendered.render_error is not None:
        return Condition("Rendered", "False", "RenderFailed", rendered.render_error)
    if apply_error is not None:
        return Condition("Rendered", "False", "ApplyFailed", apply_error)
    # Nothing about this pass in the message (how many objects it wrote): the status would
    # change with every pass that writes, and be written again by the next one that does not.
    del applied
    return Condition("Rendered", "True", "Applied", f"{len(rendered.objects)} objects applied")


def workloads_condition(statefulsets: Mapping[str, Mapping[str, Any] | None]) -> Condition:
    """WorkloadsReady from the StatefulSets' status (``readyReplicas`` of the current revision)."""
    if not statefulsets:
        return unknown("WorkloadsReady", "NotRendered", "no workloads rendered yet")
    pending, rolling, not_ready, ready = [], [], [], []
    for name, sts in sorted(statefulsets.items()):
        if sts is None:
            pending.append(f"{name}: not found")
            continue
        spec = sts.get("spec") or {}
        status = sts.get("status") or {}
        want = int(spec.get("replicas", 1))
        generation = int((sts.get("metadata") or {}).get("generation", 0))
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
    if rolling or not_ready:
        reason = "RollingOut" if rolling else "NotReady"
        return Condition("WorkloadsReady", "False", reason, "; ".join(rolling + not_ready + ready))
    if pending:
        return unknown("WorkloadsReady", "Pending", "; ".join(pending + ready))
    return Condition("WorkloadsReady", "True", "Ready", "; ".join(ready))


def certificate_condition(rendered: Rendered, certificate: Mapping[str, Any] | None) -> Condition:
    model, material = rendered.model, rendered.material
    if model is None or material is None:
        return unknown("CertificateReady", "NotRendered", "no certificate rendered yet")
    issuer = model.tls.issuer
    if issuer == "certManager":
        if certificate is None:
            return unknown("CertificateReady", "Pending", "the cert-manager Certificate is new")
        for cond in (certificate.get("status") or {}).get("conditions") or []:
            if isinstance(cond, Mapping) and cond.get("type") == "Ready":
                truth = cond.get("status")
                if truth in ("True", "False", "Unknown"):
                    return Condition(
                        "CertificateReady",
                        truth,
                        f"CertManager{cond.get('reason') or truth}",
                        str(cond.get("message", "")),
                    )
        return unknown("CertificateReady", "Pending", "cert-manager has not reported yet")
    tls = material.tls
    if tls is None:  # resolve_material always issues one for internal and acme
        return Condition("CertificateReady", "False", "Missing", "no certificate material")
    until = tls.not_after.strftime("%Y-%m-%d")
    if issuer == "acme":
        return Condition(
            "CertificateReady",
            "False",
            "ACMENotAvailable",
            "ACME issuance is not available in this version; serving a certificate of the "
            f"internal CA (valid until {until}) meanwhile",
        )
    return Condition(
        "CertificateReady",
        "True",
        "Issued",
        f"issued by the internal CA for {', '.join(tls.names)}, valid until {until}",
    )


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
    applied: int = 0,
    apply_error: str | None = None,
    statefulsets: Mapping[str, Mapping[str, Any] | None] | None = None,
    certificate: Mapping[str, Any] | None = None,
    valid_mailboxes: int = 0,
    dns: dnshook.DnsOutcome | None = None,
) -> Obj:
    """The MailDomain's status document after a reconcile.

    ``dns``: what the provider said (``dnshook.DnsPublisher``); without it, the records as the
    spec wants them, not published.
    """
    previous_map: Mapping[str, Any] = previous if isinstance(previous, Mapping) else {}
    if dns is None and rendered.model is not None and rendered.material is not None:
        dns = dnshook.dns_outcome(rendered.model, rendered.material.dkim)
    conditions = [
        valid_condition(rendered),
        rendered_condition(rendered, applied, apply_error),
        workloads_condition(statefulsets or {})
        if rendered.ok
        else unknown("WorkloadsReady", "NotRendered", "waiting for a successful render"),
        certificate_condition(rendered, certificate),
        dns.condition
        if dns is not None
        else unknown("DNSReady", "NotRendered", "waiting for a successful render"),
    ]
    ready = summarise(conditions, "the mail service")
    status: Obj = {
        "observedGeneration": generation,
        "conditions": condition_list(
            [ready, *conditions], DOMAIN_CONDITIONS, previous_map.get("conditions"), generation, now
        ),
        "mailboxes": valid_mailboxes,
    }
    if rendered.ok and rendered.model is not None and rendered.material is not None:
        dkim = rendered.material.dkim
        status["dkim"] = {"selector": dkim.selector, "record": dkim.dns_value()}
        status["dns"] = {"records": dns.records if dns is not None else []}
        if rendered.service is not None:
            status["endpoints"] = endpoints(rendered.model, rendered.service)
    else:
        # Keep reporting what is still in place from the last valid spec.
        for key in ("dkim", "dns", "endpoints"):
            if key in previous_map:
                status[key] = previous_map[key]
    return status


@dataclass(frozen=True)
class MailboxVerdict:
    name: str
    valid: Condition
    ready: Condition


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
        problems = rendered.mailbox_problems.get(name, [])
        if problems:
            reason = "InvalidSpec"
            if all(p.path.startswith("spec.passwordSecretRef") for p in problems):
                reason = "PasswordUnavailable"
            elif any("already used by" in p.message for p in problems):
                reason = "AddressConflict"
            valid = Condition("Valid", "False", reason, problems_message(problems))
        else:
            valid = Condition("Valid", "True", "Valid", "the spec is valid")
        if not rendered.valid:
            ready = Condition(
                "Ready", "False", "MailDomainInvalid", f"MailDomain {domain_name} is not valid"
            )
        elif rendered.render_error is not None or apply_error is not None:
            ready = Condition(
                "Ready",
                "False",
                "MailDomainNotRendered",
                f"MailDomain {domain_name} could not be rendered",
            )
        elif valid.status == "False" and valid.reason != "PasswordUnavailable":
            ready = Condition("Ready", "False", valid.reason, f"Valid: {valid.message}")
        elif valid.status == "False":
            ready = Condition(
                "Ready", "False", valid.reason, f"mail is accepted but no login: {valid.message}"
            )
        else:
            ready = Condition(
                "Ready", "True", "Ready", f"the account is served by MailDomain {domain_name}"
            )
        verdicts.append(MailboxVerdict(name, valid, ready))
    return verdicts


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


def orphan_verdict(mailbox: Mapping[str, Any]) -> tuple[Condition, Condition]:
    """Valid and Ready of a Mailbox that no MailDomain of its namespace serves."""
    namespace = str(_meta(mailbox).get("namespace", ""))
    domain = address_domain(mailbox)
    if domain is None:
        try:
            parse_mailbox(mailbox, SOURCE, namespace or "default")
        except ValidationError as err:
            message = problems_message(err.problems)
        else:  # pragma: no cover - an address without '@' never parses
            message = "spec.address: not an address"
        valid = Condition("Valid", "False", "InvalidSpec", message)
    else:
        valid = Condition(
            "Valid",
            "False",
            "NoMailDomain",
            f"spec.address: no MailDomain in namespace {namespace} serves the domain {domain}",
        )
    ready = Condition("Ready", "False", valid.reason, f"Valid: {valid.message}")
    return valid, ready


def child_keys(objects: Sequence[Obj]) -> list[ChildKey]:
    return [child_key(obj) for obj in objects]
