"""Owns the agents' mutual-TLS tunnels, the only way to Dovecot's LMTP and auth services.

Dovecot cannot demand a client certificate on LMTP (``ssl_verify_client_cert`` only asks for
one; ``auth_ssl_require_client_cert`` concerns logins), and neither its auth service nor
Postfix's Dovecot SASL client speaks TLS. So both services listen on unix sockets inside the MDA
pod, and the dovecot container's agent serves ``LMTP_PORT`` and ``SASL_PORT`` over TLS for the
MTA's certificate alone, passing the bytes on to those sockets. In the MTA pod, Postfix's LMTP
client speaks TLS itself (it presents the MTA's certificate and pins the MDA's); its SASL client
cannot, so the postfix container's agent takes it on a unix socket and carries it to
``SASL_PORT`` the same way (the ``client`` side here).

Pinning: each side holds the other's self-signed certificate (the public part) and accepts that
certificate only, compared byte for byte after the handshake; no CA takes part. The files are
read for every connection, so new material is used without a restart. Each connection has one
thread (``_thread``, as the health server), which does the handshake and then moves bytes both
ways with ``select``: an ``SSLSocket`` must not be read and written from two threads at once.
The agent imports ``ssl`` only when it runs a tunnel (about 6 MB in the postfix and dovecot
containers; the rspamd container runs none).
"""

from __future__ import annotations

import _thread
import os
import select
import socket
import ssl
import sys

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# A peer that has not finished the TLS handshake by then is dropped.
HANDSHAKE_TIMEOUT = 10.0
# A session with no byte either way for this long is closed (Postfix reconnects when it needs to).
IDLE_TIMEOUT = 3600.0
# Connections served at once; more wait in the listen queue.
MAX_CONNECTIONS = 200
CHUNK = 65536


def _log(message: str) -> None:
    print(f"mailstack-agent: tunnel: {message}", file=sys.stderr, flush=True)


class Identity:
    """Where one end's certificate and key are, and the peer's certificate it accepts."""

    __slots__ = ("cert", "key", "peer")

    def __init__(self, cert: str, key: str, peer: str) -> None:
        self.cert = cert
        self.key = key
        self.peer = peer

    def pinned(self) -> bytes:
        """The DER form of the one certificate the peer must present."""
        with open(self.peer, encoding="ascii") as handle:
            return ssl.PEM_cert_to_DER_cert(handle.read())

    def context(self, server_side: bool) -> ssl.SSLContext:
        """A TLS context presenting our certificate. A server requires a client certificate
        that verifies against the pinned one (self-signed: it is its own trust anchor); a
        client checks the server's certificate only by the comparison after the handshake, as
        the MDA's certificate is a client certificate."""
        protocol = ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT
        context = ssl.SSLContext(protocol)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if server_side:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.peer)
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def handshake(sock: socket.socket, identity: Identity, server_side: bool) -> ssl.SSLSocket:
    """The TLS session over ``sock`` once the peer showed the pinned certificate; raises
    ``ssl.SSLError`` or ``OSError`` otherwise (the socket is then the caller's to close)."""
    sock.settimeout(HANDSHAKE_TIMEOUT)
    tls = identity.context(server_side).wrap_socket(sock, server_side=server_side)
    if tls.getpeercert(binary_form=True) != identity.pinned():
        tls.close()
        raise ssl.SSLError("the peer's certificate is not the pinned one")
    return tls


def relay(tls: ssl.SSLSocket, plain: socket.socket, idle: float = IDLE_TIMEOUT) -> None:
    """Move bytes both ways until either side closes, errs or stays idle ``idle`` seconds."""
    tls.setblocking(False)
    plain.setblocking(False)
    other: dict[socket.socket, socket.socket] = {tls: plain, plain: tls}
    # Bytes read from one socket and not yet written to the other, keyed by the receiver.
    waiting: dict[socket.socket, bytes] = {tls: b"", plain: b""}
    ended = False
    try:
        while not ended or waiting[tls] or waiting[plain]:
            both: tuple[socket.socket, socket.socket] = (tls, plain)
            readers = [] if ended else [s for s in both if not waiting[other[s]]]
            writers = [s for s in both if waiting[s]]
            ready: list[socket.socket]
            writable: list[socket.socket]
            if tls in readers and tls.pending():
                ready, writable = [tls], []  # decrypted bytes that select cannot see
            else:
                ready, writable, _ = select.select(readers, writers, [], idle)
                if not ready and not writable:
                    return
            for sock in ready:
                try:
                    data = sock.recv(CHUNK)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue
                if not data:
                    ended = True
                    break
                waiting[other[sock]] += data
            for sock in writable:
                try:
                    sent = sock.send(waiting[sock])
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue
                waiting[sock] = waiting[sock][sent:]
    except OSError:
        return
    finally:
        tls.close()
        plain.close()


class Tunnel:
    """One listener and the connections it relays. ``accept_tls``: the listener speaks TLS and
    the target is plain (the MDA side); otherwise the reverse (the MTA side)."""

    def __init__(
        self,
        name: str,
        listener: socket.socket,
        connect: Callable[[], socket.socket],
        identity: Identity,
        accept_tls: bool,
    ) -> None:
        self.name = name
        self.listener = listener
        self.connect = connect
        self.identity = identity
        self.accept_tls = accept_tls
        self.active = 0
        self.closed = False
        self.lock = _thread.allocate_lock()

    def serve_forever(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                if self.closed:
                    return
                continue
            with self.lock:
                if self.active >= MAX_CONNECTIONS:
                    conn.close()
                    continue
                self.active += 1
            _thread.start_new_thread(self._serve, (conn,))

    def _serve(self, conn: socket.socket) -> None:
        target: socket.socket | None = None
        try:
            if self.accept_tls:
                tls = handshake(conn, self.identity, server_side=True)
                target = self.connect()
                relay(tls, target)
            else:
                target = self.connect()
                relay(handshake(target, self.identity, server_side=False), conn)
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            _log(f"{self.name}: connection refused or failed: {err}")
        finally:
            conn.close()
            if target is not None:
                target.close()
            with self.lock:
                self.active -= 1

    def problem(self) -> str | None:
        """For the readiness probe: None while the tunnel listens."""
        return f"the {self.name} tunnel is closed" if self.closed else None

    def shutdown(self) -> None:
        self.closed = True
        try:  # noqa: SIM105 (see agent.health)
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def tcp_listener(port: int) -> socket.socket:
    """A listener on every address of the pod, IPv6 and IPv4 where the pod has IPv6."""
    if socket.has_ipv6:
        try:
            listener = socket.create_server(
                ("::", port), family=socket.AF_INET6, dualstack_ipv6=True
            )
        except OSError:
            pass
        else:
            return listener
    return socket.create_server(("0.0.0.0", port))


def unix_listener(path: str, owner: tuple[int, int] | None = None) -> socket.socket:
    """A listener on a unix socket that only ``owner`` (uid, gid), or our own user, may use."""
    if os.path.exists(path):
        os.unlink(path)  # left by the container's previous run
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    if owner is not None:
        os.chown(path, *owner)
    os.chmod(path, 0o600)
    listener.listen(64)
    return listener


def unix_connector(path: str) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return sock

    return connect


def tcp_connector(address: str) -> Callable[[], socket.socket]:
    """Connects to ``host:port`` (a Service name, resolved at each connection)."""
    host, _, port = address.rpartition(":")

    def connect() -> socket.socket:
        return socket.create_connection((host.strip("[]"), int(port)), timeout=HANDSHAKE_TIMEOUT)

    return connect


def start(tunnel: Tunnel) -> Tunnel:
    _thread.start_new_thread(tunnel.serve_forever, ())
    return tunnel
