"""Owns the DNS proof of control of a domain: the token, the record to publish and the decision
(pure; the lookup is the controller's, ``controller.proof_lookup``).

A MailDomainPolicy with ``requireProof: true`` grants a domain only to a MailDomain that shows
it controls the domain's DNS: the operator gives each MailDomain a random token (in its
``status.proof``, written only by the operator, so stable across restarts and unknown to anyone
before the MailDomain exists), and the domain is served once
``_mailstack-challenge.<domain>`` has a TXT record ``mailstack-verification=<token>``. Until
then the MailDomain serves nothing and takes no part in the contest for its domain, so a tenant
that may claim names under a shared suffix cannot block the domain's owner. Proven once is
enough: the record may go afterwards. A new MailDomain (a new uid, hence an empty status) needs
a new proof. ``mailstack render`` and ``up`` read files written by whoever runs them, and
require no proof.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PROOF_PENDING = "proof-pending"  # Problem.kind of a MailDomain waiting for its proof
CHALLENGE_LABEL = "_mailstack-challenge"
VALUE_PREFIX = "mailstack-verification="
TOKEN_BYTES = 20  # 160 bits, 32 base32 characters


@dataclass(frozen=True)
class Proof:
    """A MailDomain's proof of control: its token and whether the record was seen."""

    domain: str
    token: str
    proven: bool = False

    @property
    def record_name(self) -> str:
        return challenge_name(self.domain)

    @property
    def record_value(self) -> str:
        return VALUE_PREFIX + self.token

    def instructions(self) -> str:
        return f'publish the TXT record {self.record_name} "{self.record_value}"'

    def as_status(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "record": {"name": self.record_name, "type": "TXT", "value": self.record_value},
            "proven": self.proven,
        }


def challenge_name(domain: str) -> str:
    return f"{CHALLENGE_LABEL}.{domain}"


def new_token(random_bytes: Callable[[int], bytes]) -> str:
    return base64.b32encode(random_bytes(TOKEN_BYTES)).decode("ascii").lower().rstrip("=")


def from_status(domain: str, status: object) -> Proof | None:
    """The proof a MailDomain's status holds (None: no token issued yet, or one issued for
    another domain: its ``record.name`` is not this domain's challenge name, so a status carried
    over from another domain never counts, whatever the CRD's immutability rule holds)."""
    section = status.get("proof") if isinstance(status, Mapping) else None
    if not isinstance(section, Mapping):
        return None
    record = section.get("record")
    if not isinstance(record, Mapping) or record.get("name") != challenge_name(domain):
        return None
    token = section.get("token")
    if not isinstance(token, str) or not token.isalnum():
        return None
    return Proof(domain, token, section.get("proven") is True)


def decide(
    domain: str,
    previous: Proof | None,
    txt_values: Iterable[str] | None,
    random_bytes: Callable[[int], bytes],
) -> Proof:
    """This pass's proof: the token kept (or a new one), proven once the record holds it.

    ``txt_values``: the TXT strings found at the challenge name (None: not looked up, or the
    lookup failed); a proof given once stays given. A proof for another domain (``spec.domain``
    is immutable, so only a hand-edited status) does not count.
    """
    if previous is None:
        return Proof(domain, new_token(random_bytes))
    if previous.proven:
        return previous
    seen = txt_values is not None and previous.record_value in {v.strip() for v in txt_values}
    return Proof(domain, previous.token, seen)


def pending_message(domain: str, found: Proof | None) -> str:
    """What a MailDomain waiting for its proof must do."""
    if found is None:
        return f"the grant of {domain} requires a proof of control: a token is being issued"
    return f"the grant of {domain} requires a proof of control: {found.instructions()}"
