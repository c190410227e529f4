"""Antivirus (``spec.spam.antivirus``): clamd and freshclam in the MTA pod, through rspamd.

No download: the test writes its own signature database (the EICAR test string as a .ndb body
signature) and serves it from the test's internet namespace, from where freshclam fetches it
(``signatures.official: false`` + ``urls``), as it would a private mirror's file in a cluster.
Found by a check from outside: the EICAR test file in a zip reached the INBOX.
"""

from __future__ import annotations

import email.utils
import io
import os
import signal
import smtplib
import time
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.mail.conftest import Stack, stack_documents
from tests.mail.messages import SENDER, token
from tests.mail.test_submission import login

# The EICAR test file: not a virus, detected by every scanner as one (eicar.org).
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE_PORT = 8380
VIRUS = b"5.7.1 A virus was found in the message"
SCANNER_DOWN = b"4.7.1 The virus scanner is not available, try again later"


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def message_with_zip(subject: str, sender: str, content: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "erin@example.com"
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = email.utils.make_msgid(domain=sender.split("@")[1])
    msg.set_content("The report is in the attachment.\n")
    msg.add_attachment(
        zipped("report.txt", content), maintype="application", subtype="zip", filename="report.zip"
    )
    return msg.as_bytes()


def send_inbound(stack: Stack, raw: bytes) -> tuple[int, bytes]:
    """From example.net's address over port 25 (SPF lets the host's bridge send for it)."""
    with stack.smtp("smtp") as smtp:
        assert smtp.mail(SENDER)[0] == 250
        assert smtp.rcpt("erin@example.com")[0] == 250
        return smtp.data(raw)


def until_scanned(stack: Stack, raw: bytes, timeout: float = 240) -> tuple[int, bytes]:
    """Send until the MTA pod has restarted and clamd has its database: until the reply is no
    longer a refused connection or 451 (clamd not answering yet)."""
    deadline = time.monotonic() + timeout
    reply: tuple[int, bytes] | str = "nothing"
    while time.monotonic() < deadline:
        try:
            reply = send_inbound(stack, raw)
        except (OSError, smtplib.SMTPException) as err:
            reply = repr(err)
        else:
            if reply[0] != 451:
                return reply
        time.sleep(2)
    raise AssertionError(f"no scan result within {timeout} s: {reply!r}")


@pytest.fixture
def antivirus_on(stack: Stack, request: pytest.FixtureRequest) -> Iterator[None]:
    """The session's stack with antivirus on, signatures from the test's own database; the
    action is the test's indirect parameter (reject without one)."""
    folder = stack.workdir / "signatures"
    folder.mkdir(exist_ok=True)
    (folder / "mailstack-test.ndb").write_text(f"Mailstack-Test-EICAR:0:*:{EICAR.hex()}\n")
    server = stack.internet.start_http(folder, SIGNATURE_PORT)
    url = f"http://{stack.internet.ip}:{SIGNATURE_PORT}/mailstack-test.ndb"
    antivirus: dict[str, Any] = {
        "enabled": True,
        "action": getattr(request, "param", "reject"),
        "signatures": {"official": False, "urls": [url]},
    }
    stack.write_inputs(stack_documents(stack.internet.ip, {"spam": {"antivirus": antivirus}}))
    stack.rerender()
    try:
        yield
    finally:
        stack.write_inputs(stack_documents(stack.internet.ip))
        stack.rerender()
        server.terminate()
        server.wait(timeout=10)
        until_scanned(stack, message_with_zip(token("after"), SENDER, b"clean"))


def test_eicar_in_a_zip_arrives_without_antivirus(stack: Stack) -> None:
    subject = token("eicar, no antivirus")
    stack.send_from_internet("erin@example.com", message_with_zip(subject, SENDER, EICAR))
    stack.wait_for_subject("erin", subject)


def test_eicar_in_a_zip_is_refused_with_antivirus_on(stack: Stack, antivirus_on: None) -> None:
    refused = message_with_zip(token("eicar inbound"), SENDER, EICAR)
    assert until_scanned(stack, refused) == (554, VIRUS)
    # A clean zip passes.
    clean = token("clean zip")
    stack.send_from_internet("erin@example.com", message_with_zip(clean, SENDER, b"hello"))
    stack.wait_for_subject("erin", clean)
    # A logged-in user's mail is scanned too.
    with login(stack, "submission", "alice") as smtp:
        assert smtp.mail("alice@example.com")[0] == 250
        assert smtp.rcpt("erin@example.com")[0] == 250
        raw = message_with_zip(token("eicar submitted"), "alice@example.com", EICAR)
        assert smtp.data(raw) == (554, VIRUS)
    # Memory of clamd with this one-signature database (docs/operator.md gives the figure).
    (pid,) = [pid for pid, cmd in stack.own_processes().items() if "clamd --foreground" in cmd]
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next(line for line in status if line.startswith("VmRSS"))
    print(f"clamd with one signature: {rss.strip()}")
    # clamd not answering (stopped): the sender is told to try again later, nothing passes.
    os.kill(pid, signal.SIGSTOP)
    try:
        hung = message_with_zip(token("while clamd hangs"), SENDER, b"hello")
        reply = send_inbound(stack, hung)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert reply == (451, SCANNER_DOWN)


@pytest.mark.parametrize("antivirus_on", ["quarantine"], indirect=True)
def test_quarantine_files_incoming_eicar_to_junk_and_refuses_it_from_users(
    stack: Stack, antivirus_on: None
) -> None:
    probe = message_with_zip(token("clean, to wait for clamd"), SENDER, b"hello")
    assert until_scanned(stack, probe)[0] == 250
    subject = token("eicar quarantined")
    stack.send_from_internet("erin@example.com", message_with_zip(subject, SENDER, EICAR))
    quarantined = stack.wait_for_subject("erin", subject, folder="Junk")
    assert quarantined["X-Spam"] == "Yes"
    with login(stack, "submission", "alice") as smtp:
        assert smtp.mail("alice@example.com")[0] == 250
        assert smtp.rcpt("erin@example.com")[0] == 250
        raw = message_with_zip(token("eicar submitted"), "alice@example.com", EICAR)
        assert smtp.data(raw) == (554, VIRUS)
