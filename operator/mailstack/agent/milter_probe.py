"""The scanner's health: a test message scanned through the milter socket, within a deadline.

A socket that accepts connections says little about rspamd: its main process holds the listening
socket, so a connection is accepted (into the kernel's backlog) while every proxy worker is
stopped, wedged on one message or crashed and not yet replaced. Postfix only learns of it at
its milter timeouts, with a 451 for every sender. This probe speaks the milter protocol (the
one Postfix speaks, version 6) and is healthy only when a verdict for a small message comes
back in time. It honours the "no reply" flags the milter negotiates, so it asks exactly what
Postfix asks. Plain ``_socket`` and byte slicing, no struct or email modules: the agent runs
beside every daemon (see ``mailstack.agent.health``).

Busy is not dead: rspamd's proxies scan in their own event loops, so a probe's connection waits
behind every heavy message a proxy is parsing (up to the scan bound each, and a sender can queue
many). ``probe_milter_progress`` therefore keeps one probe scan in flight with a long deadline
and fails only when that scan fails, or gets no verdict within the deadline: a wedged or dead
scanner, which a restart helps; a busy one answers late but answers.
"""

from __future__ import annotations

import _socket
import _thread
import time

from mailstack.render import layout

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

PROTOCOL_VERSION = 6
# Actions the probe "allows" (add/change headers, recipients, body, quarantine): it applies none,
# but a milter may refuse a session that forbids what it is configured to do.
ACTIONS = 0x3F
# Protocol flags offered: the milter may skip replies to every command but end of body (what
# Postfix 3.7 offers too).
NO_REPLY = {
    b"C": 1 << 12,  # connect
    b"H": 1 << 13,  # HELO
    b"M": 1 << 14,  # MAIL FROM
    b"R": 1 << 15,  # RCPT TO
    b"L": 1 << 7,  # a header
    b"N": 1 << 18,  # end of headers
    b"B": 1 << 19,  # a body chunk
}
OFFERED = sum(NO_REPLY.values())
# Replies that end the message's scan (accept, continue, discard, reject, tempfail, reply code).
VERDICTS = frozenset(b"acdrty")
# Replies before the verdict at end of body: header and body changes, progress, quarantine.
MODIFICATIONS = frozenset(b"+-hibmpqe")
MAX_REPLY = 1 << 20
BODY_CHUNK = 65535  # the protocol's largest body packet

PROBE_MESSAGE = (
    ("From", f"mailstack health probe <{layout.MILTER_PROBE_SENDER}>"),
    ("To", "probe@localhost"),
    ("Subject", "mailstack health probe"),
    ("Message-ID", "<health-probe@localhost>"),
)
PROBE_BODY = b"A message the agent scans to check that the scanner answers.\r\n"


class MilterError(Exception):
    pass


def _packet(command: bytes, data: bytes = b"") -> bytes:
    return (len(data) + 1).to_bytes(4, "big") + command + data


def _recv_exact(conn: _socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        conn.settimeout(remaining)
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise MilterError("the milter closed the connection")
        data += chunk
    return data


def _reply(conn: _socket.socket, deadline: float) -> tuple[bytes, bytes]:
    size = int.from_bytes(_recv_exact(conn, 4, deadline), "big")
    if not 1 <= size <= MAX_REPLY:
        raise MilterError(f"a reply of {size} bytes")
    packet = _recv_exact(conn, size, deadline)
    return packet[:1], packet[1:]


def _message_commands(
    headers: tuple[tuple[str, str], ...], body: bytes, client: str
) -> list[bytes]:
    """The session of one message, in the order Postfix sends it."""
    fields = [_packet(b"L", f"{n}\0{v}\0".encode()) for n, v in headers]
    chunks = [_packet(b"B", body[i : i + BODY_CHUNK]) for i in range(0, len(body), BODY_CHUNK)]
    return [
        _packet(b"C", b"localhost\x004" + (0).to_bytes(2, "big") + client.encode() + b"\0"),
        _packet(b"H", b"localhost\0"),
        _packet(b"M", f"<{layout.MILTER_PROBE_SENDER}>\0".encode()),
        _packet(b"R", b"<probe@localhost>\0"),
        *fields,
        _packet(b"N"),
        *chunks,
    ]


def scan(
    path: str,
    timeout: float,
    headers: tuple[tuple[str, str], ...] = PROBE_MESSAGE,
    body: bytes = PROBE_BODY,
    client: str = "127.0.0.1",
) -> list[tuple[bytes, bytes]]:
    """Scan a message (by default the probe's) from ``client`` through the milter on the unix
    socket ``path``; return the replies to its end: modifications, then the verdict (``a``,
    ``c``, ``t``, ...). Raises OSError, TimeoutError or MilterError."""
    deadline = time.monotonic() + timeout
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout)
        conn.connect(path)
        optneg = PROTOCOL_VERSION.to_bytes(4, "big") + ACTIONS.to_bytes(4, "big")
        conn.sendall(_packet(b"O", optneg + OFFERED.to_bytes(4, "big")))
        code, data = _reply(conn, deadline)
        if code != b"O" or len(data) < 12:
            raise MilterError(f"option negotiation answered with {code!r}")
        skipped = int.from_bytes(data[8:12], "big")
        for command in _message_commands(headers, body, client):
            conn.sendall(command)
            if not skipped & NO_REPLY[command[4:5]]:
                code, _ = _reply(conn, deadline)
                if code != b"c":
                    raise MilterError(f"command {command[4:5]!r} answered with {code!r}")
        conn.sendall(_packet(b"E"))
        replies: list[tuple[bytes, bytes]] = []
        while not replies or replies[-1][0][0] not in VERDICTS:
            code, data = _reply(conn, deadline)
            if code[0] not in VERDICTS and code[0] not in MODIFICATIONS:
                raise MilterError(f"end of message answered with {code!r}")
            replies.append((code, data))
        conn.sendall(_packet(b"Q"))
        return replies
    finally:
        conn.close()


def probe_milter_scan(path: str, timeout: float) -> Callable[[], str | None]:
    """Healthy when the milter on ``path`` returns a verdict on a test message within
    ``timeout`` seconds."""

    def probe() -> str | None:
        started = time.monotonic()
        try:
            scan(path, timeout)
        except (OSError, MilterError) as err:  # TimeoutError is an OSError
            took = time.monotonic() - started
            return f"{path}: no scan verdict after {took:.1f} s: {err or 'timed out'}"
        return None

    return probe


class ScanProgress:
    """One probe scan in flight at a time (its own thread) and the outcome of the last one to end:
    the probe's state between the kubelet's calls."""

    def __init__(self, path: str, deadline: float) -> None:
        self.path = path
        self.deadline = deadline
        self.lock = _thread.allocate_lock()
        self.started: float | None = None  # the scan in flight, if any (monotonic)
        self.outcome: str | None = "no scan verdict yet"  # of the last scan to end

    def _scan(self) -> None:
        problem = probe_milter_scan(self.path, self.deadline)()
        with self.lock:
            self.outcome = problem
            self.started = None

    def check(self, wait: float) -> str | None:
        """Start a scan unless one is in flight, wait up to ``wait`` seconds for it, then
        answer from the last scan to end; a scan still waiting (under its deadline) does not
        count against the scanner."""
        with self.lock:
            if self.started is None:
                self.started = time.monotonic()
                _thread.start_new_thread(self._scan, ())
        until = time.monotonic() + wait
        while time.monotonic() < until:
            with self.lock:
                if self.started is None:
                    break
            time.sleep(0.02)
        with self.lock:
            return self.outcome


def probe_milter_progress(path: str, deadline: float, wait: float) -> Callable[[], str | None]:
    """Healthy while the last probe scan on ``path`` got a verdict and the one in flight, if any,
    is younger than ``deadline`` (its own timeout); each call waits up to ``wait`` seconds for a
    fresh verdict, so an idle scanner is judged on the current scan."""
    progress = ScanProgress(path, deadline)
    return lambda: progress.check(wait)
