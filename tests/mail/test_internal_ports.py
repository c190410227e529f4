"""Dovecot's LMTP and auth ports answer Postfix's certificate alone.

Both are served by the agent beside Dovecot over TLS with the MTA's pinned client certificate
(agent/tunnel.py). A client in another pod's network namespace (here the MTA pod's, which the
NetworkPolicy admits) gets no LMTP greeting and no auth handshake without that certificate;
with it, it gets both (so the probe itself works). From the host, nothing answers at all.
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
    [(layout.LMTP_PORT.number, "220 "), (layout.SASL_PORT.number, "VERSION\t1\t")],
)
def test_lmtp_and_auth_answer_only_the_mtas_certificate(
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
