"""Owns the tunnel listeners' first gate: a connection is served once its first TLS record (the
ClientHello) is whole, and only a bounded number may wait for it.

A TLS client sends its ClientHello right after connecting. Connections that send a record header
and nothing more (or nothing at all) would otherwise hold the listener's connection slots for the
whole handshake timeout, stopping LMTP delivery and logins: where the NetworkPolicy is not
enforced any pod can do that, and such connections may even come from the MTA's own address, so
per-address limits cannot tell them from the MTA. Instead they only wait (``MAX_WAITING`` at
most, ``HELLO_TIMEOUT`` each), and when every waiting place is taken a new connection cuts the
oldest: a real ClientHello is whole within milliseconds and leaves the waiting places long before
others can push it out. The bytes are peeked, not read, and stay for the handshake.
"""

from __future__ import annotations

import _socket  # not socket: see mailstack.agent.health
import _thread
import select
import time

HELLO_TIMEOUT = 1.0
MAX_WAITING = 64
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

    def __init__(self, limit: int = MAX_WAITING, timeout: float = HELLO_TIMEOUT) -> None:
        self.limit = limit
        self.timeout = timeout
        self.connections: dict[int, _socket.socket] = {}
        self.lock = _thread.allocate_lock()

    def add(self, conn: _socket.socket) -> None:
        """Count ``conn`` in, cutting the oldest when every place is taken (its ``hello`` sees
        the end of its stream)."""
        with self.lock:
            if len(self.connections) >= self.limit:
                oldest = self.connections.pop(next(iter(self.connections)))
                try:  # noqa: SIM105 (see agent.health)
                    oldest.shutdown(_socket.SHUT_RDWR)
                except OSError:
                    pass
            self.connections[id(conn)] = conn

    def hello(self, conn: _socket.socket) -> bool:
        """Wait for ``conn``'s first record; True when it came whole and ``conn`` was not cut
        meanwhile. Either way ``conn`` no longer waits."""
        whole = has_hello(conn, self.timeout)
        with self.lock:
            kept = self.connections.pop(id(conn), None) is conn
        return whole and kept
