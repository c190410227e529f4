"""A fake of the Cloudflare v4 DNS API for the cloudflare provider tests.

The fake is an HTTP server that keeps to the documented behaviour the provider relies on: Bearer
token auth (403, code 10000), the ``{success, errors[{code, message}], messages, result,
result_info}`` envelope, pagination (``per_page`` 5..5000, ``total_pages``), MX ``priority`` and
SRV/CAA ``data`` fields, record validation (code 9xxx), identical-record refusal (81058), unknown
record ids (81044), and rate limiting (HTTP 429 with ``Retry-After``, code 971).
"""

from __future__ import annotations

import ipaddress
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.local_http import serving

TOKEN = "cf-test-token"
ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"


class FakeCloudflare:
    """The fake API's state (one zone, example.com) and what it was asked."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.pages_served: set[int] = set()
        self.throttle_every = 0  # every n-th request is answered 429 once
        self.throttled = 0
        self.fail_next_with: int | None = None
        self.lock = threading.Lock()
        for name, rtype, content in (
            ("example.com", "TXT", "google-site-verification=abc123"),
            ("www.example.com", "A", "192.0.2.80"),
            ("mail.example.com", "TXT", "asset tag 42"),
            ("example.com", "NS", "ns1.cloudflare.example"),
        ):
            self.add({"type": rtype, "name": name, "content": content, "ttl": 1})

    def add(self, body: dict[str, Any]) -> dict[str, Any]:
        record = {"id": uuid.uuid4().hex, "zone_id": ZONE_ID, "zone_name": "example.com", **body}
        self.records[record["id"]] = record
        return record

    def snapshot(self) -> list[tuple[str, str, str, int]]:
        return sorted(
            (r["name"], r["type"], r["content"], r.get("priority", -1))
            for r in self.records.values()
        )


def _error(code: int, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"code": code, "message": message}], "messages": []}


def validate_record(body: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the record as stored, None) or (None, an error envelope)."""
    rtype, name = body.get("type"), str(body.get("name", ""))
    if rtype not in ("A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "NS"):
        return None, _error(9005, f"Invalid or unsupported DNS record type '{rtype}'")
    if not (name == "example.com" or name.endswith(".example.com")):
        return None, _error(9007, "Record name does not belong to the zone")
    ttl = body.get("ttl", 1)
    if not (ttl == 1 or 60 <= ttl <= 86400):
        return None, _error(9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1")
    record = {"type": rtype, "name": name, "ttl": ttl}
    content = body.get("content")
    data = body.get("data")
    if rtype in ("A", "AAAA"):
        try:
            ipaddress.IPv4Address(content) if rtype == "A" else ipaddress.IPv6Address(content)
        except ValueError:
            return None, _error(9005, f"Content for {rtype} record is invalid.")
        record.update(content=content, proxied=bool(body.get("proxied", False)))
    elif rtype == "MX":
        if not isinstance(body.get("priority"), int) or not content or content.endswith("."):
            return None, _error(9100, "MX records require a priority and a target host name")
        record.update(content=content, priority=body["priority"])
    elif rtype == "SRV":
        if not isinstance(data, dict) or set(data) != {"priority", "weight", "port", "target"}:
            return None, _error(9101, "SRV records require data.priority/weight/port/target")
        record.update(
            data=data,
            priority=data["priority"],
            content=f"{data['weight']} {data['port']} {data['target']}",
        )
    elif rtype == "CAA":
        if not isinstance(data, dict) or set(data) != {"flags", "tag", "value"}:
            return None, _error(9102, "CAA records require data.flags/tag/value")
        record.update(data=data, content=f'{data["flags"]} {data["tag"]} "{data["value"]}"')
    elif rtype == "TXT":
        if not isinstance(content, str) or len(content) > 2048:
            return None, _error(9100, "Content for TXT record is invalid (at most 2048 characters)")
        record["content"] = content
    else:
        record["content"] = content
    return record, None


def _handler(fake: FakeCloudflare) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def send(
            self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            body.setdefault("messages", [])
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self, method: str) -> None:
            url = urlsplit(self.path)
            with fake.lock:
                fake.requests.append((method, url.path))
                count = len(fake.requests)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.send(403, _error(10000, "Authentication error"))
                if fake.throttle_every and count % fake.throttle_every == 0:
                    fake.throttled += 1
                    return self.send(
                        429,
                        _error(971, "Please wait and consider throttling your request speed"),
                        {"Retry-After": "0"},
                    )
                if fake.fail_next_with is not None:
                    status, fake.fail_next_with = fake.fail_next_with, None
                    return self.send(status, _error(10013, "Internal error"))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                self.route(method, url.path, parse_qs(url.query), body)
            return None

        def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
            parts = path.strip("/").split("/")
            if parts == ["client", "v4", "zones"] and method == "GET":
                name = query.get("name", [""])[0]
                found = [{"id": ZONE_ID, "name": "example.com"}] if name == "example.com" else []
                info = {"page": 1, "per_page": 20, "count": len(found), "total_count": len(found)}
                return self.send(
                    200, {"success": True, "errors": [], "result": found, "result_info": info}
                )
            if parts[:4] != ["client", "v4", "zones", ZONE_ID] or parts[4:5] != ["dns_records"]:
                return self.send(404, _error(7003, "Could not route to " + path))
            record_id = parts[5] if len(parts) > 5 else None
            if method == "GET" and record_id is None:
                per_page = int(query.get("per_page", ["100"])[0])
                page = int(query.get("page", ["1"])[0])
                if not 5 <= per_page <= 5000 or page < 1:
                    return self.send(400, _error(1004, "per_page must be between 5 and 5000"))
                ordered = sorted(
                    fake.records.values(), key=lambda r: (r["name"], r["type"], r["id"])
                )
                chunk = ordered[(page - 1) * per_page : page * per_page]
                fake.pages_served.add(page)
                total_pages = max(1, -(-len(ordered) // per_page))
                info = {
                    "page": page,
                    "per_page": per_page,
                    "count": len(chunk),
                    "total_count": len(ordered),
                    "total_pages": total_pages,
                }
                return self.send(
                    200, {"success": True, "errors": [], "result": chunk, "result_info": info}
                )
            if method == "POST" and record_id is None:
                record, error = validate_record(body or {})
                if error:
                    return self.send(400, error)
                assert record is not None
                for other in fake.records.values():
                    same = {k: other.get(k) for k in ("type", "name", "content", "priority")}
                    if same == {k: record.get(k) for k in same}:
                        return self.send(400, _error(81058, "An identical record already exists."))
                return self.send(200, {"success": True, "errors": [], "result": fake.add(record)})
            if record_id not in fake.records:
                return self.send(404, _error(81044, "Record does not exist."))
            if method == "PUT":
                record, error = validate_record(body or {})
                if error:
                    return self.send(400, error)
                assert record is not None
                fake.records[record_id] = {"id": record_id, "zone_id": ZONE_ID, **record}
                return self.send(
                    200, {"success": True, "errors": [], "result": fake.records[record_id]}
                )
            if method == "DELETE":
                del fake.records[record_id]
                return self.send(200, {"success": True, "errors": [], "result": {"id": record_id}})
            return self.send(405, _error(10405, "Method not allowed"))

        def do_GET(self) -> None:
            self.handle_any("GET")

        def do_POST(self) -> None:
            self.handle_any("POST")

        def do_PUT(self) -> None:
            self.handle_any("PUT")

        def do_DELETE(self) -> None:
            self.handle_any("DELETE")

    return Handler


@contextmanager
def cloudflare_api(fake: FakeCloudflare) -> Iterator[str]:
    """``fake`` served on 127.0.0.1 while the block runs; the API's base URL."""
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))) as url:
        yield f"{url}/client/v4"
