"""Owns the background tasks of the operator's DNS lookups (the proofs of control and the
outbound identity): at most one task per key (a MailDomain's uid), run with a slot of its
namespace (``per_namespace``) and of the operator (``concurrent``), so that one tenant's lookups
of names whose servers never answer hold neither another tenant's nor a reconcile; all are
cancelled together when the operator stops. A task waiting for a slot holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LookupTasks:
    per_namespace: int
    concurrent: int
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _namespaces: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None

    def idle(self, key: str) -> bool:
        """Whether no lookup for ``key`` is in flight."""
        running = self._tasks.get(key)
        return running is None or running.done()

    def start(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        self._tasks[key] = asyncio.create_task(work)

    @contextlib.asynccontextmanager
    async def slot(self, namespace: str) -> AsyncIterator[None]:
        """A slot of ``namespace`` and of the operator, for one lookup."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrent)
        mine = self._namespaces.setdefault(namespace, asyncio.Semaphore(self.per_namespace))
        async with mine, self._slots:
            yield

    async def settled(self) -> None:
        """Wait for the lookups in flight (tests)."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def drop(self, key: str) -> None:
        self._tasks.pop(key, None)

    def close(self) -> None:
        """Stop the lookups in flight (the operator stops)."""
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
