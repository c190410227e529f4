"""Which records are mailstack's: ownership markers and the claims in them (pure).

Ownership (external-dns style, one marker per managed name): next to every name whose records
mailstack writes there is a TXT RRset at ``_mailstack-owner.<name>`` with one value per claimed
record type::

    _mailstack-owner.mail.example.com. TXT "heritage=mailstack,owner=mail/example-com,type=A"
    _mailstack-owner.example.com.      TXT "heritage=mailstack,owner=mail/example-com,type=MX"
                                           "heritage=mailstack,owner=mail/example-com,type=TXT,
                                            prefix=v=spf1"   (one value, wrapped here)

``owner`` is the MailDomain's ``<namespace>/<name>``; ``prefix`` marks a value-level claim: of the
TXT RRset at the apex only the ``v=spf1`` value is ours. The rules:

- a record we claim is created, updated and deleted as the desired set says;
- a record nobody claims is never modified or deleted. If it already holds exactly the desired
  values it counts as published (and stays unclaimed: deleting the MailDomain leaves it);
  otherwise the record is a ``Conflict``. At the apex a foreign ``v=spf1`` value is a conflict
  (two SPF records make SPF fail); every other TXT value there is left alone;
- a record claimed by another owner is a ``Conflict``;
- claims are written before the records they cover and removed after them, so a provider
  without atomic change sets never holds a record of ours without its claim.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailstack.dns.plan import RRset

OWNER_LABEL = "_mailstack-owner"
HERITAGE = "heritage=mailstack"


def owner_id(namespace: str, name: str) -> str:
    """The owner written into claims: the MailDomain's ``<namespace>/<name>``."""
    return f"{namespace}/{name}"


def marker_name(name: str) -> str:
    return f"{OWNER_LABEL}.{name}"


def is_marker_name(name: str) -> bool:
    return name.startswith(OWNER_LABEL + ".")


@dataclass(frozen=True, order=True)
class Claim:
    """One ownership claim: ``owner`` holds records of ``type`` (values with ``prefix``)."""

    owner: str
    type: str
    prefix: str = ""

    def text(self) -> str:
        text = f"{HERITAGE},owner={self.owner},type={self.type}"
        return f"{text},prefix={self.prefix}" if self.prefix else text

    @staticmethod
    def parse(value: str) -> Claim | None:
        """A claim from a marker TXT value; None for any other TXT value."""
        if not value.startswith(HERITAGE + ","):
            return None
        fields: dict[str, str] = {}
        for item in value.split(",")[1:]:
            key, sep, val = item.partition("=")
            if not sep:
                return None
            fields[key] = val
        if not fields.get("owner") or not fields.get("type"):
            return None
        return Claim(fields["owner"], fields["type"].upper(), fields.get("prefix", ""))


def claims_in(
    current: Sequence[RRset],
) -> dict[tuple[str, str], list[Claim]]:
    """Every claim in the zone's marker records, by the (name, type) it covers."""
    found: dict[tuple[str, str], list[Claim]] = defaultdict(list)
    for rrset in current:
        if rrset.type != "TXT" or not is_marker_name(rrset.name):
            continue
        target = rrset.name[len(OWNER_LABEL) + 1 :]
        for value in rrset.values:
            claim = Claim.parse(value)
            if claim is not None:
                found[(target, claim.type)].append(claim)
    return found
