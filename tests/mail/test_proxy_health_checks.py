"""Load balancers' health checks on the PROXY ports (#14, the outside check's F1): HAProxy's
``check`` with ``send-proxy-v2`` connects, sends a PROXY v2 "LOCAL" header and resets the
connection. Postfix 3.7's smtpd on 587 and 465 exited on that (fatal), and its master then
paused the whole service for 60 s: every login waited up to a minute (``service_throttle_time``
in main.cf bounded it to about a second). 587 and 465 are Dovecot's now, which takes such a
probe without a fault, and port 25's postscreen drops it; the recipe of docs/edge.md,
``check port <the same port>``, sends no header at all, which no daemon minds.

Real HAProxy (Debian's) in front of the pods of a ProxyProtocol stack, beside ``up``'s own.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from mailstack.local.haproxy import haproxy_config
from tests.mail.conftest import Stack
from tests.mail.messages import MDA, MTA
from tests.mail.test_proxy_protocol import pod_address, proxied  # noqa: F401

# The SMTP ports and the pod serving each: 25 Postfix's, 587 and 465 Dovecot's.
SMTP_PORTS = {25: MTA, 587: MDA, 465: MDA}
CHECK_INTERVAL = "300ms"  # for the recipe's checks; the default check runs every 2 s


def _free_ports(count: int) -> list[int]:
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@contextlib.contextmanager
def checking_haproxy(stack: Stack, tmp_path: Path, check: str) -> Iterator[dict[int, int]]:
    """An HAProxy with ``up``'s configuration and ``check`` (``{port}``: the server's port) on
    every server line, in front of the pods' SMTP ports; yields {pod port: HAProxy's port on
    127.0.0.1}."""
    addresses = {port: pod_address(stack, pod) for port, pod in SMTP_PORTS.items()}
    published = dict(zip(SMTP_PORTS, _free_ports(len(SMTP_PORTS)), strict=True))
    # As up's own HAProxy does, announce this host's loopback clients as its bridge address.
    (host_address,) = re.findall(
        r"set-src ipv4\(([^)]+)\)", (stack.state / "haproxy.cfg").read_text()
    )[:1]
    forwards = [(published[p], addresses[p], p) for p in SMTP_PORTS]
    config = haproxy_config(["127.0.0.1"], forwards, host_address)
    for port in SMTP_PORTS:
        server = f"{addresses[port]}:{port} send-proxy-v2"
        config = config.replace(server, f"{server} {check.format(port=port)}")
    assert config.count(" check") == len(SMTP_PORTS)
    (tmp_path / "haproxy.cfg").write_text(config)
    with open(tmp_path / "haproxy.log", "wb") as log:
        process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(3)  # ten checks per port
        assert process.poll() is None, (tmp_path / "haproxy.log").read_text()
        yield published
    finally:
        process.terminate()
        process.wait(timeout=10)
    # The checks passed all along (a server marked DOWN would hide the probes' effect).
    assert "is DOWN" not in (tmp_path / "haproxy.log").read_text()


def _banner_wait(port: int, implicit_tls: bool) -> float:
    """Seconds from connecting to HAProxy's ``port`` to the 220 (after the TLS handshake on
    465)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        if implicit_tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            with context.wrap_socket(conn) as tls:
                assert tls.recv(512).startswith(b"220")
        else:
            assert conn.recv(512).startswith(b"220")
    return time.monotonic() - start


def _longest_waits(published: dict[int, int], seconds: float) -> dict[int, float]:
    """The longest wait for the banner on each port, connecting every 0.3 s for ``seconds``."""
    waits = {port: 0.0 for port in published}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for port, listen in published.items():
            waits[port] = max(waits[port], _banner_wait(listen, implicit_tls=port == 465))
        time.sleep(0.3)
    return waits


def _quiet_log(stack: Stack) -> int:
    """The length of the postfix log once no smtpd has exited for 3 s (probes of an earlier
    HAProxy may wait in a throttled service's queue), to count the lines after it."""
    start = time.monotonic()
    lines = len(stack.log(MTA, "postfix").splitlines())
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 3:
        assert time.monotonic() - start < 90, "smtpd kept exiting"
        time.sleep(0.5)
        if _fatal_lines(stack, lines):
            lines = len(stack.log(MTA, "postfix").splitlines())
            quiet_since = time.monotonic()
    return lines


def _fatal_lines(stack: Stack, since: int) -> list[str]:
    lines = stack.log(MTA, "postfix").splitlines()[since:]
    return [line for line in lines if "fatal:" in line]


def test_proxy_v2_health_checks_do_not_stall_the_submission_ports(
    proxied: Stack,  # noqa: F811
    tmp_path: Path,
) -> None:
    """HAProxy's default check with send-proxy-v2 (LOCAL, then a reset, every 2 s): clients of
    25, 587 and 465 still get the banner within 2 s (up to 60 s before: the master's throttle),
    and no smtpd exits (587 and 465 are Dovecot's; postscreen drops the probe on 25)."""
    before = _quiet_log(proxied)
    with checking_haproxy(proxied, tmp_path, "check") as published:
        waits = _longest_waits(published, seconds=12)
    assert max(waits.values()) < 2, waits
    assert not _fatal_lines(proxied, before)


def test_the_recipe_checks_without_a_proxy_header(proxied: Stack, tmp_path: Path) -> None:  # noqa: F811
    """docs/edge.md's recipe, ``check port <the server's port>``: HAProxy checks with a plain
    TCP handshake and no PROXY header (it resets before Postfix accepts: Postfix sees nothing),
    no smtpd exits, and the checks pass."""
    before = _quiet_log(proxied)
    check = f"check port {{port}} inter {CHECK_INTERVAL}"
    with checking_haproxy(proxied, tmp_path, check) as published:
        waits = _longest_waits(published, seconds=4)
    assert max(waits.values()) < 2, waits
    assert not _fatal_lines(proxied, before)
