"""The agents' mutual-TLS tunnel: the pinned certificate passes, every other client is refused,
and bytes go both ways unchanged (agent/tunnel.py)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailstack.agent import next_hops, tunnel, tunnel_hello
from mailstack.material.pki import ClientCertificate, generate_client_certificate

NOW = datetime.now(UTC)


def _files(folder: Path, name: str, pair: ClientCertificate) -> tuple[str, str]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    cert.write_text(pair.cert_pem)
    key.write_text(pair.key_pem)
    return str(cert), str(key)


class Pairs:
    def __init__(self, folder: Path) -> None:
        self.mda = _files(folder, "mda", generate_client_certificate("x-mda", NOW))
        self.mta = _files(folder, "mta", generate_client_certificate("x-mta", NOW))
        self.other = _files(folder, "other", generate_client_certificate("x-mta", NOW))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Pairs:
    return Pairs(tmp_path_factory.mktemp("pairs"))


def _echo_server(path: str) -> socket.socket:
    """A unix socket that greets each connection with ``hello`` at once (many at a time) and
    then echoes each chunk upper-cased."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the tunnel closed the session
            conn.sendall(b"hello\n")
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener


@pytest.fixture
def mda_side(tmp_path: Path, pairs: Pairs) -> Iterator[int]:
    """The MDA's tunnel: TLS on a free port, for the MTA's certificate, onto an echo socket."""
    echo = _echo_server(str(tmp_path / "echo"))
    identity = tunnel.Identity(*pairs.mda, pairs.mta[0])
    listener = socket.create_server(("127.0.0.1", 0))
    server = tunnel.start(
        tunnel.Tunnel("lmtp", listener, tunnel.unix_connector(str(tmp_path / "echo")), identity)
    )
    yield listener.getsockname()[1]
    server.shutdown()
    echo.close()


def _client(
    port: int,
    cert: tuple[str, str] | None,
    version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.maximum_version = version
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(*cert)
    try:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as tls:
            greeting = tls.recv(100)
            tls.sendall(b"x" * 100_000)
            echoed = b""
            while len(echoed) < 100_000:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                echoed += chunk
            return greeting + echoed
    except (OSError, ssl.SSLError):
        return b"refused"


def test_the_pinned_certificate_passes_and_bytes_go_both_ways(mda_side: int, pairs: Pairs) -> None:
    assert _client(mda_side, pairs.mta) == b"hello\n" + b"X" * 100_000


def test_another_certificate_or_none_is_refused(mda_side: int, pairs: Pairs) -> None:
    assert _client(mda_side, pairs.other) == b"refused"  # same name, another key
    assert _client(mda_side, pairs.mda) == b"refused"  # the server's own
    assert _client(mda_side, None) == b"refused"
    with socket.create_connection(("127.0.0.1", mda_side), timeout=5) as plain:
        plain.sendall(b"LHLO probe\r\n")
        try:
            answer = plain.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # no greeting, whichever way the connection ends


def test_the_tunnel_speaks_tls_13_only(mda_side: int, pairs: Pairs) -> None:
    # The pinned certificate itself, over TLS 1.2: refused (both ends are ours).
    assert _client(mda_side, pairs.mta, ssl.TLSVersion.TLSv1_2) == b"refused"
    assert _client(mda_side, pairs.mta, ssl.TLSVersion.TLSv1_3).startswith(b"hello\n")


def test_connections_that_never_finish_their_hello_do_not_keep_the_mta_out(
    mda_side: int, pairs: Pairs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More openers than the listener serves connections (fewer here, to stay under select's
    1024 descriptors in this process), each sending a TLS record header and nothing more (from
    the MTA's own address), reconnecting when cut: the MTA's real handshake passes."""
    monkeypatch.setattr(tunnel, "MAX_CONNECTIONS", 32)
    monkeypatch.setattr(tunnel_hello, "MAX_WAITING", 32)
    stop = threading.Event()

    def hold() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", mda_side), timeout=5) as sock:
                    sock.sendall(b"\x16\x03\x01\x02\x00")
                    sock.recv(10)  # returns when the tunnel cuts or drops it
            except OSError:
                stop.wait(0.05)

    openers = [threading.Thread(target=hold, daemon=True) for _ in range(80)]
    for opener in openers:
        opener.start()
    try:
        stop.wait(1.5)
        outcomes = [_client(mda_side, pairs.mta) for _ in range(5)]
    finally:
        stop.set()
    assert outcomes == [b"hello\n" + b"X" * 100_000] * 5


def test_a_record_header_alone_is_dropped_after_the_hello_timeout(mda_side: int) -> None:
    with socket.create_connection(("127.0.0.1", mda_side), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00")
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):  # closed with the header unread
            assert sock.recv(10) == b""
    assert time.monotonic() - started < tunnel_hello.HELLO_TIMEOUT + 1


def test_the_mtas_readiness_wants_a_tunnel_handshake_not_a_bare_connection(
    mda_side: int, pairs: Pairs
) -> None:
    """The port accepts connections either way; only the pinned pair completes the handshake."""
    reach = next_hops.tunnel_reach(tunnel.Identity(*pairs.mta, pairs.mda[0]))
    assert reach("127.0.0.1", mda_side) is None
    wrong_key = next_hops.tunnel_reach(tunnel.Identity(*pairs.other, pairs.mda[0]))
    problem = wrong_key("127.0.0.1", mda_side)
    assert problem is not None and problem.startswith("no TLS tunnel"), problem
    wrong_pin = next_hops.tunnel_reach(tunnel.Identity(*pairs.mta, pairs.other[0]))
    problem = wrong_pin("127.0.0.1", mda_side)
    assert problem is not None and "not the pinned one" in problem, problem
