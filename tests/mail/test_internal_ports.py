"""The internal ports answer their one peer's certificate alone.

Dovecot's LMTP port is served by the agent beside Dovecot over TLS with the MTA's pinned client
certificate (agent/tunnel.py). A client in another pod's network namespace (here the MTA pod's,
which the NetworkPolicy admits) gets no LMTP greeting without that certificate; with it, it
gets one (so the probe itself works). From the host, nothing answers at all. Postfix's
mda-relay port, where Dovecot relays the mail of users logged in on 587 and 465 and names them
with XCLIENT, relays for Dovecot's certificate alone: a client without it (here in the MDA pod,
which the NetworkPolicy admits) that names a user with XCLIENT relays nothing.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from mailstack.material.pki import generate_client_certificate
from mailstack.render import layout
from tests.mail.conftest import CLIENT_CONTEXT_SOURCE, Stack

# Connects with TLS (with the given certificate, or none; or "plain": no TLS at all) and prints
# what the server says first, or "refused".
PROBE = (
    CLIENT_CONTEXT_SOURCE
    + """
import socket, ssl, sys
host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
try:
    sock = socket.create_connection((host, port), timeout=10)
    if cert != "plain":
        sock = client_context(cert, key).wrap_socket(sock)
    else:
        sock.sendall(b"LHLO probe\\r\\n")
    first = sock.recv(200)
    print(first.decode(errors="replace").split("\\n")[0].strip() if first else "refused")
except (OSError, ssl.SSLError):
    print("refused")
"""
)


def _read(stack: Stack, path: str) -> str:
    result = stack.in_container("postfix", "cat", path)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def mda_address(stack: Stack) -> str:
    result = stack.in_container("postfix", "getent", "hosts", "example-com-mda")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[0]


def _probe_in_mta_pod(stack: Stack, port: int, cert: str, key: str) -> str:
    result = stack.in_container(
        "postfix", "python3", "-c", PROBE, "example-com-mda", str(port), cert, key
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def _probe_from_host(address: str, port: int, cert: str, key: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, address, str(port), cert, key],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("port", "greeting"),
    [(layout.LMTP_PORT.number, "220 ")],
)
def test_lmtp_answers_only_the_mtas_certificate(
    stack: Stack, mda_address: str, port: int, greeting: str
) -> None:
    own = (_read(stack, layout.MTA_CLIENT_CERT), _read(stack, layout.MTA_CLIENT_KEY))
    # The same name, another key: refused, as are a client without a certificate and one
    # without TLS.
    other = generate_client_certificate("example-com-mta", datetime.now(UTC))
    assert _probe_in_mta_pod(stack, port, *own).startswith(greeting)
    for cert, key in [(other.cert_pem, other.key_pem), ("", ""), ("plain", "")]:
        assert _probe_in_mta_pod(stack, port, cert, key) == "refused", cert[:40]
        assert _probe_from_host(mda_address, port, cert, key) == "refused", cert[:40]
    # From the host, not even the right certificate: up's nftables mirror of the
    # NetworkPolicy refuses the connection before the certificate is asked for.
    assert _probe_from_host(mda_address, port, *own) == "refused"


# On mda-relay from the MDA pod: STARTTLS (with the given certificate, or none; "plain": no
# STARTTLS), XCLIENT naming alice, then a message to another domain. Prints the replies to
# XCLIENT, MAIL and RCPT.
XCLIENT_RELAY = (
    CLIENT_CONTEXT_SOURCE
    + """
import smtplib, sys
host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
smtp = smtplib.SMTP(host, port, timeout=20)
smtp.ehlo("mail.example.com")
if cert != "plain":
    smtp.starttls(context=client_context(cert, key))
    smtp.ehlo("mail.example.com")
codes = [smtp.docmd("XCLIENT", "LOGIN=alice@example.com ADDR=203.0.113.9")[0]]
smtp.ehlo("laptop.example.net")
codes.append(smtp.mail("alice@example.com")[0])
codes.append(smtp.rcpt("victim@example.net")[0])
print(" ".join(map(str, codes)))
"""
)


def _xclient_in_mda_pod(stack: Stack, cert: str, key: str) -> str:
    port = str(layout.MDA_RELAY_PORT.number)
    result = stack.in_container(
        "dovecot", "python3", "-c", XCLIENT_RELAY, "example-com-mta", port, cert, key
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_mda_relay_relays_for_dovecots_certificate_alone(stack: Stack) -> None:
    own = (_read(stack, layout.MDA_CLIENT_CERT), _read_mda_key(stack))
    other = generate_client_certificate("example-com-mda", datetime.now(UTC))
    # Dovecot's certificate: XCLIENT names alice, and her mail to another domain is taken.
    assert _xclient_in_mda_pod(stack, *own) == "220 250 250"
    # Another key with the same name, or none: XCLIENT is taken (Postfix asks no certificate
    # for it), but no recipient is.
    for cert, key in [(other.cert_pem, other.key_pem), ("", "")]:
        assert _xclient_in_mda_pod(stack, cert, key) == "220 250 554", cert[:40]
    # Without TLS: nothing after XCLIENT (the port requires TLS).
    assert _xclient_in_mda_pod(stack, "plain", "").split()[1:] == ["530", "530"]


def _read_mda_key(stack: Stack) -> str:
    result = stack.in_container("dovecot", "cat", layout.MDA_CLIENT_KEY)
    assert result.returncode == 0, result.stderr
    return result.stdout
