"""Owns the publication of ``mailstack up``'s ports on the IPv6 loopback, ``[::1]``: the one
place where connections are relayed in user space.

Linux cannot DNAT IPv6 loopback traffic to another host: IPv6 has no ``route_localnet``, and a
packet from ``::1`` never leaves ``lo`` (measured: the nftables rule that publishes 127.0.0.1
leaves a ``[::1]`` client waiting). A loopback client is masqueraded to the host's bridge
address anyway (``local.network``), so a connection relayed from this process to the pod's
address shows the pod the same client: the host. Every other address keeps DNAT and the real
client address. One thread per listener and per connection, bytes moved with ``select``.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

CONNECT_TIMEOUT = 10.0
CHUNK = 65536


def _pipe(client: socket.socket, address: str, port: int) -> None:
    try:
        upstream = socket.create_connection((address, port), timeout=CONNECT_TIMEOUT)
    except OSError:
        client.close()  # as a refused DNAT would: the client sees the connection end
        return
    with client, upstream:
        upstream.settimeout(None)
        ends = {client: upstream, upstream: client}
        while True:
            readable, _, _ = select.select(list(ends), [], [])
            for sock in readable:
                try:
                    data = sock.recv(CHUNK)
                except OSError:
                    return
                if not data:
                    return
                try:
                    ends[sock].sendall(data)
                except OSError:
                    return


class LoopbackRelay:
    """``[::1]:port`` relayed to ``address:target`` for each published port, until ``stop``."""

    def __init__(self) -> None:
        self.listeners: list[socket.socket] = []

    @staticmethod
    def bind(port: int) -> socket.socket:
        """A listening socket on ``[::1]:port`` (IPv6 only); ``OSError`` when it is taken."""
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("::1", port))
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        return listener

    def start(self, forwards: list[tuple[int, str, int]]) -> None:
        """Listen on each published port and relay what arrives to the pod's address."""
        for port, address, target in forwards:
            listener = self.bind(port)
            self.listeners.append(listener)
            threading.Thread(
                target=self._accept, args=(listener, address, target), daemon=True
            ).start()

    @staticmethod
    def _accept(listener: socket.socket, address: str, target: int) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=_pipe, args=(client, address, target), daemon=True).start()

    def stop(self) -> None:
        """Close the listeners (connections in flight end with the process)."""
        for listener in self.listeners:
            with contextlib.suppress(OSError):  # wakes the accepting thread (close does not)
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.listeners = []
