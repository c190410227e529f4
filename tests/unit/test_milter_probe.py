"""The agent's scan probe against fake milters: it must speak the milter protocol as Postfix
does (honouring the "no reply" flags negotiated), be healthy on any verdict, and fail within its
deadline when the milter accepts the connection but never answers (a stopped or wedged rspamd:
its main process holds the listening socket)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailstack.agent.milter_probe import NO_REPLY, probe_milter_scan

Handler = Callable[[socket.socket, list[bytes]], None]


def read_packet(conn: socket.socket) -> tuple[bytes, bytes]:
    size = int.from_bytes(conn.recv(4, socket.MSG_WAITALL), "big")
    packet = conn.recv(size, socket.MSG_WAITALL)
    return packet[:1], packet[1:]


def send_packet(conn: socket.socket, code: bytes, data: bytes = b"") -> None:
    conn.sendall((len(data) + 1).to_bytes(4, "big") + code + data)


def milter(skips: int, verdict: list[bytes]) -> Handler:
    """A milter that skips the replies ``skips`` names and ends a message with ``verdict``."""

    def handle(conn: socket.socket, seen: list[bytes]) -> None:
        code, data = read_packet(conn)
        seen.append(code)
        send_packet(conn, b"O", data[:8] + skips.to_bytes(4, "big"))
        while True:
            code, _ = read_packet(conn)
            seen.append(code)
            if code in (b"Q", b""):
                return
            if code == b"E":
                for reply in verdict:
                    send_packet(conn, reply)
            elif not skips & NO_REPLY[code]:
                send_packet(conn, b"c")

    return handle


def settled(seen: list[bytes]) -> list[bytes]:
    """What the fake milter saw, once it has read the probe's last packet (its thread)."""
    deadline = time.monotonic() + 2
    while (not seen or seen[-1] != b"Q") and time.monotonic() < deadline:
        time.sleep(0.01)
    return seen


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Handler], tuple[str, list[bytes]]]]:
    listeners: list[socket.socket] = []

    def start(handler: Handler) -> tuple[str, list[bytes]]:
        path = str(tmp_path / f"milter{len(listeners)}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(4)
        listeners.append(listener)
        seen: list[bytes] = []

        def run() -> None:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                handler(conn, seen)

        threading.Thread(target=run, daemon=True).start()
        return path, seen

    yield start
    for listener in listeners:
        listener.close()


def test_a_verdict_after_header_changes_is_healthy_and_the_session_is_postfixs(
    serve: Callable[[Handler], tuple[str, list[bytes]]],
) -> None:
    everything_skipped = sum(NO_REPLY.values())
    path, seen = serve(milter(everything_skipped, [b"h", b"a"]))
    assert probe_milter_scan(path, 3.0)() is None
    assert b"".join(settled(seen)) == b"OCHMRLLLLNBEQ"


def test_replies_the_milter_did_not_waive_are_read(
    serve: Callable[[Handler], tuple[str, list[bytes]]],
) -> None:
    """A milter that answers every command (no "no reply" flag): a tempfail is still a verdict,
    so the scanner is alive."""
    path, seen = serve(milter(0, [b"t"]))
    assert probe_milter_scan(path, 3.0)() is None
    assert settled(seen)[-2:] == [b"E", b"Q"]


def test_a_milter_that_accepts_but_never_answers_fails_within_the_deadline(
    serve: Callable[[Handler], tuple[str, list[bytes]]],
) -> None:
    path, _ = serve(lambda conn, seen: time.sleep(3))
    started = time.monotonic()
    problem = probe_milter_scan(path, 0.5)()
    assert time.monotonic() - started < 1.5
    assert problem is not None and "no scan verdict" in problem and "timed out" in problem


def test_a_missing_socket_and_a_garbled_answer_are_problems(
    serve: Callable[[Handler], tuple[str, list[bytes]]], tmp_path: Path
) -> None:
    missing = probe_milter_scan(str(tmp_path / "none.sock"), 0.5)()
    assert missing is not None and "No such file" in missing

    def garbled(conn: socket.socket, seen: list[bytes]) -> None:
        read_packet(conn)  # the option negotiation, or the probe could see a reset instead
        send_packet(conn, b"x")

    path, _ = serve(garbled)
    garbled = probe_milter_scan(path, 0.5)()
    assert garbled is not None and "option negotiation answered with b'x'" in garbled
