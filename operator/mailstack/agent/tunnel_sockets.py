"""Owns the ends of the agents' tunnels that are plain sockets: the TCP and unix listeners and
the connector to a unix socket (agent.tunnel carries the bytes).
Like agent.tunnel it uses the C modules under ``socket`` only (see its docstring).
"""

from __future__ import annotations

import _socket  # not socket: see mailstack.agent.tunnel
import os

from mailstack.agent.tunnel_hello import LISTEN_BACKLOG

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Socket(_socket.socket):
    """``_socket.socket`` that ``_ssl`` can wrap: it keeps a weak reference to the socket."""

    __slots__ = ("__weakref__",)


def tcp_listener(port: int) -> _socket.socket:
    """A listener on every address of the pod: IPv6 and IPv4 where the pod has IPv6."""
    for family, host in ((_socket.AF_INET6, "::"), (_socket.AF_INET, "0.0.0.0")):
        try:
            listener = _socket.socket(family, _socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 in this pod
        try:
            listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            if family == _socket.AF_INET6:
                listener.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 0)
            listener.bind((host, port))
        except OSError:
            listener.close()
            if family == _socket.AF_INET:
                raise
            continue
        listener.listen(LISTEN_BACKLOG)
        return listener
    raise OSError(f"cannot listen on port {port}")


def unix_listener(path: str, owner: tuple[int, int] | None = None) -> _socket.socket:
    """A listener on a unix socket that only ``owner`` (uid, gid), or our own user, may use."""
    if os.path.exists(path):
        os.unlink(path)  # left by the container's previous run
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    listener.bind(path)
    if owner is not None:
        os.chown(path, *owner)
    os.chmod(path, 0o600)
    listener.listen(64)
    return listener


def unix_connector(path: str) -> Callable[[], _socket.socket]:
    def connect() -> _socket.socket:
        sock = Socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return sock

    return connect
