"""The MDA tunnel's slots (agent/tunnel.py, outside re-check of #21): a whole ClientHello and
then silence takes no session slot, the MTA's readiness probe has slots of its own, and the
session slots follow Postfix's process limits (render.postfix.tunnel_sessions)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstack.agent import next_hops, tunnel, tunnel_hello
from mailstack.api.assemble import assemble
from mailstack.api.models import API_VERSION
from mailstack.api.parse import parse_maildomain
from mailstack.render import layout, postfix
from mailstack.render.postfix import (
    DEFAULT_PROCESS_LIMIT,
    TUNNEL_SESSION_MARGIN,
    process_limit,
    render_postfix_main_cf,
    render_postfix_master_cf,
    tunnel_sessions,
)
from tests.parsers import parse_master_cf
from tests.unit.test_agent_tunnel import Pairs, _client, _echo_server, pairs  # noqa: F401

SLOTS = 8


@pytest.fixture
def small_mda_side(tmp_path: Path, pairs: Pairs) -> Iterator[int]:  # noqa: F811
    """The MDA's tunnel with ``SLOTS`` session slots onto an echo socket."""
    echo = _echo_server(str(tmp_path / "echo"))
    identity = tunnel.Identity(*pairs.mda, pairs.mta[0])
    listener = socket.create_server(("127.0.0.1", 0))
    connect = tunnel.unix_connector(str(tmp_path / "echo"))
    server = tunnel.start(tunnel.Tunnel("lmtp", listener, connect, identity, SLOTS))
    yield listener.getsockname()[1]
    server.shutdown()
    echo.close()


def client_hello() -> bytes:
    """A whole, real TLS ClientHello, from a client without a server."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_whole_hellos_then_silence_do_not_keep_the_mta_out(
    small_mda_side: int,
    pairs: Pairs,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More openers than the tunnel has waiting places and session slots, each sending a whole
    ClientHello and then nothing (the handshake's deadline is 3 s), reconnecting when cut: the
    MTA's handshakes pass (before, each opener held a session slot for the deadline)."""
    monkeypatch.setattr(tunnel_hello, "MAX_WAITING", 32)
    hello, stop = client_hello(), threading.Event()

    def hold() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", small_mda_side), timeout=5) as sock:
                    sock.sendall(hello)
                    while sock.recv(65536):  # the server's flight, then the cut or deadline
                        pass
            except OSError:
                stop.wait(0.05)

    for _ in range(80):
        threading.Thread(target=hold, daemon=True).start()
    try:
        stop.wait(1.5)
        outcomes = [_client(small_mda_side, pairs.mta) for _ in range(5)]
    finally:
        stop.set()
    assert outcomes == [b"hello\n" + b"X" * 100_000] * 5


def test_the_readiness_probe_passes_with_every_session_slot_taken(
    small_mda_side: int,
    pairs: Pairs,  # noqa: F811
) -> None:
    """Postfix's sessions fill the slots (clients holding submission sessions): one more is
    refused, but the MTA's readiness handshake is served on the probe's own slots."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(*pairs.mta)
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(SLOTS):
            plain = socket.create_connection(("127.0.0.1", small_mda_side), timeout=5)
            tls = context.wrap_socket(plain)
            assert tls.recv(100) == b"hello\n"
            held.append(tls)
        assert _client(small_mda_side, pairs.mta) == b"refused"
        reach = next_hops.tunnel_reach(tunnel.Identity(*pairs.mta, pairs.mda[0]))
        assert [reach("127.0.0.1", small_mda_side) for _ in range(3)] == [None] * 3
    finally:
        for tls in held:
            tls.close()


def test_the_session_slots_come_from_the_pod_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(layout.TUNNEL_SESSIONS_ENV, "lmtp=216")
    assert tunnel.session_slots("lmtp") == 216
    monkeypatch.delenv(layout.TUNNEL_SESSIONS_ENV)
    assert tunnel.session_slots("lmtp") == tunnel.MAX_CONNECTIONS


def _lmtp_limit(master_cf: str) -> int:
    """The process limit of lmtp in ``master_cf``."""
    lmtp = [entry for entry in parse_master_cf(master_cf) if entry.command == "lmtp"]
    assert len(lmtp) == 1
    return process_limit(lmtp[0].maxproc)


def test_the_lmtp_slots_exceed_what_postfix_can_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each lmtp process holds one session: twice the process limit (a reload leaves the old
    processes their sessions) and a margin; the count comes from the value master.cf is
    rendered from, and agrees with the rendered text (also when the limit changes). No smtpd
    holds a tunnel any more: Postfix takes no logins (587 and 465 are Dovecot's)."""
    doc = {
        "apiVersion": API_VERSION,
        "kind": "MailDomain",
        "metadata": {"name": "example-com", "namespace": "mail"},
        "spec": {"domain": "example.com"},
    }
    (service,), problems = assemble([parse_maildomain(doc)], [])
    assert not problems
    # "-" in master.cf is default_process_limit: main.cf must leave Postfix's default.
    assert "default_process_limit" not in render_postfix_main_cf(service, "AA:BB")
    lmtp = _lmtp_limit(render_postfix_master_cf(service))
    assert lmtp == DEFAULT_PROCESS_LIMIT
    assert tunnel_sessions(service) == {"lmtp": 2 * lmtp + TUNNEL_SESSION_MARGIN}
    monkeypatch.setattr(postfix, "LMTP_PROCESSES", "7")
    assert _lmtp_limit(render_postfix_master_cf(service)) == 7
    assert tunnel_sessions(service) == {"lmtp": 2 * 7 + 16}
