"""Owns the contest for names: which admitted MailDomain serves a domain, and which may use a
host name, when MailDomains of several namespaces claim the same or nested names (pure).

A domain is served once in the cluster: by its oldest admitted claim (``MailDomain.
claim_order``). Under the platform's policies (``hostnames``), names nest by age too: a name
equal to or under one that an OLDER admitted claim of another namespace holds is that claim's
namespace's, so a newer claim cannot take an older one's names over by claiming a name above
or at them.

- A host name equal to or under the domain of an older claim of another namespace, or under
  the held host name of one (nearer to it than the MailDomain's own domain), belongs to that
  claim's namespace: ``spec.hostname`` refused.
- A host name is held by its oldest admitted claim whose host name that rule leaves it (even
  while that claim loses its domain, so that who holds a host name never depends on who wins a
  domain); the MailDomains of the holder's namespace may share it, those of others may not.
- A domain strictly under the domain, or equal to or under the held host name, of an older
  claim of another namespace is refused (``spec.domain``): the squatter who claims the domain
  ``mail.shop.example`` (an older tenant's mail host) gets ``DomainConflict`` and takes nothing
  over, where the first rule alone would have handed it the older tenant's host name.

A refused claim still holds its host name against newer claims of other namespaces. Each rule
looks only at the claims on the names at or above a claim's own (the index's
``Documents.contenders`` reads those). Without policies nothing but the domain itself is
contested: any namespace may claim any domain itself, as for a single team.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailstack.api.errors import Problem
from mailstack.api.models import MailDomain


def contest(
    admitted: Sequence[MailDomain], problems: list[Problem], hostnames: bool
) -> list[MailDomain]:
    """The admitted MailDomains (in claim order) that win their domain; a problem naming the
    winner (or the older claim) for each one that does not."""
    refusals = _name_refusals(admitted) if hostnames else {}
    winners: dict[str, MailDomain] = {}
    for dom in admitted:
        if dom.ref in refusals:
            problems.append(refusals[dom.ref])
            continue
        winner = winners.setdefault(dom.domain, dom)
        if winner is not dom:
            why = f"{dom.domain} is already served by {winner.ref}"
            problems.append(Problem(dom.ref, "spec.domain", why))
    return list(winners.values())


def _name_refusals(admitted: Sequence[MailDomain]) -> dict[str, Problem]:
    """By MailDomain ref: why it may not use its domain or host name (the module's rules)."""
    names = _Names(admitted)
    refusals: dict[str, Problem] = {}
    for dom in admitted:
        why = names.hostname_refusal(dom)
        if why is not None:
            refusals[dom.ref] = Problem(dom.ref, "spec.hostname", why)
            continue
        holder = names.holders.setdefault(dom.hostname, dom)
        if holder.namespace != dom.namespace:
            why = f"{dom.hostname} is already the host name of {holder.ref}"
            refusals[dom.ref] = Problem(dom.ref, "spec.hostname", why)
    for dom in admitted:
        nested = names.domain_refusal(dom)
        if nested is not None:
            refusals[dom.ref] = Problem(dom.ref, "spec.domain", nested)
    return refusals


class _Names:
    """The admitted claims by the names they hold: domains (the first claim of each) and host
    names (filled in by ``_name_refusals``)."""

    def __init__(self, admitted: Sequence[MailDomain]) -> None:
        self.rank = {dom.ref: index for index, dom in enumerate(admitted)}
        self.claimed_by: dict[str, MailDomain] = {}  # domain -> its first admitted claim
        for dom in admitted:
            self.claimed_by.setdefault(dom.domain, dom)
        self.holders: dict[str, MailDomain] = {}  # host name -> its first claim left it

    def older_rival(self, dom: MailDomain, claim: MailDomain | None) -> MailDomain | None:
        """``claim`` if it is older than ``dom`` and of another namespace."""
        if claim is None or claim.namespace == dom.namespace:
            return None
        return claim if self.rank[claim.ref] < self.rank[dom.ref] else None

    def hostname_refusal(self, dom: MailDomain) -> str | None:
        """Why ``dom``'s host name belongs to an older claim of another namespace: it is or is
        under that claim's domain, or under its held host name (the same host name is
        ``holders``' rule), nearer to it than ``dom``'s own domain (a host name under its own
        domain goes with the contest for that domain)."""
        for name in at_or_above(dom.hostname):
            if name == dom.domain:
                return None
            owner = self.older_rival(dom, self.claimed_by.get(name))
            if owner is not None:
                return f"{dom.hostname} belongs to {owner.domain}, claimed by {owner.ref}"
            holder = self.older_rival(dom, self.holders.get(name))
            if holder is not None and name != dom.hostname:
                return f"{dom.hostname} is under {name}, the host name of {holder.ref}"
        return None

    def domain_refusal(self, dom: MailDomain) -> str | None:
        """Why ``dom``'s domain lies in the names of an older claim of another namespace."""
        for name in at_or_above(dom.domain):
            holder = self.older_rival(dom, self.holders.get(name))
            if holder is not None:
                where = "is" if name == dom.domain else f"is under {name},"
                return f"{dom.domain} {where} the host name of {holder.ref}"
            if name == dom.domain:
                continue  # the same domain: its oldest claim serves it (``contest``)
            owner = self.older_rival(dom, self.claimed_by.get(name))
            if owner is not None:
                return f"{dom.domain} is under {name}, claimed by {owner.ref}"
        return None


def at_or_above(name: str) -> list[str]:
    """``name`` and every name above it, nearest first, without the top-level label."""
    labels = name.split(".")
    return [".".join(labels[start:]) for start in range(len(labels) - 1)]


def at_or_under(name: str, above: str) -> bool:
    """Whether ``name`` is ``above`` or a name under it."""
    return name == above or name.endswith("." + above)
