"""Owns who runs the next reconcile pass: the namespaces take turns.

A semaphore serves waiters first come, first served, so one namespace's hundreds of MailDomains
(refused ones cost a pass and a status write each, and none counts against a limit) queued ahead
of another tenant's first pass made it wait for all of them (101 s behind 200 ungranted
MailDomains). ``FairSlots`` keeps one queue per namespace and hands a free slot to the next
namespace in turn that has a pass waiting and fewer than ``per_namespace`` running (the one
served longest ago, a newcomer first): a pass waits for at most one pass of each other waiting
namespace, never for the length of another namespace's queue. Within a namespace, passes keep
their order of arrival.

The share is a floor while namespaces contend: a free slot that no namespace under its share
wants goes to one over it, up to half the slots. A cap of one pass per namespace left a core
idle while a single tenant's MailDomains converged (91-174 s instead of 78 s for the same work),
and no cap at all made another tenant's newcomer wait for a pass to end and then share the CPU
with three (3 times its pass alone, in the component test); half the slots stay for newcomers.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairSlots:
    """At most ``total`` passes at once, at most half of them of one namespace; the namespaces
    with passes waiting are served round-robin, those running fewer than ``per_namespace``
    first."""

    def __init__(self, total: int, per_namespace: int) -> None:
        self.total = max(1, total)
        self.per_namespace = max(1, min(per_namespace, self.total))
        # What one namespace may hold while no other wants the slots.
        self.ceiling = max(self.per_namespace, self.total // 2)
        self._running: Counter[str] = Counter()
        self._busy = 0
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        # When each namespace with passes waiting or running was last given a slot (the turns).
        self._served: dict[str, int] = {}
        self._tick = 0

    @asynccontextmanager
    async def slot(self, namespace: str) -> AsyncIterator[None]:
        await self._acquire(namespace)
        try:
            yield
        finally:
            self._release(namespace)

    def running(self, namespace: str) -> int:
        return self._running[namespace]

    def waiting(self, namespace: str) -> int:
        return sum(not f.done() for f in self._waiting.get(namespace, ()))

    async def _acquire(self, namespace: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(namespace, deque()).append(future)
        self._dispatch()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(namespace)  # the slot came with the cancellation: give it back
            raise

    def _release(self, namespace: str) -> None:
        self._busy -= 1
        self._running[namespace] -= 1
        if self._running[namespace] <= 0:
            del self._running[namespace]
            if namespace not in self._waiting:
                self._served.pop(namespace, None)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._busy < self.total:
            eligible = [ns for ns in self._waiting if self._running[ns] < self.ceiling]
            if not eligible:
                return
            chosen = min(
                eligible,
                key=lambda ns: (self._running[ns] >= self.per_namespace, self._served.get(ns, -1)),
            )
            queue = self._waiting[chosen]
            while queue and queue[0].done():  # cancelled while waiting
                queue.popleft()
            if queue:
                queue.popleft().set_result(None)
                self._busy += 1
                self._running[chosen] += 1
                self._tick += 1
                self._served[chosen] = self._tick
            if not queue:
                del self._waiting[chosen]
                if not self._running[chosen]:
                    self._served.pop(chosen, None)
