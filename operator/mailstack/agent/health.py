"""The HTTP health endpoint: ``/healthz`` (liveness) and ``/readyz`` (readiness).

Healthy means the daemon answers on its ports (an SMTP/LMTP banner, rspamd's milter socket), not
merely that a process exists. Liveness also fails when the daemon process has exited. The server
speaks just enough HTTP/1.0 for the kubelet's probes: the agent runs beside every daemon, so it
avoids http.server and its imports (a few MB per container).
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable


class HealthState:
    def __init__(self, probes: list[Callable[[], str | None]]) -> None:
        self.probes = probes
        self.running = False

    def check(self) -> list[str]:
        if not self.running:
            return ["the daemon is not running"]
        return [problem for probe in self.probes if (problem := probe()) is not None]


def _response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    head = (
        f"HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = socket.AF_INET


def serve_health(state: HealthState, port: int, host: str = "0.0.0.0") -> socketserver.BaseServer:
    class Handler(socketserver.StreamRequestHandler):
        timeout = 10

        def handle(self) -> None:
            try:
                request = self.rfile.readline(1024).decode("latin-1").split()
                while self.rfile.readline(1024).strip():
                    pass  # headers: not needed
            except (OSError, UnicodeError):
                return
            path = request[1] if len(request) >= 2 and request[0] in ("GET", "HEAD") else ""
            if path not in ("/healthz", "/readyz"):
                self.wfile.write(_response(404, b"not found\n"))
                return
            problems = state.check()
            body = ("ok\n" if not problems else "\n".join(problems) + "\n").encode()
            self.wfile.write(_response(200 if not problems else 503, body))

    server = _Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
