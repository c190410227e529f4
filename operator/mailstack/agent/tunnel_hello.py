"""Owns the tunnel listeners' first gate: a connection is served once its first TLS record (the
ClientHello) is whole and its handshake done, and only a bounded number may wait for that.

A TLS client sends its ClientHello right after connecting. Connections that send a record header
and nothing more (or nothing at all) would otherwise hold the listener's connection slots for the
whole handshake timeout, stopping LMTP delivery and logins: where the NetworkPolicy is not
enforced any pod can do that, and such connections may even come from the MTA's own address, so
per-address limits cannot tell them from the MTA. Instead they only wait (``MAX_WAITING`` at
most, ``HELLO_TIMEOUT`` each, then the handshake's deadline: a whole ClientHello followed by
silence waits too, and takes no session slot); when every waiting place is taken, the listener
cuts the oldest once it has waited ``MIN_WAIT`` and accepts nothing until then. A real
ClientHello is whole when its connection is accepted, and the MTA's handshake takes
milliseconds, so it passes before it is the oldest; cut connections that reconnect at once
find the next place only after ``MIN_WAIT``, which bounds the churn, and the listen queue
(``LISTEN_BACKLOG``) holds the MTA's connection meanwhile. The bytes are peeked, not read, and
stay for the handshake.
"""

from __future__ import annotations

import _socket  # not socket: see mailstack.agent.health
import _thread
import select
import time

HELLO_TIMEOUT = 1.0
MAX_WAITING = 256
MIN_WAIT = 0.25
LISTEN_BACKLOG = 1024
TLS_HANDSHAKE_RECORD = 0x16
MAX_RECORD = 5 + 16384 + 2048  # header and the largest (encrypted) record


def has_hello(conn: _socket.socket, timeout: float) -> bool:
    """Whether a whole first TLS handshake record arrives on ``conn`` within ``timeout``; the
    bytes stay unread (peeked), for the handshake."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            poller = select.poll()  # not select.select: descriptors may be over 1023
            poller.register(conn.fileno(), select.POLLIN)
            if not poller.poll(remaining * 1000):
                return False
            head = conn.recv(MAX_RECORD, _socket.MSG_PEEK)
        except OSError:
            return False
        if not head or head[0] != TLS_HANDSHAKE_RECORD:
            return False  # closed, cut, or not TLS
        if len(head) >= 5 and len(head) >= 5 + int.from_bytes(head[3:5], "big"):
            return True
        time.sleep(0.05)  # part of the record: its bytes stay readable, so select would spin


class Waiting:
    """The connections waiting for their first record, oldest first (dicts keep their order)."""

    def __init__(self) -> None:
        self.timeout = HELLO_TIMEOUT
        self.connections: dict[int, tuple[_socket.socket, float]] = {}
        self.lock = _thread.allocate_lock()

    def make_room(self) -> None:
        """Return once a place is free: at once, or after cutting the oldest connection when it
        has waited ``MIN_WAIT`` (its ``hello`` sees the end of its stream)."""
        while True:
            with self.lock:
                if len(self.connections) < MAX_WAITING:  # read here: tests lower it
                    return
                key = next(iter(self.connections))
                oldest, since = self.connections[key]
                young = since + MIN_WAIT - time.monotonic()
                if young <= 0:
                    del self.connections[key]
                    try:  # noqa: SIM105 (see agent.health)
                        oldest.shutdown(_socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
            time.sleep(young)

    def add(self, conn: _socket.socket) -> None:
        with self.lock:
            self.connections[id(conn)] = (conn, time.monotonic())

    def hello(self, conn: _socket.socket) -> bool:
        """Wait for ``conn``'s first record; True when it came whole. ``conn`` still waits (its
        handshake comes next): ``leave`` ends that."""
        return has_hello(conn, self.timeout)

    def leave(self, conn: _socket.socket) -> bool:
        """``conn`` no longer waits; True when it was not cut meanwhile."""
        with self.lock:
            kept = self.connections.pop(id(conn), None)
        return kept is not None and kept[0] is conn
