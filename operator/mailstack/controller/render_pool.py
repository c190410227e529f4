"""Owns where a pass's render runs: a small pool of threads, off the operator's event loop.

``plan.render_domain`` is pure but CPU-heavy on a MailDomain's first pass: a DKIM key, a CA,
the server and the two pinned client certificates (RSA-2048 keys, about 0.3 s each here) and a
bcrypt hash per plain password. On the event loop, nothing else ran meanwhile: not another
tenant's pass, not the informers, not kopf (12 new MailDomains of one tenant delayed another's
first pass by 12-16 s, with 4 "parallel" reconciles). OpenSSL's key generation and bcrypt
release the GIL, so threads are enough for the loop to keep going and for two renders to use
two cores; parsing and the templates still share the GIL, which is short work. The pool has one
thread per reconcile slot (``FairSlots`` decides which passes hold them, so the namespaces share
the pool as they share the slots). ``render_domain`` reads only its inputs: immutable models and
documents that the informers replace, never change in place.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from mailstack.controller import plan


class RenderPool:
    """Runs ``plan.render_domain`` in at most ``workers`` threads."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None

    async def render(self, inputs: plan.DomainInputs) -> plan.Rendered:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="mailstack-render")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, plan.render_domain, inputs
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
