"""Owns the dovecot agent's mutual-TLS tunnel, the only way to Dovecot's LMTP service.

Dovecot cannot demand a client certificate on LMTP (``ssl_verify_client_cert`` only asks for
one). So LMTP listens on a unix socket inside the MDA pod, and the dovecot container's agent
serves ``LMTP_PORT`` over TLS for the MTA's certificate alone, passing the bytes on to that
socket. In the MTA pod, Postfix's LMTP client speaks TLS itself (it presents the MTA's
certificate and pins the MDA's); the client side here (``handshake``) is the MTA's readiness
probe's (agent.next_hops). Postfix takes no logins any more (587 and 465 are Dovecot's), so
no SASL is carried.

Pinning: each side holds the other's self-signed certificate (the public part) and accepts that
certificate only, compared byte for byte after the handshake; no CA takes part. The files are
read for every connection, so new material is used without a restart. Each connection has one
thread (``_thread``, as the health server), which does the handshake and then moves bytes both
ways with ``select``: an ``SSLSocket`` must not be read and written from two threads at once.
The agent imports ``_ssl`` only when it runs a tunnel or probes one (about 2.5 MB more RSS in
the postfix and dovecot containers; the rspamd container does neither): the C modules under
``ssl`` and ``socket``, as ``agent.health`` uses them, since ``ssl`` and ``socket`` with their
enums made it about 8 MB.
"""

from __future__ import annotations

import _socket  # not socket, nor ssl: see the docstring
import _ssl
import _thread
import binascii
import os
import select
import sys

from mailstack.agent.tunnel_hello import Waiting
from mailstack.agent.tunnel_sockets import (
    Socket,
    tcp_listener,
    unix_connector,
)
from mailstack.render import layout

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    class _TlsObject(Protocol):
        """What ``_SSLContext._wrap_socket`` returns (typeshed does not describe it)."""

        def do_handshake(self) -> None: ...
        def read(self, size: int) -> bytes: ...
        def write(self, data: bytes) -> int: ...
        def pending(self) -> int: ...
        def getpeercert(self, binary_form: bool) -> bytes | None: ...


# A peer that has not finished the TLS handshake by then is dropped (the MTA's takes milliseconds).
HANDSHAKE_TIMEOUT = 3.0
# A session with no byte either way for this long is closed (Postfix reconnects when it needs to).
IDLE_TIMEOUT = 3600.0
# Sessions (past the handshake, the pinned certificate shown) relayed at once when
# ``layout.TUNNEL_SESSIONS_ENV`` does not say; more are closed at once. The renderer sets it
# above what Postfix's process limits let it open, so only Postfix itself could fill them.
MAX_CONNECTIONS = 200
# Sessions of the MTA's readiness probe (its handshakes ask for
# ``layout.TUNNEL_PROBE_SERVER_NAME``), on slots of their own: each lasts one greeting.
PROBE_SESSIONS = 4

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
            text = handle.read()
        begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
        if begin not in text or end not in text:
            raise ValueError(f"{self.peer} holds no PEM certificate")
        return binascii.a2b_base64(text.split(begin, 1)[1].split(end, 1)[0])

    def context(self, server_side: bool) -> _ssl._SSLContext:
        """A TLS context presenting our certificate. A server requires a client certificate
        that verifies against the pinned one (self-signed: it is its own trust anchor); a
        client checks the server's certificate only by the comparison after the handshake, as
        the MDA's certificate is a client certificate. TLS 1.3 only: both ends are ours (Postfix's
        LMTP client asks for it too), and its suites are all AEAD."""
        protocol = _ssl.PROTOCOL_TLS_SERVER if server_side else _ssl.PROTOCOL_TLS_CLIENT
        context = _ssl._SSLContext(protocol)
        context.minimum_version = _ssl.PROTO_TLSv1_3
        context.load_cert_chain(self.cert, self.key)
        if server_side:
            context.verify_mode = _ssl.CERT_REQUIRED
            context.load_verify_locations(self.peer)
        else:
            context.check_hostname = False
            context.verify_mode = _ssl.CERT_NONE
        return context


class Session:
    """A TLS session over a socket (``_ssl``'s object, which does not own the socket)."""

    def __init__(self, sock: _socket.socket, tls: _TlsObject) -> None:
        self.sock = sock
        self.tls = tls

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, size: int) -> bytes:
        return self.tls.read(size)

    def send(self, data: bytes) -> int:
        return self.tls.write(data)

    def pending(self) -> int:
        return self.tls.pending()

    def close(self) -> None:
        self.sock.close()


def handshake(
    sock: _socket.socket,
    identity: Identity,
    server_side: bool,
    server_name: str | None = None,
    names_asked: list[str] | None = None,
) -> Session:
    """The TLS session over ``sock`` once the peer showed the pinned certificate; raises
    ``OSError`` (``_ssl.SSLError`` among them) otherwise; the socket is the caller's to close.
    A client asks for ``server_name`` (SNI); a server appends the name asked to ``names_asked``."""
    sock.settimeout(HANDSHAKE_TIMEOUT)
    context = identity.context(server_side)
    if names_asked is not None:
        context.sni_callback = lambda _tls, name, _context: names_asked.append(name or "")
    tls: _TlsObject = context._wrap_socket(sock, server_side, server_name)  # type: ignore[attr-defined]
    tls.do_handshake()
    if tls.getpeercert(True) != identity.pinned():
        raise _ssl.SSLError("the peer's certificate is not the pinned one")
    return Session(sock, tls)


def relay(session: Session, plain: _socket.socket, idle: float = IDLE_TIMEOUT) -> None:
    """Move bytes both ways until either side closes, errs or stays idle ``idle`` seconds."""
    session.sock.setblocking(False)
    plain.setblocking(False)
    tls: Session | _socket.socket = session
    both: tuple[Session | _socket.socket, Session | _socket.socket] = (tls, plain)
    other = {tls: plain, plain: tls}
    # Bytes read from one side and not yet written to the other, keyed by the receiver.
    waiting: dict[Session | _socket.socket, bytes] = {tls: b"", plain: b""}
    retry = (_ssl.SSLWantReadError, _ssl.SSLWantWriteError, BlockingIOError)
    ended = False
    try:
        while not ended or waiting[tls] or waiting[plain]:
            readers = [] if ended else [s for s in both if not waiting[other[s]]]
            writers = [s for s in both if waiting[s]]
            ready: list[Session | _socket.socket]
            writable: list[Session | _socket.socket]
            if tls in readers and session.pending():
                ready, writable = [tls], []  # decrypted bytes that select cannot see
            else:
                ready, writable, _ = select.select(readers, writers, [], idle)
                if not ready and not writable:
                    return
            for side in ready:
                try:
                    data = side.recv(CHUNK)
                except retry:
                    continue
                if not data:
                    ended = True
                    break
                waiting[other[side]] += data
            for side in writable:
                try:
                    sent = side.send(waiting[side])
                except retry:
                    continue
                waiting[side] = waiting[side][sent:]
    except OSError:
        return
    finally:
        session.close()
        plain.close()


class Tunnel:
    """One TLS listener and the connections it relays to a plain target."""

    def __init__(
        self,
        name: str,
        listener: _socket.socket,
        connect: Callable[[], _socket.socket],
        identity: Identity,
        slots: int = MAX_CONNECTIONS,
    ) -> None:
        self.name = name
        self.listener = listener
        self.connect = connect
        self.identity = identity
        self.slots = slots
        self.active = 0
        self.probes = 0
        self.waiting = Waiting()  # connections before their session: hello and handshake
        self.closed = False
        self.lock = _thread.allocate_lock()

    def serve_forever(self) -> None:
        while not self.closed:
            self.waiting.make_room()
            try:
                # The C method that socket.socket.accept wraps (typeshed does not list it).
                fd, _ = self.listener._accept()  # type: ignore[attr-defined]
            except OSError:
                if self.closed:
                    return
                continue
            conn = Socket(fileno=fd)
            self.waiting.add(conn)
            _thread.start_new_thread(self._serve_after_hello, (conn,))

    def _take_slot(self, probe: bool) -> bool:
        with self.lock:
            if probe and self.probes < PROBE_SESSIONS:
                self.probes += 1
                return True
            if not probe and self.active < self.slots:
                self.active += 1
                return True
            return False

    def _free_slot(self, probe: bool) -> None:
        with self.lock:
            if probe:
                self.probes -= 1
            else:
                self.active -= 1

    def _serve_after_hello(self, conn: _socket.socket) -> None:
        """A connection stays with the waiting ones, which the listener cuts when they hold
        every place, until its handshake is done: one that sends a whole ClientHello and then
        nothing takes no session slot, and only the peer with the pinned certificate does."""
        tls: Session | None = None
        names: list[str] = []
        try:
            if self.waiting.hello(conn):
                tls = handshake(conn, self.identity, server_side=True, names_asked=names)
        except (OSError, ValueError) as err:  # _ssl.SSLError is an OSError
            _log(f"{self.name}: connection refused or failed: {err}")
        probe = layout.TUNNEL_PROBE_SERVER_NAME in names
        if not self.waiting.leave(conn) or tls is None or not self._take_slot(probe):
            conn.close()
            return
        target: _socket.socket | None = None
        try:
            target = self.connect()
            relay(tls, target)
        except OSError as err:
            _log(f"{self.name}: connection failed: {err}")
        finally:
            conn.close()
            if target is not None:
                target.close()
            self._free_slot(probe)

    def problem(self) -> str | None:
        """For the readiness probe: None while the tunnel listens."""
        return f"the {self.name} tunnel is closed" if self.closed else None

    def shutdown(self) -> None:
        self.closed = True
        try:  # noqa: SIM105 (see agent.health)
            self.listener.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def session_slots(name: str) -> int:
    """The sessions the tunnel ``name`` carries at once: ``layout.TUNNEL_SESSIONS_ENV``
    (``lmtp=N``, the pod spec's), else ``MAX_CONNECTIONS``."""
    for item in os.environ.get(layout.TUNNEL_SESSIONS_ENV, "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == name and value.strip().isdigit():
            return int(value)
    return MAX_CONNECTIONS


def start(tunnel: Tunnel) -> Tunnel:
    _thread.start_new_thread(tunnel.serve_forever, ())
    return tunnel


def open_dovecot_tunnels() -> list[Tunnel]:
    """LMTP over TLS, for the MTA's certificate only, onto Dovecot's unix socket."""
    identity = Identity(layout.MDA_CLIENT_CERT, layout.MDA_CLIENT_KEY, layout.MTA_CLIENT_CERT)
    port = layout.LMTP_PORT
    listener = tcp_listener(port.number)
    connect = unix_connector(layout.DOVECOT_LMTP_SOCKET)
    return [start(Tunnel(port.name, listener, connect, identity, session_slots(port.name)))]


def open_tunnels(daemon: str) -> list[Tunnel]:
    """The tunnels of the agent beside ``daemon``, listening."""
    return {"dovecot": open_dovecot_tunnels}[daemon]()
