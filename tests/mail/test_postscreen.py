"""postscreen on port 25: the pregreet test, the DNS list, the allow-list and the cache.

Each test's client is a further address of the internet namespace (``PostscreenClients``) that
no other test uses: postscreen screens an address once and then remembers it for a day. The
test stack asks the DNS list ``dnsbl.test`` that the internet's BIND serves, through the pods'
resolver (``spec.resolvers``), and lists one of those addresses (conftest).
"""

from __future__ import annotations

import json

from tests.mail.conftest import DNSBL_ZONE, SMTP_REPLY_SOURCE, PostscreenClients, Stack
from tests.mail.messages import MTA, SENDER, token

# One SMTP session on port 25 from ``source``, in the internet namespace. ``mode``: "pregreet"
# (EHLO sent before the greeting), "starttls" (STARTTLS, then the message) or "plain". Prints
# the greeting's lines, the seconds until it was complete, and each command's reply.
CLIENT_SCRIPT = (
    SMTP_REPLY_SOURCE
    + r"""
import json, socket, ssl, sys, time
host, port, source, mode, rcpt, subject = sys.argv[1:7]
start = time.monotonic()
sock = socket.create_connection((host, int(port)), timeout=30, source_address=(source, 0))
if mode == "pregreet":
    sock.sendall(b"EHLO sink.example.net\r\n")
stream = sock.makefile("rb")
result = {"greeting": reply(), "greeting_seconds": time.monotonic() - start}
# postscreen reads what a client sent too early and drops it: the EHLO is asked again.
result["ehlo"] = command("EHLO sink.example.net")
if mode == "starttls":
    result["starttls"] = command("STARTTLS")
    sock = ssl._create_unverified_context().wrap_socket(sock)
    stream = sock.makefile("rb")
    result["ehlo"] = command("EHLO sink.example.net")
result["mail"] = command(f"MAIL FROM:<{sys.argv[7]}>")
result["rcpt"] = command(f"RCPT TO:<{rcpt}>")
if result["rcpt"][-1:] and result["rcpt"][-1].startswith("250"):
    result["data"] = command("DATA")
    message = (f"From: {sys.argv[7]}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
               f"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n"
               f"Message-ID: <{subject}@example.net>\r\n\r\nhello\r\n.")
    result["end"] = command(message)
result["quit"] = command("QUIT")
print(json.dumps(result))
"""
)


def session(stack: Stack, source: str, mode: str, subject: str) -> dict[str, list[str]]:
    output = stack.run_in_internet(
        CLIENT_SCRIPT,
        stack.internet.host_ip,
        str(stack.port("smtp")),
        source,
        mode,
        "alice@example.com",
        subject,
        SENDER,
    )
    return json.loads(output)  # type: ignore[no-any-return]


def code(reply: list[str]) -> str:
    """The reply's code ("" when the server closed the connection instead)."""
    return reply[-1][:3] if reply else ""


def test_a_pregreeting_client_is_refused(stack: Stack) -> None:
    clients = PostscreenClients.of(stack.internet.ip)
    subject = token("pregreet")
    result = session(stack, clients.pregreeting, "pregreet", subject)
    # postscreen's half greeting came first; the client talked into the wait.
    assert result["greeting"][0].startswith("220-"), result
    assert code(result["rcpt"]) == "550", result
    assert "data" not in result, result
    stack.wait_for_log(MTA, "postfix", "PREGREET", f"[{clients.pregreeting}]")
    subjects = [m["Subject"] for m in stack.messages("alice")]
    assert subject not in subjects


def test_a_listed_client_is_refused(stack: Stack) -> None:
    clients = PostscreenClients.of(stack.internet.ip)
    result = session(stack, clients.listed, "plain", token("listed"))
    assert code(result["rcpt"]) == "550", result
    assert DNSBL_ZONE in result["rcpt"][-1], result
    assert "data" not in result, result
    stack.wait_for_log(MTA, "postfix", "DNSBL rank 1", f"[{clients.listed}]")


def test_a_clean_client_waits_once_then_goes_straight_to_smtpd(stack: Stack) -> None:
    clients = PostscreenClients.of(stack.internet.ip)
    first_subject = token("clean-first")
    first = session(stack, clients.clean, "starttls", first_subject)
    # The first connection: the half greeting, the greet wait, then smtpd's greeting and
    # STARTTLS and the message as before postscreen.
    assert first["greeting"][0].startswith("220-"), first
    assert first["greeting_seconds"] >= 2.5, first
    assert code(first["starttls"]) == "220", first
    assert code(first["end"]) == "250", first
    stack.wait_for_subject("alice", first_subject)
    stack.wait_for_log(MTA, "postfix", "PASS NEW", f"[{clients.clean}]")
    # Remembered: the next connection is smtpd's at once.
    delivered_without_waiting(stack, clients.clean, "PASS OLD")


def test_an_allow_listed_client_skips_the_tests(stack: Stack) -> None:
    delivered_without_waiting(stack, PostscreenClients.of(stack.internet.ip).allowed, "LISTED")


def delivered_without_waiting(stack: Stack, source: str, logged: str) -> None:
    """A session from ``source`` gets smtpd's greeting at once (no "220-" half, no wait), its
    message is delivered, and postscreen logged ``logged`` for it."""
    subject = token("at-once")
    result = session(stack, source, "plain", subject)
    assert len(result["greeting"]) == 1 and code(result["greeting"]) == "220", result
    assert result["greeting_seconds"] < 1.5, result
    assert code(result["end"]) == "250", result
    stack.wait_for_subject("alice", subject)
    stack.wait_for_log(MTA, "postfix", logged, f"[{source}]")
