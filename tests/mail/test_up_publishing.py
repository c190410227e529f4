"""How ``mailstack up`` publishes its ports: not before the pods are ready, and on the IPv6
loopback too.

A second stack (the session stack's documents and internet, a state and ports of its own,
``--listen 127.0.0.1 --listen [::1]``) is started here, and its SMTP port is tried every
50 ms from the moment ``mailstack up`` starts: each try before the ports are published must be
refused (no listener), and the first session that gets through must have its mail accepted
(before, a client got in while rspamd was starting and met ``451 4.7.1`` at the milter).
"""

from __future__ import annotations

import imaplib
import os
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.mail.conftest import (
    HOSTNAME,
    PASSWORDS,
    Stack,
    free_port_offset,
    stack_documents,
    stop_up,
)
from tests.mail.internet import ROOT
from tests.mail.messages import SENDER, text_message, token

START_TIMEOUT = 240.0


@dataclass
class Startup:
    """What the SMTP port answered while the second stack started."""

    refused: int = 0  # connection attempts refused before the first session
    first_session: list[tuple[int, bytes]] = field(default_factory=list)  # (code, text) per step


def _first_session(port: int) -> list[tuple[int, bytes]] | None:
    """None when the port refuses the connection; else the replies of one inbound delivery."""
    try:
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    except ConnectionRefusedError:
        return None
    replies: list[tuple[int, bytes]] = []
    with smtp:
        replies.append(smtp.ehlo("client.example.net"))
        replies.append(smtp.mail(SENDER))
        replies.append(smtp.rcpt("alice@example.com"))
        message = text_message(token("first session"), "alice@example.com")
        replies.append(smtp.data(message.as_bytes()))
    return replies


@pytest.fixture(scope="module")
def second(stack: Stack) -> Iterator[tuple[Stack, Startup]]:
    workdir = stack.workdir / "second"
    workdir.mkdir()
    offset = free_port_offset()
    other = Stack(workdir, workdir / "state", workdir / "inputs.yaml", stack.internet, offset)
    other.write_inputs(stack_documents(stack.internet.ip))
    env = {
        **os.environ,
        "MAILSTACK_UP_QUIET": "1",
        "MAILSTACK_UP_HOST_ETC": str(stack.workdir / "host-etc"),
        "PYTHONPATH": str(ROOT / "operator"),
    }
    argv = [sys.executable, "-m", "mailstack", "up", "-f", str(other.inputs)]
    argv += ["--state", str(other.state), "--port-offset", str(other.offset)]
    argv += ["--listen", "127.0.0.1", "--listen", "[::1]"]
    log = open(workdir / "up.log", "ab")  # noqa: SIM115 (closed with the process)
    other.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    startup = Startup()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (other.state / "ready").exists():
            assert other.process.poll() is None, (workdir / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (workdir / "up.log").read_text()[-3000:]
            if not startup.first_session:
                replies = _first_session(other.port("smtp"))
                if replies is None:
                    startup.refused += 1
                else:
                    startup.first_session = replies
            time.sleep(0.05)
        if not startup.first_session:
            # Published and ready within one try: the session runs now.
            startup.first_session = _first_session(other.port("smtp")) or []
        yield other, startup
    finally:
        stop_up(other.process)


def test_the_ports_refuse_connections_until_the_pods_are_ready(
    second: tuple[Stack, Startup],
) -> None:
    _, startup = second
    # The pods take seconds to start: many tries, each refused, before the ports open.
    assert startup.refused > 10, startup
    codes = [code for code, _ in startup.first_session]
    assert codes == [250, 250, 250, 250], startup.first_session


def test_smtp_and_imap_over_the_ipv6_loopback(second: tuple[Stack, Startup]) -> None:
    other, _ = second
    subject = token("over ipv6")
    with smtplib.SMTP("::1", other.port("smtp"), timeout=30) as smtp:
        smtp._host = HOSTNAME  # type: ignore[attr-defined]  # the name the certificate has
        smtp.ehlo("client.example.net")
        smtp.starttls(context=other.tls_context())
        smtp.ehlo("client.example.net")
        assert smtp.send_message(text_message(subject, "alice@example.com")) == {}
    other.wait_for_subject("alice", subject)
    with imaplib.IMAP4_SSL("::1", other.port("imaps"), ssl_context=other._named_context()) as imap:
        imap.login("alice@example.com", PASSWORDS["alice"])
        imap.select("INBOX", readonly=True)
        status, found = imap.search(None, "SUBJECT", f'"{subject}"')
        assert status == "OK" and found[0], found
