"""Owns the networks whose clients the auth policy service holds to per-login budgets only:
``spec.limits.perClient.exemptNetworks`` (an office NAT, say), read from the file the operator
renders into the dovecot ConfigMap (``auth-policy.json``, ``render.dovecot``).

Behind one address of such a network many users log in, and one of them (or a machine's
malware) spending the address's budget across logins would refuse the others' first logins.
Exempting the network from the *address* budget keeps the budget per login: guessing one
user's password stays bounded, spraying across logins from that network is not. That is the
trade a platform makes by listing the network, as it does for the SMTP limits.

The matching is done on the addresses' bytes with ``_socket`` (the agent avoids ``ipaddress``
and ``socket``: see ``agent.health``). The file is re-read when its modification time changes,
at most every ``RECHECK_SECONDS``, so a ConfigMap update needs no restart. A missing or
malformed file exempts nothing.
"""

from __future__ import annotations

import _socket
import json
import os
import time

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

RECHECK_SECONDS = 10.0

# (address family, network bytes, prefix length)
Network = tuple[int, bytes, int]


def parse_network(text: str) -> Network | None:
    """``192.0.2.0/24``, ``2001:db8::/48`` or a single address; None if it is neither."""
    address, _, prefix = text.strip().partition("/")
    family = _socket.AF_INET6 if ":" in address else _socket.AF_INET
    try:
        packed = _socket.inet_pton(family, address)
    except (OSError, ValueError):
        return None
    bits = len(packed) * 8
    if not prefix:
        return (family, packed, bits)
    if not prefix.isdigit() or int(prefix) > bits:
        return None
    return (family, packed, int(prefix))


def _packed(address: str) -> tuple[int, bytes] | None:
    if address.lower().startswith("::ffff:") and "." in address:  # an IPv4 client on a v6 socket
        address = address[7:]
    family = _socket.AF_INET6 if ":" in address else _socket.AF_INET
    try:
        return (family, _socket.inet_pton(family, address))
    except (OSError, ValueError):
        return None


def _within(packed: bytes, network: bytes, prefix: int) -> bool:
    whole, rest = divmod(prefix, 8)
    if packed[:whole] != network[:whole]:
        return False
    if not rest:
        return True
    mask = (0xFF << (8 - rest)) & 0xFF
    return (packed[whole] & mask) == (network[whole] & mask)


def address_in(address: str, networks: list[Network]) -> bool:
    """Whether ``address`` (as Dovecot reports a client's) lies in one of ``networks``."""
    parsed = _packed(address)
    if parsed is None:
        return False
    family, packed = parsed
    return any(f == family and _within(packed, net, prefix) for f, net, prefix in networks)


def read_exempt_networks(path: str) -> list[Network]:
    """The networks the file lists (``{"exemptNetworks": [...]}``); none if it is unreadable."""
    try:
        with open(path, encoding="utf-8") as file:
            listed = json.load(file).get("exemptNetworks", [])
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(listed, list):
        return []
    return [n for n in (parse_network(str(t)) for t in listed) if n is not None]


class ExemptNetworks:
    """The file's networks, re-read when it changes (checked at most every RECHECK_SECONDS)."""

    def __init__(self, path: str | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.clock = path, clock
        self.networks: list[Network] = []
        self.stamp: float | None = None  # the file's mtime when read
        self.checked = float("-inf")
        self._refresh()

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            stamp: float | None = os.stat(self.path).st_mtime
        except OSError:
            stamp = None
        if stamp != self.stamp:
            self.stamp = stamp
            self.networks = read_exempt_networks(self.path) if stamp is not None else []

    def __contains__(self, address: object) -> bool:
        now = self.clock()
        if now - self.checked >= RECHECK_SECONDS:
            self.checked = now
            self._refresh()
        return bool(self.networks) and address_in(str(address), self.networks)
