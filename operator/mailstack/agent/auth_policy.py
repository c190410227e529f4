"""Owns Dovecot's auth policy service: how many password guesses an address gets, per login and
across logins, without ever locking a right password out.

Dovecot asks it before each login (``command=allow``, every protocol: IMAP, POP3, ManageSieve
and submission on 587 and 465) and tells it each result (``command=report``),
with the login, the client's address and the password's hash (``H(nonce || login || NUL ||
password)``, truncated; the nonce is made once and kept, with the known hashes, on the mail
volume by ``agent.known_hashes``, so a restarted agent still knows them). Each login and
address has a bucket of guesses (``GuessLimits``): a login from a hash not known to be right
takes one from the (address, login) bucket and one from the address's; when either is empty
the login is refused before the password is checked (``status -1``, answered as a wrong password
after Dovecot's failure delay). A login that succeeds gives its guesses back and makes its hash
known: a known hash (the password a user's devices log in with) is checked at once, whatever the
buckets hold, so guessers behind a user's address (an office NAT) cannot lock her out. A guess
that happens to share a known hash's 24 bits is only checked, not let in. An IPv6 client is
its /64. An address in ``exemptNetworks`` (``agent.exempt_networks``: an office NAT the
platform lists) has no bucket across logins, only its logins' own. Dovecot's own
per-address penalty is off (the auth processes run where they find no penalty socket): it
delayed right passwords too, past Postfix's 10 s.

The HTTP is Dovecot's client only (loopback, ``layout.AUTH_POLICY_PORT``), read with
``Content-Length`` or chunked bodies, on kept-alive connections.
"""

from __future__ import annotations

import _socket  # not socket: see mailstack.agent.health
import _thread
import json
import os
import time

from mailstack.agent.exempt_networks import ExemptNetworks
from mailstack.agent.health import Acceptor, inet_listener
from mailstack.agent.known_hashes import KnownHashSaver, load_state, restore_known_hashes
from mailstack.render import layout

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Container
    from typing import Any


class Bucket:
    """``burst`` guesses, refilled at ``per_minute``: ``take`` spends one if there is one."""

    __slots__ = ("burst", "per_second", "stamp", "tokens")

    def __init__(self, burst: float, per_minute: float, now: float) -> None:
        self.burst, self.per_second = burst, per_minute / 60.0
        self.tokens, self.stamp = burst, now

    def level(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        return self.tokens

    def take(self, now: float) -> bool:
        if self.level(now) < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def give_back(self, now: float) -> None:
        self.tokens = min(self.burst, self.level(now) + 1.0)


class GuessLimits:
    """Buckets per (address, login) and per address, and each login's known hashes. Memory is
    bounded: at most ``max_buckets`` buckets of each kind (full ones go first, then the
    longest unused), ``KNOWN_PER_LOGIN`` hashes a login (only successes add them) and known
    hashes for at most ``max_buckets`` logins (the longest without a success go first)."""

    KNOWN_PER_LOGIN = 4  # devices may still log in with the old password for a while
    MAX_BUCKETS = 100_000

    def __init__(
        self,
        login_burst: float = 10,
        login_per_minute: float = 1,
        address_burst: float = 30,
        address_per_minute: float = 6,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.login_limit = (login_burst, login_per_minute)
        self.address_limit = (address_burst, address_per_minute)
        self.max_buckets = max_buckets
        self.clock = clock
        self.logins: dict[tuple[str, str], Bucket] = {}
        self.addresses: dict[str, Bucket] = {}
        self.known: dict[str, list[str]] = {}  # in the order of their last success
        self.known_version = 0  # counts the changes of ``known``
        self.on_known_change: Callable[[], None] = lambda: None  # called under ``lock``
        self.lock = _thread.allocate_lock()

    def _bucket(
        self, table: dict[Any, Bucket], key: object, limit: tuple[float, float], now: float
    ) -> Bucket:
        bucket = table.pop(key, None)
        if bucket is None:
            bucket = Bucket(limit[0], limit[1], now)
            if len(table) >= self.max_buckets:  # full ones, and at least the oldest tenth
                full = [k for k, b in table.items() if b.level(now) >= b.burst]
                for k in {*full, *list(table)[: max(1, len(table) // 10)]}:
                    del table[k]
        table[key] = bucket  # re-inserted: the dict's order is the recency
        return bucket

    def _is_known(self, login: str, pwhash: str) -> bool:
        return bool(pwhash) and pwhash in self.known.get(login, ())

    def _address_bucket(self, address: str, exempt: bool, now: float) -> Bucket | None:
        if exempt:  # an exempt network's address: its logins' budgets only
            return None
        return self._bucket(self.addresses, address, self.address_limit, now)

    def allow(self, address: str, login: str, pwhash: str, exempt: bool = False) -> bool:
        """Before a login: whether its password may be checked. ``exempt``: the address is in
        an exempt network (``agent.exempt_networks``), held to the per-login budget only."""
        now = self.clock()
        with self.lock:
            if self._is_known(login, pwhash):
                return True
            per_login = self._bucket(self.logins, (address, login), self.login_limit, now)
            per_address = self._address_bucket(address, exempt, now)
            if per_login.level(now) < 1.0 or (per_address and per_address.level(now) < 1.0):
                return False
            per_login.take(now)
            if per_address:
                per_address.take(now)
            return True

    def report(
        self,
        address: str,
        login: str,
        pwhash: str,
        success: bool,
        refused: bool,
        exempt: bool = False,
    ) -> None:
        """After a login: a success gives its guesses back and makes its hash known; a failure
        from a known hash (24 bits shared by chance) is charged now."""
        now = self.clock()
        with self.lock:
            known = self._is_known(login, pwhash)
            if refused or (known and success):
                return
            per_login = self._bucket(self.logins, (address, login), self.login_limit, now)
            buckets = [per_login, *filter(None, [self._address_bucket(address, exempt, now)])]
            for bucket in buckets:
                if known:
                    bucket.take(now)
                elif success:
                    bucket.give_back(now)
            if not known and success and pwhash:
                self._make_known(login, pwhash)

    def _make_known(self, login: str, pwhash: str) -> None:
        hashes = self.known.pop(login, [])
        hashes.insert(0, pwhash)
        del hashes[self.KNOWN_PER_LOGIN :]
        self.known[login] = hashes  # re-inserted: the dict's order is the recency
        while len(self.known) > self.max_buckets:
            del self.known[next(iter(self.known))]
        self.known_version += 1
        self.on_known_change()


# A request is a few hundred bytes of JSON; Dovecot keeps its connections between requests.
REQUEST_MAX = 65536
IDLE_TIMEOUT = 120.0


def _receive(conn: _socket.socket, buffer: bytes, enough: Callable[[bytes], bool]) -> bytes:
    """``buffer`` and what ``conn`` sends until ``enough`` of it; EOFError if it ends first."""
    while not enough(buffer):
        chunk = conn.recv(4096)
        if not chunk or len(buffer) > REQUEST_MAX:
            raise EOFError
        buffer += chunk
    return buffer


def _read_request(conn: _socket.socket, buffer: bytes) -> tuple[str, bytes, bytes]:
    """One request: (its target, its body, what follows it); EOFError at the end."""
    buffer = _receive(conn, buffer, lambda data: b"\r\n\r\n" in data)
    head, buffer = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    words = lines[0].split()
    target = words[1] if len(words) > 1 else ""
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        length = int(headers.get("content-length", "0"))
        buffer = _receive(conn, buffer, lambda data: len(data) >= length)
        return (target, buffer[:length], buffer[length:])
    body = b""
    while True:
        buffer = _receive(conn, buffer, lambda data: b"\r\n" in data)
        size_line, buffer = buffer.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        buffer = _receive(conn, buffer, lambda data: len(data) >= size + 2)  # noqa: B023
        body, buffer = body + buffer[:size], buffer[size + 2 :]
        if size == 0 or len(body) > REQUEST_MAX:
            return (target, body, buffer)


def client_network(address: str) -> str:
    """What one client is: an IPv4 address, or an IPv6 address's /64 (a host gets a /64 and
    may use any address in it)."""
    if ":" not in address:
        return address
    try:
        return _socket.inet_pton(_socket.AF_INET6, address)[:8].hex() + "::/64"
    except (OSError, ValueError):
        return address


def answer(
    limits: GuessLimits, target: str, body: bytes, exempt: Container[str] = ()
) -> dict[str, object]:
    """The JSON answer to one request of Dovecot's; ``exempt``: the addresses held to per-login
    budgets only (``agent.exempt_networks``)."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return {"status": 0, "msg": ""}
    if not isinstance(request, dict):
        return {"status": 0, "msg": ""}
    remote = str(request.get("remote", ""))
    address, in_exempt = client_network(remote), remote in exempt
    login = str(request.get("login", "")).lower()
    pwhash = str(request.get("pwhash", ""))
    if "command=report" in target:
        success, refused = request.get("success") is True, request.get("policy_reject") is True
        limits.report(address, login, pwhash, success, refused, in_exempt)
        return {"status": 0, "msg": ""}
    if limits.allow(address, login, pwhash, in_exempt):
        return {"status": 0, "msg": ""}
    return {"status": -1, "msg": "too many failed logins from your address"}


def _serve(limits: GuessLimits, exempt: Container[str], conn: _socket.socket) -> None:
    buffer = b""
    try:
        conn.settimeout(IDLE_TIMEOUT)
        while True:
            target, body, buffer = _read_request(conn, buffer)
            reply = json.dumps(answer(limits, target, body, exempt)).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
            )
    except (OSError, ValueError, EOFError):  # gone, idle, or not HTTP
        return
    finally:
        conn.close()


def prepare_dovecot_auth(
    folder: str = layout.DOVECOT_AUTH_DIR,
    nonce_path: str = layout.AUTH_POLICY_NONCE,
    state_path: str = layout.AUTH_POLICY_STATE,
) -> None:
    """Before Dovecot starts: the nonce (the saved one, with which the saved known hashes were
    made, or a new one), and the folder its auth processes start in (a link to the auth-worker
    socket, which they find relative to it, and no penalty socket)."""
    saved_nonce, _ = load_state(state_path, GuessLimits.MAX_BUCKETS, GuessLimits.KNOWN_PER_LOGIN)
    write_nonce(nonce_path, saved_nonce or os.urandom(24).hex())
    if not os.path.isdir(folder):
        os.mkdir(folder, 0o755)
    link = f"{folder}/auth-worker"
    if not os.path.islink(link):
        os.symlink(f"{layout.DOVECOT_RUN_DIR}/auth-worker", link)


def write_nonce(path: str, nonce: str) -> None:
    """The nonce for Dovecot's password hashes (``auth_policy_hash_nonce = <path``)."""
    descriptor = os.open(f"{path}.new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as written:
        written.write(nonce)
    os.replace(f"{path}.new", path)


def read_nonce(path: str) -> str:
    with open(path, encoding="ascii") as nonce:
        return nonce.read().strip()


class AuthPolicyServer(Acceptor):
    def __init__(
        self,
        limits: GuessLimits,
        port: int,
        host: str = "127.0.0.1",
        saver: KnownHashSaver | None = None,
        exempt: Container[str] = (),
    ) -> None:
        self.limits, self.saver = limits, saver
        listener = inet_listener(host, port, 64)
        self.port = listener.getsockname()[1]
        super().__init__(listener, lambda conn: _serve(limits, exempt, conn))

    def shutdown(self) -> None:
        super().shutdown()
        if self.saver is not None:  # a rollout's stop: what changed since the last save
            self.saver.close()


def open_auth_policy(
    limits: GuessLimits | None = None,
    port: int = layout.AUTH_POLICY_PORT,
    nonce_path: str = layout.AUTH_POLICY_NONCE,
    state_path: str | None = layout.AUTH_POLICY_STATE,
    exempt_path: str | None = layout.AUTH_POLICY_SETTINGS,
) -> AuthPolicyServer:
    """The policy service, listening on the loopback and served in its own thread, with the
    known hashes saved at ``state_path`` (after ``prepare_dovecot_auth``) restored and kept,
    and the exempt networks of the file at ``exempt_path``."""
    limits = limits or GuessLimits()
    saver = None
    if state_path is not None:
        saver = restore_known_hashes(limits, state_path, read_nonce(nonce_path))
    exempt = ExemptNetworks(exempt_path)
    server = AuthPolicyServer(limits, port, saver=saver, exempt=exempt)
    _thread.start_new_thread(server.serve_forever, ())
    return server
