"""The provider APIs' HTTP client follows no redirect: the API key never leaves for another host."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mailstack.dns.errors import ProviderError
from mailstack.dns.providers.http import JsonApi


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]]
    location = ""

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("X-API-Key")))
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


def _server(location: str = "") -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen, "location": location})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def elsewhere() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    yield from _server()


def test_a_redirect_is_refused_and_the_key_stays_put(
    elsewhere: tuple[str, list[tuple[str, str | None]]],
) -> None:
    target, target_seen = elsewhere
    for url, seen in _server(location=f"{target}/latest/meta-data/"):
        api = JsonApi(url, {"X-API-Key": "secret"}, "PowerDNS", lambda _: "", attempts=1)
        with pytest.raises(ProviderError, match=r"HTTP 302, a redirect to .* not followed"):
            api.call("GET", "/api/v1/servers")
        assert seen == [("/api/v1/servers", "secret")]
    assert target_seen == []  # never asked, so never given the key
