"""TLS on every port that speaks it: TLS 1.2 and 1.3 only, a certificate for the mail hostname
that chains to the stack's CA (``ca.crt``).

Each port is reached the way a client would: implicit TLS on 465/993/995, the protocol's own
STARTTLS (SMTP, IMAP, ManageSieve) or STLS (POP3) on the others.
"""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.mail.conftest import HOSTNAME, Stack

# port name -> how TLS starts on it
PORTS = {
    "smtp": "smtp",
    "submission": "smtp",
    "submissions": "implicit",
    "imap": "imap",
    "imaps": "implicit",
    "pop3": "pop3",
    "pop3s": "implicit",
    "sieve": "sieve",
}


class Lines:
    """Line reading on a plain socket without reading past what the server sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def line(self) -> str:
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError(f"connection closed after {bytes(data)!r}")
            data += chunk
        return data.decode(errors="replace").rstrip("\r\n")

    def until(self, done: str) -> str:
        """Lines up to the first that starts with ``done``; that line."""
        while True:
            text = self.line()
            if text.startswith(done):
                return text

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")


def start_tls(sock: socket.socket, how: str) -> None:
    """Speak the protocol up to the point where the server expects the TLS handshake."""
    if how == "implicit":
        return
    lines = Lines(sock)
    if how == "smtp":
        lines.until("220 ")
        lines.send("EHLO client.example.net")
        lines.until("250 ")
        lines.send("STARTTLS")
        assert lines.line().startswith("220 ")
    elif how == "imap":
        assert lines.line().startswith("* OK")
        lines.send("a1 STARTTLS")
        assert lines.until("a1 ").startswith("a1 OK")
    elif how == "pop3":
        assert lines.line().startswith("+OK")
        lines.send("STLS")
        assert lines.line().startswith("+OK")
    elif how == "sieve":
        lines.until("OK")
        lines.send("STARTTLS")
        assert lines.line().startswith("OK")
    else:
        raise AssertionError(how)


@contextmanager
def tls_connection(stack: Stack, name: str, context: ssl.SSLContext) -> Iterator[ssl.SSLSocket]:
    with socket.create_connection(("127.0.0.1", stack.port(name)), timeout=20) as sock:
        start_tls(sock, PORTS[name])
        with context.wrap_socket(sock, server_hostname=HOSTNAME) as tls:
            yield tls


def strict_context(ca: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that trusts only the stack's CA, checks the hostname, and speaks one version."""
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = version
    context.maximum_version = version
    return context


def legacy_context(ca: Path) -> ssl.SSLContext:
    """A client capped at TLS 1.1 that would really negotiate it with a server allowing it
    (OpenSSL's default security level refuses TLS < 1.2 on the client side already)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


@pytest.mark.parametrize("name", list(PORTS))
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_12_and_13_with_a_certificate_for_the_mail_host(
    stack: Stack, name: str, version: ssl.TLSVersion
) -> None:
    context = strict_context(stack.state / "ca.crt", version)
    with tls_connection(stack, name, context) as tls:
        assert tls.version() == version.name.replace("v1_", "v1.")
        negotiated = tls.cipher()
        assert negotiated is not None and negotiated[2] >= 128, negotiated
        # Verified against ca.crt alone (no system CAs) and for the mail hostname.
        certificate = tls.getpeercert()
        assert certificate is not None
        assert ("DNS", HOSTNAME) in certificate["subjectAltName"], certificate


@pytest.mark.parametrize("name", list(PORTS))
def test_tls_11_and_older_are_refused(stack: Stack, name: str) -> None:
    with pytest.raises(ssl.SSLError) as refused:  # noqa: SIM117 (the raise is in the handshake)
        with tls_connection(stack, name, legacy_context(stack.state / "ca.crt")):
            pass
    # The server refused the version, not the client its own configuration: Postfix answers
    # with a protocol_version alert, Dovecot closes the connection mid-handshake. (The same
    # port completes TLS 1.2, and this client completes TLS 1.1 with a server that allows it:
    # see the tests around this one.)
    assert refused.value.reason in (
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNEXPECTED_EOF_WHILE_READING",
    ), refused.value


def test_the_legacy_client_really_speaks_tls_11(stack: Stack) -> None:
    """Without this, the refusal above could come from the client alone and prove nothing."""
    secrets = stack.state / "secrets" / "mail" / "example-com-tls"
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server_context.minimum_version = ssl.TLSVersion.TLSv1
    server_context.set_ciphers("DEFAULT:@SECLEVEL=0")
    server_context.load_cert_chain(secrets / "tls.crt", secrets / "tls.key")
    listener = socket.create_server(("127.0.0.1", 0))
    versions: list[str | None] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            versions.append(tls.version())
            tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with (
        socket.create_connection(listener.getsockname(), timeout=10) as sock,
        legacy_context(stack.state / "ca.crt").wrap_socket(sock, server_hostname=HOSTNAME) as tls,
    ):
        assert tls.version() == "TLSv1.1"
        tls.sendall(b"x")
    thread.join(10)
    listener.close()
    assert versions == ["TLSv1.1"]
