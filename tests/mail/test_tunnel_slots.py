"""The MDA's tunnel port (LMTP) against connections that never finish their TLS handshake (outside
checks, 2026-12-07): a TLS record header alone, or a whole ClientHello and then silence, from a
client the NetworkPolicy admits, or any pod where it is not enforced.
The openers run in the MTA's own network namespace (the only one the local run's policy lets
through), so no per-address limit could tell them from Postfix: the tunnel's hello gate must.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.mail.conftest import Stack
from tests.mail.messages import MDA, text_message, token
from tests.mail.test_probes_under_load import release

# ``count`` openers on host:port, each sending a TLS record header (a 512-byte ClientHello
# announced) and nothing more, reconnecting when dropped. Prints "holding", runs until stdin
# closes.
OPENERS_SCRIPT = r"""
import socket, sys, threading, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stop = threading.Event()
def hold():
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=30)
            sock.sendall(b"\x16\x03\x01\x02\x00")
            sock.settimeout(30)
            sock.recv(10)
            sock.close()
        except OSError:
            time.sleep(0.2)
for _ in range(count):
    threading.Thread(target=hold, daemon=True).start()
print("holding", flush=True)
sys.stdin.read()
stop.set()
"""
OPENERS = 220  # more than the tunnel's connections (200)


# ``count`` openers on host:port, each sending a whole, real TLS ClientHello (made by Python's
# ssl module) and then nothing, reconnecting when dropped: the hello gate admits each, and each
# then (before the re-check's fix) held one of the tunnel's 200 connection slots for the whole
# handshake deadline (3 s). Prints "holding", runs until stdin closes.
HELLO_OPENERS_SCRIPT = r"""
import socket, ssl, sys, threading, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
def client_hello():
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()
stop = threading.Event()
def hold():
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=30)
            sock.sendall(client_hello())
            sock.settimeout(30)
            while sock.recv(65536):  # the server's flight, then the end at its deadline
                pass
            sock.close()
        except OSError:
            time.sleep(0.2)
for _ in range(count):
    threading.Thread(target=hold, daemon=True).start()
print("holding", flush=True)
sys.stdin.read()
stop.set()
"""
HELLO_OPENERS = 260  # more than the tunnel's connection slots (200)

# What the openers send, how many there are, and how long they settle before the test.
OPENER_KINDS = {
    "record header": (OPENERS_SCRIPT, OPENERS, 3),
    "whole hello": (HELLO_OPENERS_SCRIPT, HELLO_OPENERS, 4),
}


def openers(stack: Stack, port: int, kind: str) -> subprocess.Popen[str]:
    """Openers of ``kind`` in the MTA pod's network namespace (the only one the local run's
    policy lets through: they stand for any pod where the CNI does not enforce
    NetworkPolicies)."""
    script, count, settle = OPENER_KINDS[kind]
    mda = json.loads((stack.state / "endpoints.json").read_text())["pods"][f"mail/{MDA}"]
    postfix_pid = stack.own_daemon_pids()["postfix"].pop()
    holder = subprocess.Popen(
        [
            *("nsenter", "-t", str(postfix_pid), "-n", sys.executable, "-c", script),
            *(mda, str(port), str(count)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    time.sleep(settle)
    return holder


@pytest.mark.parametrize("kind", list(OPENER_KINDS))
def test_unfinished_handshakes_do_not_stop_delivery(stack: Stack, kind: str) -> None:
    """Openers of ``kind`` on the LMTP tunnel (24), more than its slots (the whole hello ones:
    outside re-check, 2026-12-07). Expected: inbound mail is delivered meanwhile."""
    subjects = [token("during openers") for _ in range(3)]
    holder = openers(stack, 24, kind)
    try:
        for subject in subjects:
            stack.send_from_internet(
                "alice@example.com", text_message(subject, "alice@example.com").as_bytes()
            )
        time.sleep(20)
        delivered = [s for s in subjects if any(m["Subject"] == s for m in stack.messages("alice"))]
    finally:
        release(holder)
    stack.flush_queue()
    for subject in subjects:  # nothing lost either way
        stack.wait_for_subject("alice", subject, timeout=90)
    assert delivered == subjects, delivered
