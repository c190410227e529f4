"""The ProxyProtocol exposure under ``mailstack up``: HAProxy (Debian's) in front of the pods
sends PROXY v2, and the real client address reaches Postfix (Received, the relay decision),
rspamd (SPF) and Dovecot (the login's ``rip``); a connection without the header, or from outside
the trusted ranges, is refused; the internal listeners serve the namespace's pods without PROXY.

A stack of its own (the session's ``stack`` is published with DNAT), trusting the pod bridge's
range, where ``up``'s HAProxy connects from.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import smtplib
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from tests.mail.conftest import (
    BRIDGE_NETWORK,
    CLIENT_CONTEXT_SOURCE,
    HOSTNAME,
    PASSWORDS,
    Stack,
    start_stack,
)
from tests.mail.messages import MDA, MTA, SENDER, raw_text_message
from tests.mail.test_smtp import (
    test_not_an_open_relay_from_the_internet as refuses_relay_from_the_internet,
)

PROXIED_SPEC = {
    "service": {"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": [BRIDGE_NETWORK]}}
}


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from start_stack(tmp_path_factory, PROXIED_SPEC, name="proxied")


def pod_address(stack: Stack, pod: str) -> str:
    endpoints = json.loads((stack.state / "endpoints.json").read_text())
    return str(endpoints["pods"][f"mail/{pod}"])


def test_haproxy_publishes_the_ports(proxied: Stack) -> None:
    config = (proxied.state / "haproxy.cfg").read_text()
    assert f"bind 127.0.0.1:{proxied.port('smtp')}\n" in config
    assert f"bind {proxied.internet.host_ip}:{proxied.port('imaps')}\n" in config
    assert config.count("send-proxy-v2") == 8


def test_postfix_and_rspamd_see_the_remote_address(proxied: Stack) -> None:
    subject = f"proxied {secrets.token_hex(4)}"
    proxied.send_from_internet("alice@example.com", raw_text_message(subject, "alice@example.com"))
    received = proxied.wait_for_subject("alice", subject)
    ip = proxied.internet.ip
    smtp = [str(r) for r in received.get_all("Received") if "with ESMTP" in str(r)]
    assert len(smtp) == 1 and f"[{ip}]" in smtp[0], received.get_all("Received")
    # rspamd's SPF check ran against that address (example.net authorises it).
    results = " ".join(str(received["Authentication-Results"]).split())
    assert "spf=pass" in results and f"designates {ip} as permitted sender" in results, results


def test_an_unauthenticated_client_behind_the_proxy_cannot_relay(proxied: Stack) -> None:
    """The published stack's check, behind HAProxy: refused, with the internet's address."""
    refuses_relay_from_the_internet(proxied)


def test_a_client_of_the_hosts_loopback_is_announced_as_the_host(proxied: Stack) -> None:
    """up's HAProxy announces a client of the host's loopback as the host's bridge address (as
    DNAT shows it), never as 127.0.0.1, which the PROXY ports refuse; it is a stranger there."""
    host = json.loads((proxied.state / "endpoints.json").read_text())["hostAddress"]
    victim = f"victim-{secrets.token_hex(4)}@example.org"
    with proxied.smtp("smtp") as smtp:
        assert smtp.mail(SENDER)[0] == 250
        code, text = smtp.rcpt(victim)
        assert code in (454, 554), text
    line = proxied.wait_for_log(MTA, "postfix", f"<{victim}>: Relay access denied", "NOQUEUE")
    assert f"[{host}]" in line, line


class ForgingSMTP(smtplib.SMTP):
    """An SMTP client that sends a PROXY v1 header first, as a broken or forging proxy would."""

    def __init__(self, header: bytes, host: str, port: int) -> None:
        self.header = header
        super().__init__(host, port, timeout=30)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        conn = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        conn.sendall(self.header)
        return conn  # type: ignore[no-any-return]


def proxy_header(announced: str, pod: str, port: int) -> bytes:
    if ":" in announced:
        return f"PROXY TCP6 {announced} ::ffff:{pod} 40000 {port}\r\n".encode()
    return f"PROXY TCP4 {announced} {pod} 40000 {port}\r\n".encode()


UNANNOUNCEABLE = ["127.0.0.1", "127.0.0.5", "::1", "::ffff:127.0.0.1", "169.254.169.254"]


@pytest.mark.parametrize("announced", UNANNOUNCEABLE)
def test_port_25_drops_a_client_announced_as_loopback(proxied: Stack, announced: str) -> None:
    """#14 re-check R1: rspamd takes a loopback client for the pod itself (no SPF, no own-domain
    check, DKIM-signed): a proxy announcing one is refused before any mail (postscreen)."""
    mta = pod_address(proxied, MTA)
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        ForgingSMTP(proxy_header(announced, mta, 25), mta, 25).close()
    assert refused.value.smtp_code == 521, refused.value


def test_port_25_takes_an_ordinary_announced_client(proxied: Stack) -> None:
    """The same forged header with an ordinary address: greeted, and our domain as envelope
    sender refused (the own-domain rule): the check above is not a broken header."""
    mta = pod_address(proxied, MTA)
    with ForgingSMTP(proxy_header("203.0.113.9", mta, 25), mta, 25) as smtp:
        smtp._host = HOSTNAME  # type: ignore[attr-defined]
        smtp.ehlo("client.example.net")
        smtp.starttls(context=proxied.tls_context())
        smtp.ehlo("client.example.net")
        assert smtp.mail("alice@example.com")[0] == 250
        code, text = smtp.rcpt("bob@example.com")
        if code == 250:
            code, text = smtp.data(raw_text_message("forged", "alice@example.com"))
        assert code == 554 and b"submission port" in text, text


@pytest.mark.parametrize("announced", ["127.0.0.1", "::1"])
def test_submission_refuses_a_client_announced_as_loopback_even_logged_in(
    proxied: Stack, announced: str
) -> None:
    """Dovecot serves 587 and names the announced client to Postfix (XCLIENT on mda-relay),
    which refuses the pod's own loopback there as on its PROXY ports."""
    mda = pod_address(proxied, MDA)
    with ForgingSMTP(proxy_header(announced, mda, 587), mda, 587) as smtp:
        smtp._host = HOSTNAME  # type: ignore[attr-defined]
        smtp.ehlo("client.example.net")
        smtp.starttls(context=proxied.tls_context())
        smtp.ehlo("client.example.net")
        smtp.login("alice@example.com", PASSWORDS["alice"])
        assert smtp.mail("alice@example.com")[0] == 250
        code, text = smtp.rcpt("bob@example.com")
        assert code == 554 and b"no client of this port can have" in text, text


@pytest.mark.parametrize("announced", ["127.0.0.1", "::1"])
def test_submission_does_not_take_a_loopback_announced_client_as_secured(
    proxied: Stack, announced: str
) -> None:
    """As on IMAP below: on 587 without STARTTLS, Dovecot offers no AUTH to a client the proxy
    announced as loopback, and refuses a plaintext login."""
    mda = pod_address(proxied, MDA)
    with ForgingSMTP(proxy_header(announced, mda, 587), mda, 587) as smtp:
        smtp.ehlo("client.example.net")
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth"), smtp.esmtp_features
        code, _ = smtp.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHdyb25n")
        assert code == 530, code


@pytest.mark.parametrize("announced", ["127.0.0.1", "::1"])
def test_dovecot_does_not_take_a_loopback_announced_client_as_secured(
    proxied: Stack, announced: str
) -> None:
    """Dovecot allows plaintext logins on "secured" connections, the local ones among them: an
    announced loopback address does not make one (the proxy's real address counts)."""
    mda = pod_address(proxied, MDA)
    with socket.create_connection((mda, 143), timeout=15) as conn:
        conn.sendall(proxy_header(announced, mda, 143))
        greeting = conn.recv(4096)
    assert greeting.startswith(b"* OK") and b"LOGINDISABLED" in greeting, greeting


def test_submission_through_the_proxy_logs_in(proxied: Stack) -> None:
    with proxied.smtp("submission") as smtp:
        smtp.login("alice@example.com", PASSWORDS["alice"])
    with proxied.smtp("submissions") as smtp:
        smtp.login("alice@example.com", PASSWORDS["alice"])


IMAP_LOGIN = r"""
import imaplib, ssl, sys
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl._create_unverified_context()
conn = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=30)
conn.login(user, password)
conn.logout()
print("ok")
"""


def test_dovecot_sees_the_remote_address(proxied: Stack) -> None:
    before = len(proxied.log(MDA, "dovecot").splitlines())
    out = proxied.run_in_internet(
        IMAP_LOGIN,
        proxied.internet.host_ip,
        str(proxied.port("imaps")),
        "bob@example.com",
        PASSWORDS["bob"],
    )
    assert out.strip() == "ok"

    def login_line() -> str | None:
        lines = proxied.log(MDA, "dovecot").splitlines()[before:]
        return next((ln for ln in lines if "Login: user=<bob@example.com>" in ln), None)

    line = proxied.wait_for("bob's login in the Dovecot log", login_line)
    assert f"rip={proxied.internet.ip}," in line, line


def _first_bytes(address: str, port: int, send: bytes = b"") -> bytes:
    """What a server says to a client that sends no PROXY header (``send`` instead)."""
    with socket.create_connection((address, port), timeout=15) as conn:
        if send:
            conn.sendall(send)
        received = b""
        try:
            while chunk := conn.recv(4096):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return received


@pytest.mark.parametrize(
    ("pod", "port", "greeting"), [(MTA, 25, b"220"), (MDA, 587, b"220"), (MDA, 143, b"* OK")]
)
def test_a_connection_without_the_header_is_refused(
    proxied: Stack, pod: str, port: int, greeting: bytes
) -> None:
    """From the host's bridge address (a trusted one), straight to the pod: no greeting, the
    connection is closed, whether the client waits or speaks first."""
    address = pod_address(proxied, pod)
    assert not _first_bytes(address, port).startswith(greeting)
    assert not _first_bytes(address, port, b"EHLO client.example.net\r\n").startswith(greeting)


CONNECT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10).close()
    print("connected")
except OSError as err:
    print(type(err).__name__)
"""


def test_outside_the_trusted_ranges_the_proxy_ports_are_closed(proxied: Stack) -> None:
    """The internet namespace (not in trustedCIDRs) reaching the pods directly: refused by the
    NetworkPolicy (nftables under up), as Postfix itself has no list of trusted proxies."""
    for pod, port in ((MTA, 25), (MDA, 465), (MDA, 993)):
        out = proxied.run_in_internet(CONNECT, pod_address(proxied, pod), str(port))
        assert out.strip() == "ConnectionRefusedError", (pod, port, out)


INTERNAL_CLIENT = (
    CLIENT_CONTEXT_SOURCE
    + r"""
import imaplib, smtplib, sys
mda, password, subject = sys.argv[1:4]
with smtplib.SMTP(mda, 11587, timeout=30) as smtp:
    smtp.ehlo("webmail.mail.svc")
    smtp.starttls(context=client_context("", ""))
    smtp.ehlo("webmail.mail.svc")
    smtp.login("alice@example.com", password)
    smtp.sendmail(
        "alice@example.com",
        ["alice@example.com"],
        f"From: alice@example.com\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\r\nhi\r\n",
    )
conn = imaplib.IMAP4(mda, 11143, timeout=30)
conn.starttls(ssl_context=client_context("", ""))
conn.login("alice@example.com", password)
conn.logout()
print("ok")
"""
)


def test_the_internal_listeners_serve_the_namespace_without_proxy(proxied: Stack) -> None:
    """A pod of the namespace (here: in the MDA pod's network namespace, standing for a
    webmail) submits on int-submission and logs in on int-imap, without a PROXY header."""
    subject = f"internal {secrets.token_hex(4)}"
    mda = pod_address(proxied, MDA)
    result = proxied.in_container(
        "dovecot", sys.executable, "-c", INTERNAL_CLIENT, mda, PASSWORDS["alice"], subject
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    received = proxied.wait_for_subject("alice", subject)
    # Dovecot's Received and Postfix's (which XCLIENT gave the client's address) name the pod.
    smtp = [str(r) for r in received.get_all("Received") if "with ESMTP" in str(r)]
    assert smtp and all(f"[{mda}]" in r for r in smtp), received.get_all("Received")
    # The host is not a pod of the namespace: the internal listeners are closed to it.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((mda, 11587), timeout=10).close()


def test_up_restarts_its_haproxy(proxied: Stack) -> None:
    """#14 re-check R2: HAProxy killed, every PROXY port refused connections while up stayed
    "ready" and said nothing. Now: restarted with back-off, logged, "degraded" meanwhile."""
    (pid,) = [p for p, cmd in proxied.own_processes().items() if "haproxy.cfg" in cmd]
    os.kill(pid, signal.SIGKILL)
    log = proxied.workdir / "up.log"
    proxied.wait_for(
        "HAProxy's restart in up's log",
        lambda: "haproxy started again" in log.read_text() or None,
        timeout=20,
    )
    text = log.read_text()
    assert "haproxy exited with -9; restarting in 1 s" in text, text[-2000:]
    assert "now degraded" in text and "now ready" in text, text[-2000:]
    deadline = time.monotonic() + 10
    while True:
        try:
            with proxied.smtp("submission") as smtp:
                smtp.login("alice@example.com", PASSWORDS["alice"])
            break
        except (OSError, smtplib.SMTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert (proxied.state / "ready").read_text() == "ready\n"
