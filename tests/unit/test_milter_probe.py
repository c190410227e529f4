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

from mailstack.agent.milter_probe import NO_REPLY, probe_milter_progress, probe_milter_scan

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


def serve_sessions(path: str, handlers: list[Handler]) -> socket.socket:
    """A fake milter on ``path`` that serves its n-th connection with ``handlers[n]``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)

    def run() -> None:
        for handler in handlers:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn, h=handler: h(c, []), daemon=True).start()

    threading.Thread(target=run, daemon=True).start()
    return listener


def slow(delay: float) -> Handler:
    def handle(conn: socket.socket, seen: list[bytes]) -> None:
        time.sleep(delay)  # a proxy parsing heavy messages first
        milter(0, [b"a"])(conn, seen)

    return handle


def test_a_busy_scanner_that_answers_late_is_healthy(tmp_path: Path) -> None:
    """The second probe scan waits 1.5 s (longer than a request may wait): still healthy, as the
    scan in flight is under its deadline; the next request sees its verdict."""
    path = str(tmp_path / "busy.sock")
    with serve_sessions(path, [milter(0, [b"a"]), slow(1.5), milter(0, [b"a"])]):
        probe = probe_milter_progress(path, deadline=5.0, wait=0.3)
        assert probe() is None
        started = time.monotonic()
        assert probe() is None
        assert time.monotonic() - started < 1.0
        time.sleep(1.5)
        assert probe() is None


def test_a_scanner_without_a_verdict_by_the_deadline_is_wedged(tmp_path: Path) -> None:
    path = str(tmp_path / "wedged.sock")
    with serve_sessions(path, [milter(0, [b"a"]), lambda conn, seen: time.sleep(3)]):
        probe = probe_milter_progress(path, deadline=0.5, wait=0.1)
        assert probe() is None
        assert probe() is None  # in flight, under its deadline
        time.sleep(0.8)
        problem = probe()
        assert problem is not None and "no scan verdict" in problem, problem


def test_no_verdict_yet_is_not_healthy(tmp_path: Path) -> None:
    """At start (the startup probe), a scan still waiting proves nothing."""
    path = str(tmp_path / "start.sock")
    with serve_sessions(path, [slow(1.0)]):
        problem = probe_milter_progress(path, deadline=5.0, wait=0.1)()
        assert problem == "no scan verdict yet"


def test_the_probe_deadline_outlasts_a_queue_of_bounded_scans() -> None:
    """Several heavy messages at rspamd's scan bound, one after the other, pass; the request wait
    stays under the kubelet's probe timeout."""
    from mailstack.agent.daemons import MILTER_PROBE_DEADLINE, MILTER_PROBE_SECONDS
    from mailstack.render.containers import probes
    from mailstack.render.rspamd import SCAN_TIMEOUT_SECONDS

    assert MILTER_PROBE_DEADLINE >= 6 * SCAN_TIMEOUT_SECONDS
    assert probes()["livenessProbe"]["timeoutSeconds"] > MILTER_PROBE_SECONDS
