"""Owns the DNS lookup of the proofs of control (``api.proof``): the TXT query and its back-off.

The thin shell around ``api.proof.decide``: a MailDomain waiting for its proof has the TXT
records at its challenge name looked up when its pass runs, at most once per back-off period
(30 s, doubling to 10 minutes, reset by a new token), with a timeout, so that a pending
MailDomain neither hammers the resolvers nor holds its pass. ``retry_after`` tells the
coalescing daemon when to run the next pass. A failed lookup (timeout, SERVFAIL) counts as
not seen; NXDOMAIN and an empty answer are not seen either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from mailstack.api.policy import Grants
from mailstack.api.proof import Proof, from_status
from mailstack.controller.config import OperatorConfig
from mailstack.controller.documents import served_domain
from mailstack.kubedoc import ObjectRef

logger = logging.getLogger(__name__)

FIRST_DELAY = 30.0
MAX_DELAY = 600.0


@dataclass
class _Schedule:
    token: str
    due: float
    delay: float


@dataclass
class ProofLookup:
    """TXT lookups of challenge names, at ``nameserver`` (an address) or the system's
    resolvers."""

    nameserver: str = ""
    port: int = 53
    timeout: float = 5.0
    first_delay: float = FIRST_DELAY
    max_delay: float = MAX_DELAY
    clock: Callable[[], float] = time.monotonic
    _schedules: dict[str, _Schedule] = field(default_factory=dict)

    @classmethod
    def of(cls, config: OperatorConfig) -> ProofLookup:
        """The lookup ``mailstack operator --proof-resolver`` (and the tests) configure."""
        return cls(
            config.proof_resolver, config.proof_resolver_port, first_delay=config.proof_recheck
        )

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if not self.nameserver:
            resolver = dns.asyncresolver.Resolver()
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [self.nameserver]
            resolver.port = self.port
        resolver.lifetime = self.timeout
        resolver.cache = None  # a record just published must be seen at the next look
        return resolver

    async def txt(self, key: str, token: str, name: str) -> list[str] | None:
        """The TXT strings at ``name`` when a lookup for ``key`` (a MailDomain's uid) is due,
        else None."""
        now = self.clock()
        schedule = self._schedules.get(key)
        if schedule is not None and schedule.token == token and now < schedule.due:
            return None
        delay = self.first_delay
        if schedule is not None and schedule.token == token:
            delay = min(schedule.delay * 2, self.max_delay)
        self._schedules[key] = _Schedule(token, now + delay, delay)
        try:
            answer = await self._resolver().resolve(name, "TXT", raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers) as err:
            logger.info("%s: no proof yet (%s)", name, type(err).__name__)
            return []
        except dns.exception.DNSException as err:
            logger.warning("%s: the proof lookup failed: %s", name, err)
            return None
        values = []
        for rdata in answer.rrset or []:
            if rdata.rdtype == dns.rdatatype.TXT:
                values.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        return values

    async def look(
        self, body: Mapping[str, Any], grants: Grants, previous_status: object
    ) -> tuple[Proof | None, list[str] | None]:
        """The proof of control the MailDomain's last status holds, and the TXT values at its
        challenge name when a lookup is due; (None, None) when no proof is required."""
        ref = ObjectRef.of(body)
        domain = served_domain(body)
        if domain is None or not grants.proof_required(ref.namespace, domain):
            return None, None
        proof = from_status(domain, previous_status)
        if proof is None or proof.proven:
            self.forget(ref.uid)
            return proof, None
        return proof, await self.txt(ref.uid, proof.token, proof.record_name)

    def retry_after(self, key: str) -> float:
        """Seconds until the next lookup for ``key`` is due (a token just issued: the first
        delay, the time to publish it)."""
        schedule = self._schedules.get(key)
        return self.first_delay if schedule is None else max(schedule.due - self.clock(), 0.0)

    def forget(self, key: str) -> None:
        """Proven, or gone: no more lookups."""
        self._schedules.pop(key, None)
