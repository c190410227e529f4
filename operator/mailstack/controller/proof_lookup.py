"""Owns the DNS lookup of the proofs of control (``api.proof``): the TXT query, its back-off,
and the background tasks it runs in.

The thin shell around ``api.proof.decide``: a MailDomain waiting for its proof has the TXT
records at its challenge name looked up at most once per back-off period (30 s, doubling to 10
minutes, reset by a new token), with a timeout, so that a pending MailDomain neither hammers the
resolvers nor holds its pass. The lookup runs off the reconcile path: the pass starts it when it
is due and reads the last answer, never waiting on the network, so a tenant whose challenge
names lead to a server that never answers holds no reconcile. Lookups in flight are bounded per
namespace (``per_namespace``) and in all (``concurrent``); a lookup that waits for a slot holds
nothing. When an answer differs from the one before, its MailDomain is woken (``wake``) and its
next pass reads it. ``retry_after`` tells the coalescing daemon when the next lookup is due. A
failed lookup (timeout, SERVFAIL) keeps the answer before; NXDOMAIN and an empty answer are an
answer without the proof. It holds the outbound identity lookups (``outbound``), which use the
same resolver, wake and lifetime.
"""

from __future__ import annotations

import asyncio
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
from mailstack.controller.lookup_tasks import LookupTasks
from mailstack.controller.outbound_lookup import OutboundLookup
from mailstack.kubedoc import ObjectRef

logger = logging.getLogger(__name__)

FIRST_DELAY = 30.0
MAX_DELAY = 600.0


@dataclass
class _Schedule:
    token: str
    due: float
    delay: float


@dataclass(frozen=True)
class _Answer:
    token: str
    values: list[str]


def _no_wake(namespace: str, name: str) -> None:
    pass


@dataclass
class ProofLookup:
    """TXT lookups of challenge names, at ``nameserver`` (an address) or the system's
    resolvers, in background tasks."""

    nameserver: str = ""
    port: int = 53
    timeout: float = 5.0
    first_delay: float = FIRST_DELAY
    max_delay: float = MAX_DELAY
    clock: Callable[[], float] = time.monotonic
    per_namespace: int = 2  # lookups in flight per namespace
    concurrent: int = 16  # lookups in flight in all
    # Marks a MailDomain for another pass (the operator's coalescer): its answer changed.
    wake: Callable[[str, str], None] = _no_wake
    outbound: OutboundLookup = field(default_factory=OutboundLookup)
    _schedules: dict[str, _Schedule] = field(default_factory=dict)
    _answers: dict[str, _Answer] = field(default_factory=dict)
    _tasks: LookupTasks = field(init=False)

    def __post_init__(self) -> None:
        self._tasks = LookupTasks(self.per_namespace, self.concurrent)

    @classmethod
    def of(cls, config: OperatorConfig, wake: Callable[[str, str], None] = _no_wake) -> ProofLookup:
        """The lookup ``mailstack operator --proof-resolver`` (and the tests) configure."""
        return cls(
            config.proof_resolver,
            config.proof_resolver_port,
            first_delay=config.proof_recheck,
            wake=wake,
            outbound=OutboundLookup(
                config.proof_resolver,
                config.proof_resolver_port,
                recheck=config.outbound_recheck,
                wake=wake,
            ),
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

    def due(self, key: str, token: str) -> bool:
        """Whether a lookup for ``key`` (a MailDomain's uid) is due; if so, the next one is
        scheduled (the back-off doubles for the same token)."""
        now = self.clock()
        schedule = self._schedules.get(key)
        if schedule is not None and schedule.token == token and now < schedule.due:
            return False
        delay = self.first_delay
        if schedule is not None and schedule.token == token:
            delay = min(schedule.delay * 2, self.max_delay)
        self._schedules[key] = _Schedule(token, now + delay, delay)
        return True

    async def txt(self, name: str) -> list[str] | None:
        """The TXT strings at ``name``; None when the lookup failed."""
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
        """The proof of control the MailDomain's last status holds, and the TXT values of the
        last answer for its token (None: none yet); (None, None) when no proof is required.
        Starts a lookup when one is due; never waits for one."""
        ref = ObjectRef.of(body)
        domain = served_domain(body)
        if domain is None or not grants.proof_required(ref.namespace, domain):
            return None, None
        proof = from_status(domain, previous_status)
        if proof is None or proof.proven:
            self.forget(ref.uid)
            return proof, None
        if self._tasks.idle(ref.uid) and self.due(ref.uid, proof.token):
            self._tasks.start(ref.uid, self._lookup(ref, proof.token, proof.record_name))
        answer = self._answers.get(ref.uid)
        return proof, answer.values if answer is not None and answer.token == proof.token else None

    async def _lookup(self, ref: ObjectRef, token: str, name: str) -> None:
        """One lookup, once the namespace and the operator have a slot; wakes on a change."""
        async with self._tasks.slot(ref.namespace):
            try:  # the resolver's lifetime bounds it; this bounds a resolver that ignores it
                values = await asyncio.wait_for(self.txt(name), self.timeout + 1.0)
            except TimeoutError:
                values = None
        if values is None or ref.uid not in self._schedules:  # failed, or proven/gone since
            return
        before = self._answers.get(ref.uid)
        self._answers[ref.uid] = _Answer(token, values)
        if values != (before.values if before is not None and before.token == token else []):
            self.wake(ref.namespace, ref.name)

    def retry_after(self, key: str) -> float:
        """Seconds until the next lookup for ``key`` is due (a token just issued: the first
        delay, the time to publish it)."""
        schedule = self._schedules.get(key)
        return self.first_delay if schedule is None else max(schedule.due - self.clock(), 0.0)

    def forget(self, key: str) -> None:
        """Proven, or gone: no more lookups."""
        self._schedules.pop(key, None)
        self._answers.pop(key, None)
        self._tasks.drop(key)

    def close(self) -> None:
        """Stop the lookups in flight (the operator stops)."""
        self._tasks.close()
        self.outbound.close()
