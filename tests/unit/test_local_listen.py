"""``mailstack up --listen``: which addresses it takes, and the user-space relay that publishes
the IPv6 loopback (which Linux cannot DNAT)."""

from __future__ import annotations

import socket
import threading

import pytest

from mailstack.local.loopback6 import LoopbackRelay
from mailstack.local.network import listen_address, ports_in_use


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("[::1]", "::1"), ("::1", "::1")],
)
def test_ipv4_addresses_and_the_ipv6_loopback_are_taken(value: str, expected: str) -> None:
    assert listen_address(value) == expected


@pytest.mark.parametrize("value", ["[2001:db8::1]", "::", "localhost", "127.0.0.256", "[::1"])
def test_other_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        listen_address(value)


def test_a_taken_ipv6_loopback_port_is_found() -> None:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as taken:
        port = taken.getsockname()[1]
        assert ports_in_use(["::1"], [port]) == [f"[::1]:{port}"]
    assert ports_in_use(["::1"], [port]) == []


def test_the_relay_carries_ipv6_loopback_clients_to_the_pod_address() -> None:
    backend = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        conn, peer = backend.accept()
        with conn:
            seen.append(peer[0])
            conn.sendall(b"220 hello\r\n" + conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    relay = LoopbackRelay()
    relay.start([(port, "127.0.0.1", backend.getsockname()[1])])
    try:
        with socket.create_connection(("::1", port), timeout=5) as client:
            client.sendall(b"EHLO x\r\n")
            received = b""
            while not received.endswith(b"EHLO x\r\n"):
                chunk = client.recv(100)
                assert chunk, received
                received += chunk
        assert received == b"220 hello\r\nEHLO x\r\n"
        assert seen == ["127.0.0.1"]
    finally:
        relay.stop()
        backend.close()
    # Stopped: nothing listens there any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("::1", port), timeout=5)
