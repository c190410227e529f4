"""Owns the lookups behind ``OutboundIdentityVerified``: for each MailDomain with
``spec.outbound.addresses``, the PTR, A/AAAA and SPF lookups of ``dns.outbound.check_outbound``
at the operator's resolver (``--proof-resolver``, else the system's), in background tasks.

The shell around the pure verdict, shaped like ``proof_lookup``: the pass reads the last answer
and never waits on a resolver (a tenant's SPF may include names whose servers never answer);
a lookup runs in a thread (dnspython's resolver, each query bounded by ``timeout``), at most
one per MailDomain, ``per_namespace`` per namespace and ``concurrent`` in all. It is due when
the addresses, the HELO name or the SPF value we publish changed, and every ``recheck`` seconds
(PTR records are the address owner's, and change without the MailDomain). An answer that
differs from the one before wakes the MailDomain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailstack.api.models import MailDomain
from mailstack.controller.lookup_tasks import LookupTasks
from mailstack.dns.check import resolver_lookup
from mailstack.dns.outbound import AddressCheck, check_outbound
from mailstack.dns.records import spf_value
from mailstack.kubedoc import ObjectRef

RECHECK = 600.0

# What a verdict depends on: the addresses, the HELO name, the domain, the SPF value we publish.
Key = tuple[tuple[str, ...], str, str, str]


def _no_wake(namespace: str, name: str) -> None:
    pass


@dataclass
class OutboundLookup:
    nameserver: str = ""
    port: int = 53
    timeout: float = 5.0
    recheck: float = RECHECK
    clock: Callable[[], float] = time.monotonic
    per_namespace: int = 1
    concurrent: int = 4
    wake: Callable[[str, str], None] = _no_wake
    _answers: dict[str, tuple[Key, tuple[AddressCheck, ...]]] = field(default_factory=dict)
    _due: dict[str, tuple[Key, float]] = field(default_factory=dict)
    _tasks: LookupTasks = field(init=False)

    def __post_init__(self) -> None:
        self._tasks = LookupTasks(self.per_namespace, self.concurrent)

    def look(
        self, body: Mapping[str, Any], model: MailDomain | None
    ) -> tuple[AddressCheck, ...] | None:
        """The last verdict for the MailDomain's outbound identity as the spec has it now
        (None: none yet, or no addresses); starts a lookup when one is due."""
        ref = ObjectRef.of(body)
        addresses = () if model is None else model.outbound.ipv4 + model.outbound.ipv6
        if model is None or not addresses or model.relay is not None:
            self.forget(ref.uid)
            return None
        key: Key = (addresses, model.helo_name, model.domain, spf_value(model))
        due = self._due.get(ref.uid)
        now = self.clock()
        if self._tasks.idle(ref.uid) and (due is None or due[0] != key or now >= due[1]):
            self._due[ref.uid] = (key, now + self.recheck)
            self._tasks.start(ref.uid, self._lookup(ref, key))
        answer = self._answers.get(ref.uid)
        return answer[1] if answer is not None and answer[0] == key else None

    async def _lookup(self, ref: ObjectRef, key: Key) -> None:
        async with self._tasks.slot(ref.namespace):
            lookup = resolver_lookup(self.nameserver, self.port, self.timeout)
            checks = await asyncio.to_thread(check_outbound, key[0], key[1], key[2], lookup)
        if ref.uid not in self._due:  # gone, or its addresses removed, since
            return
        before = self._answers.get(ref.uid)
        self._answers[ref.uid] = (key, checks)
        if before != (key, checks):
            self.wake(ref.namespace, ref.name)

    async def settled(self) -> None:
        """Wait for the lookups in flight (tests)."""
        await self._tasks.settled()

    def forget(self, key: str) -> None:
        self._due.pop(key, None)
        self._answers.pop(key, None)
        self._tasks.drop(key)

    def close(self) -> None:
        """Stop the lookups in flight (the operator stops); a thread ends with its timeouts."""
        self._tasks.close()
