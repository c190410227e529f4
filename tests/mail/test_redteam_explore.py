"""Exploration (red team): measurements, not assertions."""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.mail.conftest import Stack
from tests.mail.messages import MTA, SENDER, token


def bomb(subject: str, parts: int, declared: str, used: str) -> bytes:
    head = (
        f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; {declared}\r\n\r\n"
    ).encode()
    return (
        head
        + (b"--" + used.encode() + b"\r\n\r\nx\r\n") * parts
        + b"--"
        + used.encode()
        + b"--\r\n"
    )


CASES = {
    "control-lower": ('boundary="b"', "b"),
    "upper-lines": ('boundary="b"', "B"),
    "rfc2231": ('boundary*0="b"', "b"),
    "no-param": ("charset=us-ascii", "b"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_explore_bombs(stack: Stack, case: str) -> None:
    declared, used = CASES[case]
    subject = token(f"bomb {case}")
    raw = bomb(subject, 99_000, declared, used)
    start = time.monotonic()
    try:
        with stack.smtp("smtp") as smtp:
            smtp.sendmail(SENDER, ["alice@example.com"], raw)
        result = "accepted"
    except smtplib.SMTPDataError as err:
        result = f"{err.smtp_code} {err.smtp_error!r}"
    took = time.monotonic() - start
    print(f"\nCASE {case}: {result} in {took:.1f}s size={len(raw)}")
    log = stack.log(MTA, "rspamd").splitlines()[-5:]
    print("\n".join(log))


REACH = r"""
import json, socket, sys
host = sys.argv[1]
out = {}
for port in [int(p) for p in sys.argv[2:]]:
    try:
        s = socket.create_connection((host, port), timeout=3)
        s.settimeout(3)
        try:
            data = s.recv(100)
        except OSError as e:
            data = repr(e).encode()
        out[port] = "open:" + data.decode(errors="replace")[:40]
        s.close()
    except OSError as e:
        out[port] = "closed:" + type(e).__name__
print(json.dumps(out))
"""


def test_explore_reach_from_internet(stack: Stack) -> None:
    import json as _json

    endpoints = _json.loads((stack.state / "endpoints.json").read_text())
    print("\nENDPOINTS", endpoints)
    for pod, address in endpoints["pods"].items():
        out = stack.run_in_internet(
            REACH, address, "24", "12345", "10587", "9101", "9102", "9103", "25", "11332", "11334"
        )
        print("FROM INTERNET", pod, address, out)
    out = stack.run_in_internet(
        REACH, stack.internet.host_ip, "22", "9101", "9102", "9103", "11332", "11334"
    )
    print("FROM INTERNET host", out)


def test_explore_forged_headers(stack: Stack) -> None:
    subject = token("forged")
    raw = (
        f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        "Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n"
        "X-Spam-Status: unscanned, too complex (forged)\r\n"
        "X-Spamd-Bar: /\r\n"
        "Authentication-Results: mail.example.com; dkim=pass header.d=example.net; dmarc=pass\r\n"
        "\r\nhello\r\n"
    ).encode()
    stack.send_from_internet("alice@example.com", raw)
    message = stack.wait_for_subject("alice", subject)
    print("\nDELIVERED HEADERS:\n" + "\n".join(f"{k}: {v}" for k, v in message.items()))
