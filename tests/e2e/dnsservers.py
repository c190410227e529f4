"""Real DNS servers for the DNS e2e tests: BIND 9 (RFC 2136 + TSIG) and PowerDNS (HTTP API).

Each server runs in the foreground from a temporary directory, listens on 127.0.0.1 on free
ports, and is stopped by its PID (``stop``). ``require`` skips a test when the daemon is not
installed, unless ``MAILSTACK_REQUIRE_DAEMONS`` is set (CI installs them through
scripts/setup.sh, so there a missing daemon is a failure, not a skip).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.tsig
import dns.xfr
import dns.zone
import pytest

READER_KEY = "test-reader"
PDNS_SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")


def require(binary: str) -> str:
    """The daemon's path; skip (or fail under MAILSTACK_REQUIRE_DAEMONS) when it is missing."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        message = f"{binary} is not installed (Debian packages: see scripts/setup.sh)"
        if os.environ.get("MAILSTACK_REQUIRE_DAEMONS"):
            pytest.fail(message + "; MAILSTACK_REQUIRE_DAEMONS is set")
        pytest.skip(message)
    return path


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (DNS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait(check: Any, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    _stop(process)
    raise RuntimeError(f"{what} did not become ready:\n{log.read_text()[-3000:]}")


@dataclass
class Bind:
    """A running ``named -g`` serving one primary zone, updatable and transferable by a TSIG key."""

    root: Path
    zone: str
    port: int
    key_name: str
    algorithm: str
    secret: str  # base64
    reader_secret: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        _stop(self.process)

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        """The harness's own key: it may always transfer the zone (to look at it)."""
        key = dns.tsig.Key(READER_KEY, self.reader_secret, "hmac-sha256")
        return {key.name: key}

    def rrsets(self) -> dict[tuple[str, str], tuple[int, list[str]]]:
        """The whole zone by AXFR: (name, type) -> (TTL, rdata texts), names without the dot."""
        origin = dns.name.from_text(self.zone)
        zone = dns.zone.Zone(origin, relativize=False)
        query = dns.message.make_query(origin, dns.rdatatype.AXFR)
        query.use_tsig(self.keyring(), dns.name.from_text(READER_KEY), algorithm="hmac-sha256")
        dns.query.inbound_xfr("127.0.0.1", zone, query, port=self.port, timeout=5)
        result: dict[tuple[str, str], tuple[int, list[str]]] = {}
        for name, rdataset in zone.iterate_rdatasets():
            key = (name.to_text().rstrip("."), dns.rdatatype.to_text(rdataset.rdtype))
            result[key] = (rdataset.ttl, sorted(r.to_text() for r in rdataset))
        return result

    def serial(self) -> int:
        return int(self.rrsets()[(self.zone, "SOA")][1][0].split()[2])


def start_bind(
    root: Path,
    zone: str,
    records: str = "",
    key_name: str = "mailstack",
    algorithm: str = "hmac-sha256",
    allow_transfer: bool = True,
    other_zones: Mapping[str, str] | None = None,
) -> Bind:
    """Start BIND for ``zone`` with extra zone-file ``records`` (relative names allowed), and
    ``other_zones`` (zone -> records) served as they are (a reverse zone, another domain)."""
    named = require("named")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    secret = base64.b64encode(os.urandom(32)).decode()
    reader_secret = base64.b64encode(os.urandom(32)).decode()
    transfer = f'key "{READER_KEY}";' + (f' key "{key_name}";' if allow_transfer else "")
    (root / "named.conf").write_text(
        f"""
options {{
    directory "{root}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{root}/named.pid";
    session-keyfile "{root}/session.key";
    managed-keys-directory "{root}";
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{key_name}" {{ algorithm {algorithm}; secret "{secret}"; }};
key "{READER_KEY}" {{ algorithm hmac-sha256; secret "{reader_secret}"; }};
zone "{zone}" {{
    type primary;
    file "{root}/zone.db";
    allow-update {{ key "{key_name}"; }};
    allow-transfer {{ {transfer} }};
}};
"""
        + "".join(
            f'zone "{other}" {{ type primary; file "{root}/{other}.db"; }};\n'
            for other in other_zones or {}
        )
    )
    for other, other_records in (other_zones or {}).items():
        (root / f"{other}.db").write_text(
            f"$TTL 300\n$ORIGIN {other}.\n@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 "
            f"86400 300\n@ IN NS ns1.{zone}.\n{other_records}\n"
        )
    (root / "zone.db").write_text(
        f"""$TTL 300
$ORIGIN {zone}.
@   IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 300
@   IN NS  ns1.{zone}.
ns1 IN A   127.0.0.1
{records}
"""
    )
    log = root / "named.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [named, "-g", "-n", "1", "-c", str(root / "named.conf")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def ready() -> bool:
        query = dns.message.make_query(zone, "SOA")
        answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
        return bool(answer.answer)

    _wait(ready, process, log, "named")
    return Bind(root, zone, port, key_name, algorithm, secret, reader_secret, process)


@contextmanager
def bind_server(root: Path, zone: str, records: str = "", **kwargs: Any) -> Iterator[Bind]:
    server = start_bind(root, zone, records, **kwargs)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class PowerDns:
    """A running ``pdns_server`` (SQLite backend) with its HTTP API on 127.0.0.1."""

    root: Path
    dns_port: int
    api_port: int
    api_key: str
    process: subprocess.Popen[bytes]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def stop(self) -> None:
        _stop(self.process)

    def api(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.api_url + path,
            data=data,
            method=method,
            headers={"X-API-Key": self.api_key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None

    def create_zone(self, zone: str, rrsets: list[dict[str, Any]] | None = None) -> None:
        status, body = self.api(
            "POST",
            "/api/v1/servers/localhost/zones",
            {
                "name": zone + ".",
                "kind": "Native",
                "nameservers": [f"ns1.{zone}."],
                "rrsets": rrsets or [],
            },
        )
        assert status == 201, body

    def rrsets(self, zone: str) -> dict[tuple[str, str], tuple[int, list[str]]]:
        status, body = self.api("GET", f"/api/v1/servers/localhost/zones/{zone}.")
        assert status == 200, body
        return {
            (r["name"].rstrip("."), r["type"]): (
                r["ttl"],
                sorted(x["content"] for x in r["records"]),
            )
            for r in body["rrsets"]
        }


def start_powerdns(root: Path) -> PowerDns:
    pdns = require("pdns_server")
    if not PDNS_SCHEMA.exists():
        message = f"{PDNS_SCHEMA} is missing (Debian package pdns-backend-sqlite3)"
        if os.environ.get("MAILSTACK_REQUIRE_DAEMONS"):
            pytest.fail(message)
        pytest.skip(message)
    root.mkdir(parents=True, exist_ok=True)
    database = root / "pdns.sqlite3"
    with sqlite3.connect(database) as db:
        db.executescript(PDNS_SCHEMA.read_text())
    dns_port, api_port = free_port(), free_port()
    api_key = base64.b16encode(os.urandom(12)).decode()
    (root / "pdns.conf").write_text(
        f"""launch=gsqlite3
gsqlite3-database={database}
local-address=127.0.0.1
local-port={dns_port}
api=yes
api-key={api_key}
webserver=yes
webserver-address=127.0.0.1
webserver-port={api_port}
webserver-allow-from=127.0.0.0/8
security-poll-suffix=
socket-dir={root}
guardian=no
daemon=no
disable-syslog=yes
"""
    )
    log = root / "pdns.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [pdns, f"--config-dir={root}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = PowerDns(root, dns_port, api_port, api_key, process)
    _wait(lambda: server.api("GET", "/api/v1/servers/localhost")[0] == 200, process, log, "pdns")
    return server


@contextmanager
def powerdns_server(root: Path) -> Iterator[PowerDns]:
    server = start_powerdns(root)
    try:
        yield server
    finally:
        server.stop()
