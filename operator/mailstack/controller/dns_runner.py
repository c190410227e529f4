"""Where the DNS provider calls of the operator run: off the event loop, bounded, with deadlines.

Owns: ``DnsTimings`` (the operator's DNS time settings), ``provider_endpoint`` (what a
MailDomain's calls are bounded by, besides its namespace) and ``DnsRunner``, which runs one
publication (or removal) of one MailDomain in a thread of its own pool, so that a provider that
never answers delays neither the event loop nor kopf's default executor, and no other tenant:

- every provider call has ``call_timeout`` seconds (connecting and the whole answer), and the
  whole publication ``deadline`` seconds (``dns.providers.reach.Deadline``): each call's timeout
  is cut to what is left, so the thread ends by the deadline on its own;
- at most one publication is in flight per namespace and endpoint a MailDomain names (an
  rfc2136 server, a PowerDNS API, by scheme, host and port: what a tenant may point at a
  blackhole) and ``per_namespace`` per namespace, so one tenant's unanswering hosts hold at most
  that many of the pool's ``workers``. The endpoint's slot is the namespace's own: two tenants
  naming the same endpoint (a shared PowerDNS, or a blackhole on another tenant's host) never
  wait for each other's calls; the pool's ``workers`` is the global bound. A slot is given back
  when the thread ends, not when the waiting coroutine gives up: a thread that hangs past the
  deadline still counts;
- a publication's pass waits ``inline_wait`` seconds for the result; a slower publication
  finishes in the background and wakes its MailDomain (``dns_publisher.DnsPublisher``), so a
  slow provider holds one of the operator's parallel reconciles no longer than that. A
  withdrawal's removal never holds the pass at all.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from mailstack.api.dns_models import PowerDnsSettings, Rfc2136Settings
from mailstack.api.hosts import url_host
from mailstack.api.models import MailDomain
from mailstack.dns.errors import ProviderTimeoutError
from mailstack.dns.providers.reach import Deadline

T = TypeVar("T")
GRACE = 2.0  # seconds past the deadline before a thread that should have ended is given up
DEFAULT_PORTS = {"http": 80, "https": 443}


def provider_endpoint(domain: MailDomain) -> str | None:
    """The endpoint the MailDomain names for its provider, with its port (the effective one when
    the URL has none): ``host:port`` for rfc2136, ``scheme://host:port`` for PowerDNS. None: the
    operator's own endpoints. A blackhole on another port of a host is another endpoint."""
    settings = domain.dns.provider.settings
    if isinstance(settings, Rfc2136Settings):
        return f"{settings.server.lower()}:{settings.port}"
    if isinstance(settings, PowerDnsSettings):
        parts = urllib.parse.urlsplit(settings.api_url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port or DEFAULT_PORTS.get(scheme, 0)
        except ValueError:  # parse_maildomain refuses such a URL; no slot is worth a crash
            port = 0
        return f"{scheme}://{url_host(settings.api_url).lower()}:{port}"
    return None


@dataclass(frozen=True)
class DnsTimings:
    call_timeout: float = 10.0  # one provider call: connect and the whole answer
    deadline: float = 60.0  # one publication (or removal) of one MailDomain, all calls
    inline_wait: float = 2.0  # how long a reconcile pass waits before it goes on without
    workers: int = 8  # threads for provider calls, apart from kopf's
    per_namespace: int = 2  # publications in flight per namespace
    backoff: float = 30.0  # first retry after a failure; doubles each time
    backoff_max: float = 300.0

    def retry_delay(self, failures: int) -> float:
        """The wait before the next try after ``failures`` failures in a row (≥ 1)."""
        return float(min(self.backoff * 2 ** max(0, failures - 1), self.backoff_max))


class DnsRunner:
    """Runs blocking provider work in its own bounded pool, one deadline per run."""

    def __init__(self, timings: DnsTimings | None = None) -> None:
        self.timings = timings or DnsTimings()
        self._pool = ThreadPoolExecutor(self.timings.workers, thread_name_prefix="dns")
        self._endpoints: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._namespaces: dict[str, asyncio.Semaphore] = {}

    def _slots(self, endpoint: str | None, namespace: str) -> list[asyncio.Semaphore]:
        slots = [
            self._namespaces.setdefault(namespace, asyncio.Semaphore(self.timings.per_namespace))
        ]
        if endpoint is not None:
            key = (namespace, endpoint)
            slots.insert(0, self._endpoints.setdefault(key, asyncio.Semaphore(1)))
        return slots

    async def run(self, endpoint: str | None, namespace: str, work: Callable[[Deadline], T]) -> T:
        """``work(deadline)`` in a thread; ``ProviderTimeoutError`` when the deadline passes.

        ``endpoint``: the endpoint the MailDomain names (``dns_publisher.provider_endpoint``;
        None for the operator's own endpoints, Cloudflare's and Route 53's, which tenants cannot
        point elsewhere).
        """
        deadline = Deadline.after(self.timings.deadline)
        where = endpoint or "the DNS provider"
        held: list[asyncio.Semaphore] = []
        try:
            for slot in self._slots(endpoint, namespace):
                await asyncio.wait_for(slot.acquire(), max(0.0, deadline.remaining()))
                held.append(slot)
        except TimeoutError:
            for slot in held:
                slot.release()
            raise ProviderTimeoutError(
                f"{where}: an earlier call of this namespace (to this endpoint) has not ended "
                f"within the deadline ({deadline.seconds:g} s)"
            ) from None
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, work, deadline)

        def finished(done: asyncio.Future[T] | Future[T]) -> None:
            for slot in held:
                slot.release()
            if not done.cancelled():
                done.exception()  # retrieved: a run given up must not log "never retrieved"

        future.add_done_callback(finished)
        try:
            return await asyncio.wait_for(asyncio.shield(future), deadline.remaining() + GRACE)
        except TimeoutError:
            raise ProviderTimeoutError(
                f"{where} did not answer within the deadline ({deadline.seconds:g} s)"
            ) from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
