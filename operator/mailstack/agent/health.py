"""The HTTP health endpoint: ``/healthz`` (liveness) and ``/readyz`` (readiness).

Healthy means the daemon answers on its ports (an SMTP/LMTP banner, rspamd's milter socket), not
merely that a process exists. Liveness also fails when the daemon process has exited. Readiness
adds what the daemon needs from other pods (``HealthState.readiness``). The server
speaks just enough HTTP/1.0 for the kubelet's probes, on a bare socket with one low-level thread
per request: the agent runs beside every daemon, so it avoids http.server, socketserver and
threading and their imports (a few MB per container). The socket is ``_socket``'s, the C type
under ``socket.socket``: the ``socket`` module imports enum, selectors and collections, which
cost every agent process about 1 MB of memory for nothing the agent uses.
"""

from __future__ import annotations

import _socket
import _thread

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# A request that has not sent its request line and headers by then is dropped.
REQUEST_TIMEOUT = 10.0
# Longer request heads are cut there: a probe's is a few dozen bytes.
REQUEST_MAX = 8192


class HealthState:
    """What the endpoints answer: ``probes`` decide both; ``readiness`` (what the daemon needs
    from elsewhere, e.g. ``agent.next_hops``) only ``/readyz``, so that another pod's outage
    takes this one out of its Services but never gets it restarted."""

    def __init__(
        self,
        probes: list[Callable[[], str | None]],
        readiness: list[Callable[[], str | None]] | None = None,
        pages: dict[str, Callable[[], str]] | None = None,
    ) -> None:
        self.probes = probes
        self.readiness = readiness or []
        # More paths, each answered 200 with the text its function returns (the tripwire's).
        self.pages = pages or {}
        self.running = False

    def check(self, ready: bool = False) -> list[str]:
        if not self.running:
            return ["the daemon is not running"]
        probes = [*self.probes, *self.readiness] if ready else self.probes
        return [problem for probe in probes if (problem := probe()) is not None]


def _response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    head = (
        f"HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _read_head(conn: _socket.socket) -> bytes:
    """The request line and headers (up to the blank line), at most REQUEST_MAX bytes."""
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < REQUEST_MAX:
        chunk = conn.recv(1024)
        if not chunk:
            break
        head += chunk
    return head


def _answer(state: HealthState, conn: _socket.socket) -> None:
    try:
        conn.settimeout(REQUEST_TIMEOUT)
        words = _read_head(conn).split(b"\n", 1)[0].decode("latin-1").split()
        path = words[1] if len(words) >= 2 and words[0] in ("GET", "HEAD") else ""
        if path in state.pages:
            conn.sendall(_response(200, state.pages[path]().encode()))
            return
        if path not in ("/healthz", "/readyz"):
            conn.sendall(_response(404, b"not found\n"))
            return
        problems = state.check(ready=path == "/readyz")
        body = ("ok\n" if not problems else "\n".join(problems) + "\n").encode()
        conn.sendall(_response(200 if not problems else 503, body))
    except OSError:  # the client went away or timed out (latin-1 decodes any bytes)
        return
    finally:
        conn.close()


def inet_listener(host: str, port: int, backlog: int) -> _socket.socket:
    """An IPv4 listener on ``host`` (0: a free port)."""
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(backlog)
    return listener


class Acceptor:
    """Accepts connections on ``listener`` until ``shutdown``; each is handed to ``handle`` in
    its own thread. The health server's, and the tripwire's policy service's."""

    def __init__(self, listener: _socket.socket, handle: Callable[[_socket.socket], None]) -> None:
        self.listener = listener
        self.handle = handle
        self.closed = False

    def serve_forever(self) -> None:
        while not self.closed:
            try:
                # The C method that socket.socket.accept wraps (typeshed does not list it).
                fd, _ = self.listener._accept()  # type: ignore[attr-defined]
            except OSError:
                if self.closed:
                    return
                continue  # e.g. the client went away before the accept
            _thread.start_new_thread(self.handle, (_socket.socket(fileno=fd),))

    def shutdown(self) -> None:
        self.closed = True
        # Wakes the accept (a plain close does not interrupt it on Linux). Not contextlib's
        # suppress: contextlib is one more import in every agent.
        try:  # noqa: SIM105
            self.listener.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


class HealthServer(Acceptor):
    """Accepts probe requests on a port until ``shutdown``; each is answered in its own thread
    (a probe may take up to a few seconds, and liveness and readiness come together)."""

    def __init__(self, state: HealthState, port: int, host: str = "0.0.0.0") -> None:
        self.state = state
        listener = inet_listener(host, port, 16)
        self.port = listener.getsockname()[1]
        super().__init__(listener, lambda conn: _answer(state, conn))


def serve_health(state: HealthState, port: int, host: str = "0.0.0.0") -> HealthServer:
    server = HealthServer(state, port, host)
    _thread.start_new_thread(server.serve_forever, ())
    return server
