"""Owns the tripwire's agent side: a Postfix policy service that notes the clients of the public
listeners whose address lies in the cluster's own ranges, and the last of those observations.

Postfix decides who is masked (main.cf: a ``cidr:`` table of the operator's clusterNetworks on
the public listeners leads to ``check_policy_service`` on ``layout.TRIPWIRE_SOCKET``); this
service only notes the client address, the port it came to and when, and always answers
``DUNNO``: the client is judged as any public client. Postfix calls it with ``default_action =
DUNNO`` and a short timeout, so a stopped agent costs mail nothing. The observations stay in
memory (a restarted pod forgets them; the operator keeps its own) and are served as text on the
agent's health server (``layout.MASKED_CLIENTS_PATH``), one line per address and port: ``address
port count seconds-since-last``, ages rather than times so that the two clocks need not agree.
The operator reads them (controller/tripwire.py): the mail pods get no Kubernetes API access.
"""

from __future__ import annotations

import _socket  # not socket: see mailstack.agent.health
import _thread
import pwd
import sys
import time

from mailstack.agent.health import Acceptor
from mailstack.agent.tunnel_sockets import unix_listener
from mailstack.render import layout

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Distinct (address, port) pairs kept; the least recently seen goes first. A masked setup shows
# a few addresses (the nodes, an ingress's pods), not thousands.
MAX_OBSERVATIONS = 32
# A policy request is a few hundred bytes; a client of this socket is Postfix alone.
REQUEST_MAX = 16384
IDLE_TIMEOUT = 300.0  # smtpd keeps its connection between requests (max_idle is 100 s)


class _Seen:
    __slots__ = ("count", "instance", "last")

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.instance = ""


class MaskedClients:
    """The last observations, by (address, port): how many mail transactions (Postfix's
    ``instance``, not each RCPT) and when the last was seen."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seen: dict[tuple[str, str], _Seen] = {}
        self.lock = _thread.allocate_lock()

    def note(self, address: str, port: str, instance: str) -> bool:
        """Note one request; True when the pair is new (worth a log line)."""
        with self.lock:
            key = (address, port)
            entry = self.seen.pop(key, None)
            new = entry is None
            if entry is None:
                entry = _Seen()
            if entry.count == 0 or entry.instance != instance or not instance:
                entry.count += 1
            entry.last, entry.instance = self.clock(), instance
            self.seen[key] = entry  # re-inserted: the dict's order is the recency
            while len(self.seen) > MAX_OBSERVATIONS:
                del self.seen[next(iter(self.seen))]
            return new

    def text(self) -> str:
        """One line per pair: ``address port count seconds-since-last``."""
        now = self.clock()
        with self.lock:
            lines = [
                f"{address} {port} {entry.count} {int(now - entry.last)}\n"
                for (address, port), entry in self.seen.items()
            ]
        return "".join(lines)


def parse_request(data: bytes) -> dict[str, str]:
    """The attributes of one policy request (``name=value`` lines up to a blank line)."""
    attributes = {}
    for line in data.decode("latin-1").split("\n"):
        name, sep, value = line.partition("=")
        if sep:
            attributes[name] = value
    return attributes


def _serve(clients: MaskedClients, conn: _socket.socket) -> None:
    """Answer the requests of one Postfix connection, each with DUNNO."""
    buffer = b""
    try:
        conn.settimeout(IDLE_TIMEOUT)
        while True:
            while b"\n\n" not in buffer:
                chunk = conn.recv(4096)
                if not chunk or len(buffer) > REQUEST_MAX:
                    return
                buffer += chunk
            request, buffer = buffer.split(b"\n\n", 1)
            attributes = parse_request(request)
            address = attributes.get("client_address", "")
            port = attributes.get("server_port", "") or "?"
            if address and clients.note(address, port, attributes.get("instance", "")):
                print(
                    f"mailstack-agent: postfix: a client on port {port} has the cluster address "
                    f"{address}: its real address is masked (SNAT or a proxy without PROXY "
                    "protocol); see ClientAddressesMasked",
                    file=sys.stderr,
                    flush=True,
                )
            conn.sendall(b"action=DUNNO\n\n")
    except OSError:
        return
    finally:
        conn.close()


class PolicyServer(Acceptor):
    """The policy service on a unix socket only the postfix user may use."""

    def __init__(self, clients: MaskedClients, path: str, owner: tuple[int, int] | None) -> None:
        self.clients = clients
        super().__init__(unix_listener(path, owner), lambda conn: _serve(clients, conn))


def open_tripwire(
    clients: MaskedClients, path: str = layout.TRIPWIRE_SOCKET, owner: str | None = "postfix"
) -> PolicyServer:
    """The policy service, listening and served in its own thread."""
    ids = None
    if owner is not None:
        entry = pwd.getpwnam(owner)
        ids = (entry.pw_uid, entry.pw_gid)
    server = PolicyServer(clients, path, ids)
    _thread.start_new_thread(server.serve_forever, ())
    return server
