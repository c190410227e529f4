"""One MailDomain's render, decided purely: raw documents in, objects and problems out.

``render_domain`` is the same sequence as ``mailstack render`` (parse → assemble → material →
render) applied to what the cluster holds, with one difference in policy: problems are sorted by
the document they belong to instead of stopping everything. A problem with the MailDomain itself
stops its render (the objects of the last valid spec stay in place, unless the MailDomain may no
longer serve its domain: ``WITHDRAWN``, and ``unparsed`` for a spec that does not parse); a
problem with one Mailbox only marks that Mailbox. ``conditions`` turns the outcome into
conditions (``mailbox_verdicts`` for the Mailboxes) and ``status`` into the status documents
(``domain_status``, ``mailbox_status``; see ``docs/architecture.md``). Nothing here performs
I/O; ``reconcile`` does that around it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailstack.api.assemble import SERVER_PENDING, MailService, assemble
from mailstack.api.errors import Problem, ValidationError
from mailstack.api.limits import LIMIT_EXCEEDED
from mailstack.api.models import Mailbox, MailDomain, Secret
from mailstack.api.parse import parse_mailbox, parse_maildomain, parse_secret
from mailstack.api.parse.cluster_networks import exempt_cluster_problems
from mailstack.api.policy import SERVER_NOT_ALLOWED, Grants
from mailstack.api.proof import PROOF_PENDING, Proof, decide, from_status
from mailstack.controller import reasons
from mailstack.controller.children import Owner, owned
from mailstack.controller.documents import doc_name
from mailstack.controller.kinds import (
    CERTIFICATE,
    DNS_ENDPOINT,
    SECRET,
    SERVICE,
    STATEFUL_SET,
    ChildKey,
)
from mailstack.controller.unparsed import unparsed_refusal
from mailstack.kubedoc import Obj, ObjectRef
from mailstack.material import Material
from mailstack.material.errors import MaterialError
from mailstack.material.resolve import resolve_material
from mailstack.render import layout
from mailstack.render.objects import RenderOptions
from mailstack.render.stack import render_stack
from mailstack.render.templating import RenderError

SOURCE = "cluster"
RandomBytes = Callable[[int], bytes]


def prune_candidates(name: str) -> list[ChildKey]:
    """Children that one setting writes and another does not (TLS issuer, DNS provider,
    Service exposure).

    The CA Secret only exists for the internal issuer, the Certificate only for cert-manager:
    a stale Certificate would keep cert-manager rewriting the TLS Secret, and a stale CA Secret
    keeps a private key around that nothing uses. The DNSEndpoint only exists for the
    externalDNS provider: a stale one would keep external-dns publishing records that another
    provider now owns.
    """
    names = layout.object_names(name)
    return [
        SECRET.key(names["ca"]),
        CERTIFICATE.key(names["tls"]),
        DNS_ENDPOINT.key(names["dns_endpoint"]),
        SERVICE.key(names["internal_service"]),  # exposure ProxyProtocol only
    ]


# A MailDomain that may not serve its domain (any more): not granted, its Service or a host not
# allowed, over its namespace's limits, its proof of control not given, an older claim serves
# it, or it joins a shared server (not run yet, or not one its grants list). Unlike an invalid
# spec, whose last valid objects stay (``unparsed``), such a MailDomain must stop serving.
WITHDRAWN = frozenset(
    {
        reasons.DOMAIN_NOT_GRANTED,
        reasons.SERVICE_NOT_ALLOWED,
        reasons.ISSUER_NOT_ALLOWED,
        reasons.HOST_NOT_ALLOWED,
        reasons.DOMAIN_CONFLICT,
        reasons.LIMIT_EXCEEDED,
        reasons.PROOF_PENDING,
        reasons.SERVER_PENDING,
        reasons.SERVER_NOT_ALLOWED,
        reasons.SERVED_BY_SERVER,  # its stack is the server's: none of its own
    }
)


def serving_children(name: str) -> list[ChildKey]:
    """What makes a MailDomain serve: its pods, Services, certificate and DNSEndpoint (its
    Secrets and ConfigMaps stay, so a grant given back reuses the same keys)."""
    names = layout.object_names(name)
    return [
        STATEFUL_SET.key(names["mta"]),
        STATEFUL_SET.key(names["mda"]),
        SERVICE.key(names["service"]),
        SERVICE.key(names["mda_service"]),
        SERVICE.key(names["mta_service"]),
        SERVICE.key(names["internal_service"]),
        CERTIFICATE.key(names["tls"]),
        DNS_ENDPOINT.key(names["dns_endpoint"]),
    ]


def statefulset_names(name: str) -> list[str]:
    names = layout.object_names(name)
    return [names["mta"], names["mda"]]


def secrets_from_live(live: Mapping[ChildKey, Obj | None]) -> dict[str, Secret]:
    """The operator-owned Secrets among the live children, as material input."""
    result = {}
    for key, obj in live.items():
        if (key.api_version, key.kind) == (SECRET.api_version, SECRET.kind) and obj is not None:
            try:
                result[key.name] = parse_secret(obj, SOURCE)
            except ValidationError:
                continue  # unreadable: the material in it is generated again
    return result


@dataclass(frozen=True)
class NamespaceView:
    """Every MailDomain and Mailbox of one namespace (its limits count them all)."""

    domains: Sequence[Mapping[str, Any]] = ()
    mailboxes: Sequence[Mapping[str, Any]] = ()


NO_VIEW = NamespaceView()


@dataclass(frozen=True)
class DomainInputs:
    """Everything one reconcile of one MailDomain reads."""

    domain: Mapping[str, Any]
    # Other MailDomains, of any namespace, that contend with it: claim the same spec.domain or
    # spec.hostname, or a domain its host name is under (``Documents.contenders``).
    siblings: Sequence[Mapping[str, Any]]
    # Raw Mailboxes whose address is on the MailDomain's spec.domain.
    mailboxes: Sequence[Mapping[str, Any]]
    # Secrets by name: the operator-owned material Secrets and the referenced user Secrets.
    secrets: Mapping[str, Secret]
    now: datetime
    random_bytes: RandomBytes = os.urandom
    options: RenderOptions = field(default_factory=RenderOptions)
    # The platform's MailDomainPolicies: which namespace may serve which domain.
    grants: Grants = field(default_factory=Grants)
    # The namespace view, given when the namespace's limits are bounded: the other MailDomains
    # and every Mailbox of the namespace (``api.limits`` counts them all).
    namespace_domains: Sequence[Mapping[str, Any]] = ()
    namespace_mailboxes: Sequence[Mapping[str, Any]] = ()
    # What the namespace's mail volume claims request, by MailDomain name (``maxStorage``).
    namespace_claims: Mapping[str, int] = field(default_factory=dict)
    # The proof of control: the one the last status holds, and the TXT values found at the
    # challenge name in this pass (None: not looked up).
    proof: Proof | None = None
    proof_txt: Sequence[str] | None = None
    # The MailServer whose last pass served it ("": none; ``server_handlers``), and if ready.
    served_by: str = ""
    server_ready: bool = False


@dataclass
class Rendered:
    """The outcome of ``render_domain``."""

    model: MailDomain | None = None
    service: MailService | None = None
    material: Material | None = None
    objects: list[Obj] = field(default_factory=list)  # owned and annotated, in apply order
    domain_problems: list[Problem] = field(default_factory=list)
    mailbox_problems: dict[str, list[Problem]] = field(default_factory=lambda: defaultdict(list))
    # Reason for Valid=False: InvalidSpec, DomainNotGranted, ServiceNotAllowed, IssuerNotAllowed,
    # HostNotAllowed, ProofPending, LimitExceeded, DomainConflict (claimed twice), ServerPending,
    # ServerNotAllowed, InvalidSecret, NameTaken (``ownership.refuse_taken``, after the
    # children are read).
    invalid_reason: str = reasons.INVALID_SPEC
    render_error: str | None = None
    # Another MailDomain serves the same domain: this one must not touch the Mailboxes.
    serves_mailboxes: bool = True
    # The proof of control, when a policy requires one (for the status).
    proof: Proof | None = None

    @property
    def proof_pending(self) -> bool:
        return self.proof is not None and not self.proof.proven

    @property
    def valid(self) -> bool:
        return not self.domain_problems

    @property
    def ok(self) -> bool:
        return self.valid and self.render_error is None and self.material is not None

    @property
    def withdrawn(self) -> bool:
        """Whether the MailDomain must stop serving (``WITHDRAWN``)."""
        return not self.valid and self.invalid_reason in WITHDRAWN

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


def _parse_domains(docs: Sequence[Mapping[str, Any]], own: tuple[str, str]) -> list[MailDomain]:
    """The MailDomains but ``own`` (namespace, name), parsed once each; an invalid one serves
    nothing."""
    found: dict[tuple[str, str], MailDomain] = {}
    for doc in docs:
        key = ObjectRef.of(doc)[:2]
        if key == own or key in found:
            continue
        parsed = parsed_contender(doc)
        if parsed is not None:
            found[key] = parsed
    return list(found.values())


# Contenders parsed, by uid: the latest generation seen and its parse. The parse reads the spec
# and immutable metadata only, so N hostile claims on one name cost N parses, not one each per
# reconcile of every contender (N²). One entry per live MailDomain (an older generation is
# parsed again, not kept; ``forget_contender`` drops a deleted one): a copy per generation let
# one large MailDomain written again and again fill the operator's memory (the sixth #13
# check, H5). Bounded in count too: cleared when full.
_PARSED: dict[str, tuple[int, MailDomain | None]] = {}
_PARSED_MAX = 4096


def parsed_contender(doc: Mapping[str, Any]) -> MailDomain | None:
    """The raw MailDomain ``doc`` parsed, or None when invalid (it serves nothing)."""
    meta = doc.get("metadata") or {}
    uid, generation = meta.get("uid"), meta.get("generation")
    if not isinstance(uid, str) or not isinstance(generation, int):
        uid, generation = None, -1
    cached = _PARSED.get(uid) if uid is not None else None
    if cached is not None and cached[0] == generation:
        return cached[1]
    try:
        parsed: MailDomain | None = parse_maildomain(doc, SOURCE)
    except ValidationError:
        parsed = None
    if uid is not None and (cached is None or cached[0] < generation):
        if uid not in _PARSED and len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[uid] = (generation, parsed)
    return parsed


def forget_contender(doc: Mapping[str, Any]) -> None:
    """Drop the parse of the deleted MailDomain ``doc``."""
    uid = (doc.get("metadata") or {}).get("uid")
    if isinstance(uid, str):
        _PARSED.pop(uid, None)


def status_proofs(
    domains: Sequence[MailDomain], docs: Sequence[Mapping[str, Any]]
) -> dict[str, Proof]:
    """The proofs of control of ``domains`` that their raw ``docs``' statuses hold."""
    statuses = {ObjectRef.of(doc)[:2]: doc.get("status") for doc in docs}
    found = {d.ref: from_status(d.domain, statuses.get((d.namespace, d.name))) for d in domains}
    return {ref: proof for ref, proof in found.items() if proof is not None}


def _proofs(
    inputs: DomainInputs, model: MailDomain | None, siblings: Sequence[MailDomain]
) -> dict[str, Proof]:
    """The proofs of control by MailDomain ref: this one's (``model``) decided now (a new
    token, or proven by this pass's lookup), the others' as their statuses say (the operator
    wrote them)."""
    found = status_proofs(siblings, [*inputs.siblings, *inputs.namespace_domains])
    if model is not None and inputs.grants.proof_required(model.namespace, model.domain):
        found[model.ref] = decide(model.domain, inputs.proof, inputs.proof_txt, inputs.random_bytes)
    return found


def _withdrawn_reason(grants: Grants, model: MailDomain, problems: Sequence[Problem]) -> str:
    """Why a MailDomain that parses does not serve: the first refusal of ``assemble``."""
    if grants.refusal(model.namespace, model.domain) or grants.hostname_refusal(model):
        return reasons.DOMAIN_NOT_GRANTED
    if grants.service_refusals(model):
        return reasons.SERVICE_NOT_ALLOWED
    if grants.issuer_refusals(model):
        return reasons.ISSUER_NOT_ALLOWED
    if grants.host_refusals(model):
        return reasons.HOST_NOT_ALLOWED
    if grants.outbound_refusals(model):
        return reasons.OUTBOUND_NOT_ALLOWED
    kinds = {p.kind for p in problems}
    if SERVER_NOT_ALLOWED in kinds:
        return reasons.SERVER_NOT_ALLOWED
    if SERVER_PENDING in kinds:
        return reasons.SERVER_PENDING
    if PROOF_PENDING in kinds:
        return reasons.PROOF_PENDING
    if LIMIT_EXCEEDED in kinds:
        return reasons.LIMIT_EXCEEDED
    return reasons.DOMAIN_CONFLICT


def _served_by_others(inputs: DomainInputs) -> dict[str, str]:
    """The domains the other MailDomains of ``inputs`` serve, with the ref of the one serving
    each: the contest as it runs without this MailDomain (whose spec does not parse)."""
    own = ObjectRef.of(inputs.domain)[:2]
    others = _parse_domains([*inputs.siblings, *inputs.namespace_domains], own)
    proofs = _proofs(inputs, None, others)
    claims = {own[0]: inputs.namespace_claims}
    services, _ = assemble(others, [], inputs.grants, proofs, claims)
    return {s.domain.domain: s.domain.ref for s in services}


def render_domain(inputs: DomainInputs) -> Rendered:
    """Parse, assemble, resolve material and render one MailDomain with its Mailboxes."""
    out = Rendered()
    try:
        model = parse_maildomain(inputs.domain, SOURCE)
    except ValidationError as err:
        out.domain_problems = err.problems
        refusal = unparsed_refusal(inputs.domain, inputs.grants, _served_by_others(inputs))
        if refusal is not None:  # withdrawn: its names are not its namespace's (any more)
            out.invalid_reason, problem = refusal
            out.domain_problems = [problem, *err.problems]
            out.serves_mailboxes = False
        return out
    out.model = model

    siblings = _parse_domains(
        [*inputs.siblings, *inputs.namespace_domains], (model.namespace, model.name)
    )
    boxes: list[Mailbox] = []
    # A Mailbox of the domain is in both lists when the namespace view is given.
    box_docs = {doc_name(doc): doc for doc in [*inputs.mailboxes, *inputs.namespace_mailboxes]}
    for name, doc in box_docs.items():
        try:
            boxes.append(parse_mailbox(doc, SOURCE, model.namespace))
        except ValidationError as err:
            out.mailbox_problems[name].extend(err.problems)

    proofs = _proofs(inputs, model, siblings)
    out.proof = proofs.get(model.ref)
    claims = {model.namespace: inputs.namespace_claims}
    services, problems = assemble([model, *siblings], boxes, inputs.grants, proofs, claims)
    _split(problems, out, model.ref)
    service = next((s for s in services if s.domain.ref == model.ref), None)
    if service is None:
        out.serves_mailboxes = False
        out.invalid_reason = _withdrawn_reason(inputs.grants, model, out.domain_problems)
        if out.invalid_reason == reasons.SERVER_PENDING and inputs.served_by:
            out.invalid_reason = reasons.SERVED_BY_SERVER  # (a refusal, of its own stack only)
            message = f"served by {inputs.served_by}, which has its workloads and status"
            out.domain_problems = [Problem(model.ref, "spec.serverRef", message)]
        if not out.domain_problems:  # assemble always says why; this is a safety net
            out.domain_problems.append(Problem(model.ref, "spec.domain", "served twice"))
        return out
    # The one trust a MailDomain's author gives never reaches the cluster's own addresses.
    out.domain_problems += exempt_cluster_problems(model, inputs.options.cluster_networks)
    if out.domain_problems:
        return out
    out.service = service

    material, problems = resolve_material(service, inputs.secrets, inputs.now, inputs.random_bytes)
    _split(problems, out, model.ref)
    if out.domain_problems:
        out.invalid_reason = reasons.INVALID_SECRET
        return out
    out.material = material

    owner = Owner(model.name, model.namespace, ObjectRef.of(inputs.domain).uid)
    try:
        objects = render_stack(service, material, inputs.options)
    except (RenderError, MaterialError) as err:
        out.render_error = str(err)
        return out
    out.objects = [owned(obj, owner) for obj in objects]
    return out
