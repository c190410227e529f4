"""Cross-document validation: which Mailboxes belong to which MailDomain, and do aliases resolve.

Single documents are checked by ``api.parse``; this module checks what only the whole set can
tell: a Mailbox for a domain no MailDomain serves, an address claimed twice, an alias that points
at nothing or at itself, a catch-all that is not a mailbox. Problems are attached to the document
that must change. The result is one ``MailService`` per valid MailDomain.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mailstack.api import claims, limits, proof
from mailstack.api.errors import Problem
from mailstack.api.models import Mailbox, MailDomain
from mailstack.api.policy import SERVER_NOT_ALLOWED, Grants
from mailstack.api.proof import Proof

SERVER_PENDING = "ServerPending"  # Problem.kind: on a shared server, which has not served it
_PENDING = (
    "the MailServer has not served this MailDomain (yet): it is not there, its pass has not "
    "run, or it refuses the domain (its status names the domains it does not serve); "
    "remove spec.serverRef to serve the domain from a stack of its own"
)
# The kind of the problem of a Mailbox whose domain no admitted MailDomain serves (a caller that
# knows the MailDomain was refused for a reason of its own says so instead: pipeline.py).
UNSERVED = "unserved"


@dataclass(frozen=True)
class MailService:
    """A MailDomain together with its valid Mailboxes (sorted by address)."""

    domain: MailDomain
    mailboxes: tuple[Mailbox, ...]

    @property
    def addresses(self) -> frozenset[str]:
        return frozenset(box.address for box in self.mailboxes)

    def alias_map(self) -> dict[str, tuple[str, ...]]:
        """Every alias address of the domain (domain aliases and mailbox aliases) → targets."""
        result: dict[str, tuple[str, ...]] = {}
        for local, targets in self.domain.aliases:
            result[f"{local}@{self.domain.domain}"] = targets
        for box in self.mailboxes:
            for alias in box.aliases:
                result[alias] = (box.address,)
        return result

    def resolve(self, address: str, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        """The final recipients of an address: mailboxes of this domain or external addresses.

        Returns an empty set when an internal address leads nowhere (or only into a loop).
        """
        if address in self.addresses:
            return frozenset({address})
        if not address.endswith("@" + self.domain.domain):
            return frozenset({address})
        aliases = self.alias_map()
        if address not in aliases or address in seen:
            return frozenset()
        found: set[str] = set()
        for target in aliases[address]:
            found |= self.resolve(target, seen | {address})
        return frozenset(found)

    def postmaster_target(self) -> str | None:
        """Where postmaster@ mail goes: the configured address if it resolves, else a fallback.

        RFC 5321 requires postmaster to be deliverable; when the configured (or default) address
        leads nowhere we fall back to the catch-all, then to the first mailbox.
        """
        if self.resolve(self.domain.postmaster):
            return self.domain.postmaster
        if self.domain.catch_all and self.domain.catch_all in self.addresses:
            return self.domain.catch_all
        if self.mailboxes:
            return self.mailboxes[0].address
        return None


def assemble(
    domains: Iterable[MailDomain],
    mailboxes: Iterable[Mailbox],
    grants: Grants | None = None,
    proofs: Mapping[str, Proof] | None = None,
    volume_claims: Mapping[str, Mapping[str, int]] | None = None,
    on_servers: bool = False,
) -> tuple[list[MailService], list[Problem]]:
    """Group Mailboxes under their MailDomains and check the cross-document rules.

    A MailDomain whose namespace the platform's policies do not grant its domain, or whose
    Service they do not allow, serves nothing (``policy.Grants``); nor does one whose grant
    requires a proof of control it has not given (``proofs`` by MailDomain ref; None: no proof
    is required, as for files) or one over its namespace's limits (``limits``; ``volume_claims``:
    the requests of each namespace's mail volume claims by MailDomain name, for maxStorage). A
    domain is served by one MailDomain in the whole cluster (all namespaces given): the oldest
    admitted claim (``MailDomain.claim_order``); every later one gets a problem naming it. Host
    names and nested names take part too (``claims.contest``). A Mailbox belongs to the
    MailDomain of its own namespace that serves its domain, unless the limits refuse it.

    A MailDomain naming a shared server (``spec.serverRef``) is assembled only for the render
    of servers (``on_servers``); for a stack of its own it serves nothing (``SERVER_PENDING``),
    so that no caller renders it as one.
    """
    grants = grants or Grants()
    admission = admit(domains, mailboxes, grants, proofs, volume_claims, on_servers)
    problems = list(admission.problems)
    by_key: dict[tuple[str, str], MailDomain] = {}
    for dom in claims.contest(admission.domains, problems, hostnames=grants.enforced):
        by_key[(dom.namespace, dom.domain)] = dom
    mailboxes = admission.mailboxes

    owners: dict[tuple[str, str], list[Mailbox]] = defaultdict(list)
    for box in sorted(mailboxes, key=lambda b: (b.namespace, b.name)):
        if (box.namespace, box.domain) not in by_key:
            problems.append(
                Problem(
                    box.ref,
                    "spec.address",
                    f"no MailDomain in namespace {box.namespace} serves the domain {box.domain}",
                    kind=UNSERVED,
                )
            )
            continue
        owners[(box.namespace, box.domain)].append(box)

    services: list[MailService] = []
    for key, dom in sorted(by_key.items()):
        accepted: list[Mailbox] = []
        claimed: dict[str, str] = {}  # address -> ref of the document that claims it
        for local, _ in dom.aliases:
            claimed[f"{local}@{dom.domain}"] = f"{dom.ref} spec.aliases.{local}"
        # Addresses first: a Mailbox's own address wins over another Mailbox's alias, whatever
        # the order of their names.
        addressed: list[Mailbox] = []
        for box in owners.get(key, []):
            if box.address in claimed:
                problems.append(
                    Problem(
                        box.ref,
                        "spec.address",
                        f"{box.address} is already used by {claimed[box.address]}",
                    )
                )
                continue
            claimed[box.address] = box.ref
            addressed.append(box)
        for box in addressed:
            box_problems = [
                Problem(
                    box.ref,
                    f"spec.aliases[{index}]",
                    f"{alias} is already used by {claimed[alias]}",
                )
                for index, alias in enumerate(box.aliases)
                if alias in claimed
            ]
            if box_problems:
                problems.extend(box_problems)
                continue
            for alias in box.aliases:
                claimed[alias] = f"{box.ref} spec.aliases"
            accepted.append(box)
        service = MailService(dom, tuple(sorted(accepted, key=lambda b: b.address)))
        problems.extend(_check_routing(service))
        services.append(service)
    return services, problems


@dataclass(frozen=True)
class Admitted:
    """What may serve before the contest for names: the MailDomains eligible and within their
    namespace's limits, the Mailboxes those limits do not refuse, and why the others may not."""

    domains: list[MailDomain]
    mailboxes: list[Mailbox]
    problems: list[Problem]


def admit(
    domains: Iterable[MailDomain],
    mailboxes: Iterable[Mailbox],
    grants: Grants,
    proofs: Mapping[str, Proof] | None = None,
    volume_claims: Mapping[str, Mapping[str, int]] | None = None,
    on_servers: bool = False,
) -> Admitted:
    """The part of ``assemble`` before the contest: eligibility (``eligibility_problems``, a
    shared server's MailDomain pending), then each namespace's limits on MailDomains and on the
    Mailboxes of the admitted ones. ``Documents`` asks it which Secrets a namespace's documents
    may need, so that limits bound what the operator keeps as they bound what it serves."""
    problems: list[Problem] = []
    candidates = []
    for dom in sorted(domains, key=lambda d: d.claim_order):
        refusals = eligibility_problems(dom, grants, proofs)
        if not refusals and dom.server_ref is not None and not on_servers:
            refusals = [Problem(dom.ref, "spec.serverRef", _PENDING, kind=SERVER_PENDING)]
        if refusals:
            problems += refusals
        else:
            candidates.append(dom)
    by_namespace: dict[str, list[MailDomain]] = defaultdict(list)
    for dom in candidates:
        by_namespace[dom.namespace].append(dom)
    refused: set[str] = set()
    for namespace, own in by_namespace.items():
        own_claims = (volume_claims or {}).get(namespace)  # the volumes' requests, by MailDomain
        admission = limits.admit_domains(grants.limits_for(namespace), own, own_claims)
        problems += admission.problems
        refused |= admission.refused
    admitted = [dom for dom in candidates if dom.ref not in refused]
    claimed_domains = {(d.namespace, d.domain) for d in admitted}
    boxes, refused_boxes = _admit_mailboxes(grants, mailboxes, claimed_domains)
    return Admitted(admitted, boxes, problems + refused_boxes)


def eligibility_problems(
    dom: MailDomain, grants: Grants, proofs: Mapping[str, Proof] | None = None
) -> list[Problem]:
    """Why ``dom`` may not claim its domain at all (before limits and the contest): not
    granted, its host name or its shared server not granted, its Service, certificate issuer
    or a host not allowed, proof not given."""
    refusal = grants.refusal(dom.namespace, dom.domain)
    if refusal is not None:
        return [Problem(dom.ref, "spec.domain", refusal)]
    refusal = grants.hostname_refusal(dom)
    if refusal is not None:
        return [Problem(dom.ref, "spec.hostname", refusal)]
    refusal = grants.server_refusal(dom)
    if refusal is not None:
        return [Problem(dom.ref, "spec.serverRef", refusal, kind=SERVER_NOT_ALLOWED)]
    not_allowed = grants.service_refusals(dom) + grants.issuer_refusals(dom)
    not_allowed += grants.host_refusals(dom) + grants.outbound_refusals(dom)
    if not_allowed:
        return [Problem(dom.ref, path, why) for path, why in not_allowed]
    if proofs is not None and grants.proof_required(dom.namespace, dom.domain):
        found = proofs.get(dom.ref)
        if found is None or not found.proven:
            message = proof.pending_message(dom.domain, found)
            return [Problem(dom.ref, "spec.domain", message, kind=proof.PROOF_PENDING)]
    return []


def _admit_mailboxes(
    grants: Grants, mailboxes: Iterable[Mailbox], claimed: set[tuple[str, str]]
) -> tuple[list[Mailbox], list[Problem]]:
    """The Mailboxes the namespaces' limits admit, and a problem for each one refused. Counted
    are those on a domain that an admitted MailDomain of their namespace claims."""
    counted: dict[str, list[Mailbox]] = defaultdict(list)
    others: list[Mailbox] = []
    for box in mailboxes:
        if (box.namespace, box.domain) in claimed:
            counted[box.namespace].append(box)
        else:
            others.append(box)  # refused below for the lack of a MailDomain
    problems: list[Problem] = []
    for namespace, boxes in counted.items():
        admission = limits.admit_mailboxes(grants.limits_for(namespace), boxes)
        problems += admission.problems
        others += [box for box in boxes if box.ref not in admission.refused]
    return others, problems


def _cycle(aliases: dict[str, tuple[str, ...]], start: str) -> list[str] | None:
    """The first alias loop reachable from ``start`` (``[a, b, a]``), or None."""

    def walk(address: str, path: list[str]) -> list[str] | None:
        if address in path:
            return [*path[path.index(address) :], address]
        for target in aliases.get(address, ()):
            found = walk(target, [*path, address])
            if found:
                return found
        return None

    return walk(start, [])


def _check_routing(service: MailService) -> list[Problem]:
    dom = service.domain
    problems: list[Problem] = []
    aliases = service.alias_map()
    for local, targets in dom.aliases:
        for index, target in enumerate(targets):
            if target.endswith("@" + dom.domain) and not service.resolve(target):
                cycle = _cycle(aliases, target)
                message = (
                    f"{target} only leads into an alias loop ({' -> '.join(cycle)})"
                    if cycle
                    else f"{target} is neither a Mailbox nor an alias that leads to one"
                )
                problems.append(Problem(dom.ref, f"spec.aliases.{local}[{index}]", message))
    if dom.catch_all and dom.catch_all not in service.addresses:
        problems.append(
            Problem(
                dom.ref,
                "spec.catchAll",
                f"{dom.catch_all} is not the address of a Mailbox of this domain",
            )
        )
    explicit_postmaster = dom.postmaster != f"postmaster@{dom.domain}"
    if explicit_postmaster and not service.resolve(dom.postmaster):
        problems.append(
            Problem(
                dom.ref,
                "spec.postmaster",
                f"{dom.postmaster} is neither a Mailbox nor an alias that leads to one",
            )
        )
    return problems
