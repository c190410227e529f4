"""Owns a loopback HTTP server that records each GET (path and headers) and answers ``{}``, or
a redirect to ``location``: what the provider HTTP clients' tests send their requests to."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.fakes.local_http import serving


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]  # names in lower case


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[Seen]
    location = ""

    def do_GET(self) -> None:
        self.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.location:
            self.send_response(302)
            self.send_header("Location", self.location)
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def recording(location: str = "") -> Iterator[tuple[str, list[Seen]]]:
    """The server's base URL and the requests it saw, for the length of the block."""
    seen: list[Seen] = []
    handler = type("Handler", (_Recorder,), {"seen": seen, "location": location})
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield url, seen
