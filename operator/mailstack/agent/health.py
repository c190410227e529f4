"""The HTTP health endpoint: ``/healthz`` (liveness) and ``/readyz`` (readiness).

Healthy means the daemon answers on its ports (an SMTP/LMTP banner, rspamd's ``pong``), not merely
that a process exists. Liveness also fails when the daemon process has exited.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HealthState:
    def __init__(self, probes: list[Callable[[], str | None]]) -> None:
        self.probes = probes
        self.running = False

    def check(self) -> list[str]:
        if not self.running:
            return ["the daemon is not running"]
        return [problem for probe in self.probes if (problem := probe()) is not None]


def serve_health(state: HealthState, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/healthz", "/readyz"):
                self.send_error(404)
                return
            problems = state.check()
            body = ("ok\n" if not problems else "\n".join(problems) + "\n").encode()
            self.send_response(200 if not problems else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the daemon's own log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
