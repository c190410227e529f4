"""Owns which of one namespace's MailDomains and Mailboxes serve nothing for a reason the
operator knows before a pass (a shared server's, one over the namespace's limits), so that
``Documents`` counts their Secret references as the render reads them (#13 check H1).

It asks the render's own admission (``api.assemble.admit``: eligibility, a shared server's
MailDomain pending, ``api.limits``) and never a second count of the limits. What a pass knows
and this index does not makes it err towards keeping: the proof a pass may find (only proofs its
statuses hold count here; a proof once given stays given, so a pass admits at least what this
admits, and the status write it causes brings the index up to date) and, under ``maxStorage``,
the namespace's volume claims (then only a shared server's MailDomains are left out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mailstack.api.assemble import admit
from mailstack.api.errors import ValidationError
from mailstack.api.limits import LIMIT_EXCEEDED
from mailstack.api.models import Mailbox, MailDomain
from mailstack.api.parse import parse_mailbox
from mailstack.api.policy import Grants
from mailstack.api.proof import Proof, from_status
from mailstack.controller.plan import SOURCE, parsed_contender
from mailstack.kubedoc import meta_of


def on_shared_server(doc: Mapping[str, Any]) -> bool:
    """Whether the raw MailDomain ``doc`` names a shared server (``ServerPending`` or
    ``ServerNotAllowed``): the operator renders no stack of its own for it."""
    parsed = parsed_contender(doc)
    return parsed is not None and parsed.server_ref is not None


@dataclass(frozen=True)
class OverLimits:
    """The names of one namespace's MailDomains over ``maxMailDomains`` and of its Mailboxes
    over ``maxMailboxes``/``maxQuota``."""

    domains: frozenset[str] = frozenset()
    mailboxes: frozenset[str] = frozenset()


WITHIN = OverLimits()


def over_limits(
    namespace: str,
    grants: Grants,
    domains: Sequence[Mapping[str, Any]],
    mailboxes: Sequence[Mapping[str, Any]],
) -> OverLimits:
    """What of ``namespace``'s raw ``domains`` and ``mailboxes`` its limits refuse
    (``OverLimits``; nothing under ``maxStorage``, which counts volume claims not known here)."""
    limits = grants.limits_for(namespace)
    if not limits.bounded or limits.max_storage is not None:
        return WITHIN
    parsed = {dom.ref: dom for doc in domains if (dom := parsed_contender(doc)) is not None}
    boxes = {box.ref: box for box in _parsed_mailboxes(namespace, mailboxes)}
    proofs = _proofs(domains, parsed.values())
    admission = admit(parsed.values(), boxes.values(), grants, proofs)
    refused = {p.document for p in admission.problems if p.kind == LIMIT_EXCEEDED}
    return OverLimits(
        frozenset(parsed[ref].name for ref in refused if ref in parsed),
        frozenset(boxes[ref].name for ref in refused if ref in boxes),
    )


def _proofs(docs: Sequence[Mapping[str, Any]], parsed: Iterable[MailDomain]) -> dict[str, Proof]:
    """The proofs of control the MailDomains' statuses hold, by ref (as ``plan`` reads others')."""
    statuses = {meta_of(doc).get("name"): doc.get("status") for doc in docs}
    found: dict[str, Proof] = {}
    for dom in parsed:
        proof = from_status(dom.domain, statuses.get(dom.name))
        if proof is not None:
            found[dom.ref] = proof
    return found


def _parsed_mailboxes(namespace: str, docs: Sequence[Mapping[str, Any]]) -> list[Mailbox]:
    """The Mailboxes that parse (one that does not is refused by the render, not counted)."""
    found = []
    for doc in docs:
        try:
            found.append(parse_mailbox(doc, SOURCE, namespace))
        except ValidationError:
            continue
    return found
