"""The agents' probes while a stack is busy, not broken (outside check, 2026-12-07).

Liveness means "wedged, and a restart helps"; readiness "can serve". Neither may fail because
attackers keep a daemon busy: a failed liveness probe restarts the container and drops every
session, a failed readiness probe takes the whole MTA pod (25, 587 and 465) out of its Services.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mailstack.render.postfix import PORT_25_SMTPD_PROCESSES
from tests.mail.conftest import Stack
from tests.mail.messages import MTA, SENDER, token
from tests.mail.test_scanner import PARALLEL_SCRIPT
from tests.mail.test_submission import login

POSTFIX_HEALTH, RSPAMD_HEALTH = 9101, 9102


def health(stack: Stack, port: int, path: str) -> tuple[int, str]:
    address = json.loads((stack.state / "endpoints.json").read_text())["pods"][f"mail/{MTA}"]
    try:
        with urllib.request.urlopen(f"http://{address}:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return 0, str(err)


def release(holder: subprocess.Popen[str]) -> None:
    """End a holding script: it lets go when its stdin closes."""
    if holder.stdin is not None:
        holder.stdin.close()
    try:
        holder.wait(timeout=60)
    except subprocess.TimeoutExpired:
        holder.kill()
        holder.wait()


# Holds ``count`` sessions on port 25 from one local address, each in DATA and sending a header
# line every 4 s. Prints how many reached DATA once each session is in DATA or given up (at most
# 45 s: a busy scanner makes 200 sessions slow to start), then holds them until stdin closes.
# The address is first a sender postscreen knows: one session waits for the whole greeting, so
# that the held ones go straight to smtpd (a burst of new clients would fill postscreen's 100
# places for screening first: "all screening ports busy").
HOLD_SCRIPT = r"""
import json, socket, sys, threading, time
host, port, source, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
known = socket.create_connection((host, port), timeout=30, source_address=(source, 0))
greeting = known.makefile("rb")
while greeting.readline()[3:4] == b"-":
    pass
known.sendall(b"QUIT\r\n")
known.close()
held, settled, stop = [], [], threading.Event()
def hold():
    try:
        sock = socket.create_connection((host, port), timeout=30, source_address=(source, 0))
        f = sock.makefile("rb")
        def reply():
            while True:
                line = f.readline()
                if not line or line[3:4] != b"-":
                    return line
        if not reply().startswith(b"220"):
            return
        for cmd in (b"EHLO sink.example.net", b"MAIL FROM:<someone@example.net>",
                    b"RCPT TO:<alice@example.com>", b"DATA"):
            sock.sendall(cmd + b"\r\n")
            if reply()[:1] not in (b"2", b"3"):
                return
        held.append(sock)
    except OSError:
        return
    finally:
        settled.append(1)
    try:
        while not stop.is_set():
            sock.sendall(b"X-Slow: x\r\n")
            stop.wait(4)
    except OSError:
        return
threads = [threading.Thread(target=hold, daemon=True) for _ in range(count)]
for t in threads: t.start()
deadline = time.monotonic() + 45
while len(settled) < count and time.monotonic() < deadline:
    time.sleep(0.5)
print(json.dumps(len(held)), flush=True)
sys.stdin.read()
stop.set()
"""
# Internet addresses, 17 sessions each (under smtpConnections, 20, per address): enough to take
# every smtpd of port 25.
SOURCES = PORT_25_SMTPD_PROCESSES // 17 + 1


def test_every_smtpd_held_from_a_few_addresses_does_not_fail_liveness(stack: Stack) -> None:
    """Port 25's process limit (200) reached: busy, not dead. /healthz and /readyz
    stay 200 (they greet on the loopback probe listener), and submission goes on."""
    base = f"10.101.{secrets.randbelow(250)}"
    sources = [f"{base}.{10 + i}" for i in range(SOURCES)]
    netns, veth = stack.internet.netns, stack.internet.veth
    holders: list[subprocess.Popen[str]] = []
    try:
        for source in sources:
            add = ["ip", "-n", netns, "addr", "add", f"{source}/32", "dev", "eth0"]
            subprocess.run(add, check=True)
            subprocess.run(["ip", "route", "add", f"{source}/32", "dev", veth], check=True)
        for source in sources:
            script = (HOLD_SCRIPT, stack.internet.host_ip, str(stack.port("smtp")), source, "17")
            holders.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", netns, sys.executable, "-c", *script],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        held = [int(h.stdout.readline() or 0) for h in holders if h.stdout is not None]
        time.sleep(2)
        alive = health(stack, POSTFIX_HEALTH, "/healthz")
        ready = health(stack, POSTFIX_HEALTH, "/readyz")
        with login(stack, "submission", "bob"):
            pass
        print(f"\nheld {held}, healthz {alive}, readyz {ready}")
        assert sum(held) >= PORT_25_SMTPD_PROCESSES - 5, held  # port 25 is indeed full
        assert alive[0] == 200, alive
        assert ready[0] == 200, ready
    finally:
        for holder in holders:
            release(holder)
        for source in sources:
            subprocess.run(["ip", "route", "del", f"{source}/32", "dev", veth], check=False)
            delete = ["ip", "-n", netns, "addr", "del", f"{source}/32", "dev", "eth0"]
            subprocess.run(delete, check=False, capture_output=True)


HEAVY = 12  # at once from one address (smtpConnections is 20)


def test_a_busy_scanner_is_not_reported_dead(stack: Stack, tmp_path: Path) -> None:
    """12 messages of 9 MB on one line (~2.4 s of a proxy each) at once keep both proxies busy:
    the probe scan waits behind them, late but answered, so rspamd's /healthz and /readyz stay
    200 throughout."""
    heavy = tmp_path / "heavy.eml"
    head = f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {token('heavy')}\r\n\r\n"
    heavy.write_bytes(head.encode() + b"a " * 4_500_000 + b"\r\n")
    sender = subprocess.Popen(
        [
            *("ip", "netns", "exec", stack.internet.netns, sys.executable, "-c"),
            *(PARALLEL_SCRIPT, stack.internet.host_ip, str(stack.port("smtp")), SENDER),
            *("alice@example.com", str(HEAVY), str(heavy)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list[tuple[float, int, int]] = []
    start = time.monotonic()
    try:
        while sender.poll() is None:
            alive = health(stack, RSPAMD_HEALTH, "/healthz")[0]
            ready = health(stack, RSPAMD_HEALTH, "/readyz")[0]
            seen.append((round(time.monotonic() - start, 1), alive, ready))
            time.sleep(1)
    finally:
        out, _ = sender.communicate(timeout=300)
    print(f"\nsent {out.strip()}\nprobes (t, healthz, readyz): {seen}")
    assert len(seen) >= 3, seen  # the scanner was busy while we looked
    assert [p for p in seen if p[1:] != (200, 200)] == [], seen
