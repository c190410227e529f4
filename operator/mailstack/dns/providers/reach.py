"""How the operator reaches a DNS provider's host on a MailDomain's behalf: deadlines and guards.

Owns: ``Deadline`` (the end of one publication: every call's timeout is capped by what is left,
so no thread outlives it by more than a moment), ``HostGuard`` (the connect-time half of
``api.hosts``: a host is resolved as an absolute name, never through the resolver's search
list, and each address is checked against the public-address rule before it is connected to),
and ``opener``, the urllib opener that connects to the checked address itself while the Host
header and TLS's SNI and certificate check keep the name: what was checked is what is connected
to, so a DNS answer that changes between check and connect (rebinding) gains nothing.

Why absolute: the operator pod's resolver completes a name with the cluster's search domains
(``ndots:5``), so ``kubernetes.default`` would reach ``kubernetes.default.svc.cluster.local``.
A trailing dot turns that off in glibc's resolver and in dnspython alike.

A request also gets a total deadline, not only one per socket operation (which a server
dripping a byte every few seconds would never trip): ``_Watchdog`` shuts the socket down when
the request's time is up. The guarded opener uses no proxy from the environment: a proxy would
resolve the name itself, past the check.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import http.client
import ipaddress
import itertools
import socket
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailstack.api.hosts import address_problem, allowed
from mailstack.dns.errors import HostRefusedError, ProviderError, ProviderTimeoutError

# (name, port) -> the addresses the name resolves to; a test replaces it with a fake.
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(name: str, port: int) -> list[str]:
    """The addresses of ``name`` from the system resolver (``name`` absolute: no search list)."""
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def absolute(name: str) -> str:
    """``name`` with its trailing dot: resolvers apply no search domain to it."""
    return name if name.endswith(".") else name + "."


@dataclass(frozen=True)
class Deadline:
    """The monotonic time by which one publication (all its calls) must be done."""

    at: float
    seconds: float  # how long it was set for, for messages

    @staticmethod
    def after(seconds: float) -> Deadline:
        return Deadline(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def cap(self, timeout: float, host: str) -> float:
        """``timeout`` cut to what is left; ``ProviderTimeoutError`` when nothing is."""
        left = self.remaining()
        if left <= 0:
            raise ProviderTimeoutError(
                f"{host}: the DNS publication's deadline ({self.seconds:g} s) has passed"
            )
        return min(timeout, left)


def capped(deadline: Deadline | None, timeout: float, host: str) -> float:
    return deadline.cap(timeout, host) if deadline is not None else timeout


@dataclass(frozen=True)
class HostGuard:
    """Resolution and address check of the hosts a MailDomain names (``api.hosts``' rule).

    ``check``: whether addresses must be public (the platform's grants are enforced); without
    it names are still resolved as absolute ones. ``allowed``: the ``allowedHosts`` of the
    grants of the MailDomain's domain (names, ``*.`` suffixes, addresses, CIDR ranges).
    """

    check: bool = True
    allowed: tuple[str, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False, repr=False)

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host``; ``HostRefusedError`` if one is not public.

        Every address a name resolves to must pass: connecting to the first that works would
        otherwise let a name with one public and one internal address reach the internal one.
        """
        bare = host.strip("[]").rstrip(".")
        try:
            literal = ipaddress.ip_address(bare)
        except ValueError:
            literal = None
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                found = list(self.resolver(absolute(bare), port))
            except OSError as err:
                raise ProviderError(f"cannot resolve {bare}: {err}") from None
            if not found:
                raise ProviderError(f"cannot resolve {bare}: no address")
        if not self.check or allowed(bare.lower(), self.allowed):
            return found
        for address in found:
            problem = address_problem(ipaddress.ip_address(address.partition("%")[0]))
            if problem is not None and not allowed(address, self.allowed):
                via = "" if literal is not None else f" (it resolves to {address})"
                raise HostRefusedError(
                    f"{bare}{via} is {problem}; a MailDomainPolicy's allowedHosts may allow it"
                )
        return found


class _Watchdog:
    """Shuts sockets down at their deadline: one thread for every request in flight."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._heap: list[tuple[float, int, weakref.ref[socket.socket]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket, at: float) -> None:
        with self._wake:
            heapq.heappush(self._heap, (at, next(self._order), weakref.ref(sock)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dns-watchdog", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while True:
                if not self._heap:
                    self._wake.wait()
                    continue
                at, _, ref = self._heap[0]
                delay = at - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
                sock = ref()
                # The plain socket's shutdown, under TLS too: the reader gets EOF. A closed
                # socket raises (its number may belong to another socket by now: not touched).
                if sock is not None:
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)


WATCHDOG = _Watchdog()


@dataclass(frozen=True)
class Reach:
    """How one provider's connections are made: guard (None: as the system resolves), deadline
    (None: none beyond the timeout), and the total time one request may take."""

    guard: HostGuard | None = None
    deadline: Deadline | None = None

    def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """A connected socket to ``host`` (checked by the guard), shut down after ``timeout``."""
        timeout = capped(self.deadline, timeout, f"{host}:{port}")
        addresses = self.guard.addresses(host, port) if self.guard is not None else [host]
        last: OSError | None = None
        for address in addresses:
            try:
                sock = socket.create_connection((address, port), timeout)
            except TimeoutError:
                raise ProviderTimeoutError(
                    f"{host}:{port} did not accept a connection within {timeout:g} s"
                ) from None
            except OSError as err:
                last = err
                continue
            WATCHDOG.arm(sock, time.monotonic() + timeout)
            return sock
        raise last or OSError(f"no address for {host}")


class _Http(http.client.HTTPConnection):
    def __init__(self, *args: Any, reach: Reach, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reach = reach

    def connect(self) -> None:
        self.sock = self.reach.connect(self.host, self.port, _seconds(self.timeout))
        if self._tunnel_host:  # type: ignore[attr-defined]  # a proxy (unguarded openers only)
            self._tunnel()  # type: ignore[attr-defined]


class _Https(http.client.HTTPSConnection):
    def __init__(self, *args: Any, reach: Reach, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reach = reach

    def connect(self) -> None:
        self.sock = self.reach.connect(self.host, self.port, _seconds(self.timeout))
        name = self.host
        if self._tunnel_host:  # type: ignore[attr-defined]  # a proxy (unguarded openers only)
            self._tunnel()  # type: ignore[attr-defined]
            name = self._tunnel_host  # type: ignore[attr-defined]
        # SNI and the certificate check keep the name, whatever address was connected to.
        tls = self._context.wrap_socket(self.sock, server_hostname=name)  # type: ignore[attr-defined]
        WATCHDOG.arm(tls, time.monotonic() + _seconds(self.timeout))
        self.sock = tls


def _seconds(timeout: object) -> float:
    return float(timeout) if isinstance(timeout, int | float) else 30.0


class _HttpHandler(urllib.request.HTTPHandler):
    def __init__(self, reach: Reach) -> None:
        super().__init__()
        self.reach = reach

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_Http, reach=self.reach), req)


class _HttpsHandler(urllib.request.HTTPSHandler):
    def __init__(self, reach: Reach) -> None:
        super().__init__()
        self.reach = reach

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            functools.partial(_Https, reach=self.reach),
            req,
            context=self._context,  # type: ignore[attr-defined]
        )


class _RedirectsRefused(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx answer


def opener(reach: Reach) -> urllib.request.OpenerDirector:
    """An opener connecting through ``reach``; it follows no redirect (see ``http``).

    With a guard, no proxy of the environment is used (the proxy would resolve the name).
    """
    handlers: list[urllib.request.BaseHandler] = [
        _RedirectsRefused(),
        _HttpHandler(reach),
        _HttpsHandler(reach),
    ]
    if reach.guard is not None:
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)
