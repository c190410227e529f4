"""Owns the SPF evaluation of one address for one domain (RFC 7208 ``check_host``), pure but
for its lookups, which come in as a function (``Lookup``) so that the querying stays in the shell.

What a receiver does, not a string match: the record published at the domain is fetched and its
terms evaluated in order (``ip4``, ``ip6``, ``a``, ``mx``, ``ptr``, ``exists``, ``include``,
``all``, the ``redirect`` modifier, the dual CIDR lengths, the macros of §7), with the limits of
§4.6.4: at most 10 DNS-querying terms (through includes and redirects), 10 names of one ``mx``
or ``ptr``, 2 lookups answered with nothing. ``exp=`` is not fetched: the explanation never
changes the result. No library on PyPI fits: ``pyspf`` does its own blocking queries through
its own resolver, where this is given the operator's resolver and the test fixtures. What is
wrong with a record's text, without evaluating it, is ``lint``'s.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mailstack.dns.lint import MAX_SPF_LOOKUPS, QueryError, spf_records

# (name, record type) -> the canonical values (``records.rdata_value``); [] when the name or
# the type does not exist; raises ``QueryError`` when no usable answer came (timeout, SERVFAIL).
Lookup = Callable[[str, str], list[str]]

SpfResult = Literal["pass", "fail", "softfail", "neutral", "none", "permerror", "temperror"]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_VOID_LOOKUPS = 2
MAX_NAMES = 10  # of one mx or ptr term
_QUALIFIERS: dict[str, SpfResult] = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.IGNORECASE)
_MECHANISM = re.compile(
    r"^(all|include|a|mx|ptr|exists)(?::([^/]+))?(?:/(\d+))?(?://(\d+))?$", re.IGNORECASE
)
_MACRO = re.compile(r"%\{([slodiphcrtv])(\d*)(r?)([.+,/_=-]*)\}|%%|%_|%-|%", re.IGNORECASE)


@dataclass(frozen=True)
class SpfVerdict:
    result: SpfResult
    detail: str  # the term that decided, or what went wrong


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


@dataclass
class _Session:
    """One evaluation: the address, the identities for macros, the lookup and its counters."""

    address: Address
    sender: str
    helo: str
    lookup: Lookup
    terms: int = 0
    voids: int = 0

    def query(self, name: str, rtype: str) -> list[str]:
        try:
            values = self.lookup(name, rtype)
        except QueryError as err:
            raise _TempError(f"{name} {rtype}: {err}") from None
        if not values:
            self.voids += 1
            if self.voids > MAX_VOID_LOOKUPS:
                raise _PermError(f"more than {MAX_VOID_LOOKUPS} lookups answered nothing")
        return values

    def count(self, term: str) -> None:
        self.terms += 1
        if self.terms > MAX_SPF_LOOKUPS:
            raise _PermError(f"{term}: more than {MAX_SPF_LOOKUPS} DNS-querying terms")

    def addresses(self, name: str) -> list[Address]:
        rtype = "A" if self.address.version == 4 else "AAAA"
        return [ipaddress.ip_address(v) for v in self.query(name, rtype)]


def check_host(
    address: str, domain: str, lookup: Lookup, sender: str = "", helo: str = ""
) -> SpfVerdict:
    """The SPF result for mail from ``address`` with ``sender`` (default: postmaster@domain)
    as the envelope sender, ``domain`` being the sender's domain (RFC 7208 §4)."""
    session = _Session(
        ipaddress.ip_address(address), sender or f"postmaster@{domain}", helo, lookup
    )
    try:
        return _evaluate(session, _name(domain))
    except _PermError as err:
        return SpfVerdict("permerror", str(err))
    except _TempError as err:
        return SpfVerdict("temperror", str(err))


def _name(text: str) -> str:
    return text.lower().rstrip(".")


def _evaluate(session: _Session, domain: str) -> SpfVerdict:
    found = spf_records(session.query(domain, "TXT"))
    if not found:
        return SpfVerdict("none", f"no SPF record at {domain}")
    if len(found) > 1:
        raise _PermError(f"{len(found)} SPF records at {domain}")
    redirect: str | None = None
    for term in found[0].split()[1:]:
        modifier = _MODIFIER.match(term)
        if modifier is not None:
            if modifier.group(1).lower() == "redirect":
                if redirect is not None:
                    raise _PermError(f"two redirect modifiers at {domain}")
                redirect = modifier.group(2)
            continue
        qualifier = term[0] if term[0] in _QUALIFIERS else "+"
        body = term[1:] if term[0] in _QUALIFIERS else term
        if _matches(session, domain, body):
            return SpfVerdict(_QUALIFIERS[qualifier], f"{term} in the SPF of {domain}")
    if redirect is not None:
        session.count(f"redirect={redirect}")
        target = _expand(session, redirect, domain)
        verdict = _evaluate(session, target)
        if verdict.result == "none":
            raise _PermError(f"redirect={target}: no SPF record there")
        return verdict
    return SpfVerdict("neutral", f"no term of the SPF of {domain} matched")


def _matches(session: _Session, domain: str, body: str) -> bool:
    """Whether one mechanism (without its qualifier) matches the address."""
    name, _, rest = body.partition(":")
    if name.lower() in ("ip4", "ip6"):
        return _ip_matches(session.address, name.lower(), rest, body)
    parsed = _MECHANISM.match(body)
    if parsed is None:
        raise _PermError(f"unknown or malformed SPF term {body!r} at {domain}")
    kind, spec, cidr4, cidr6 = parsed.groups()
    kind = kind.lower()
    if kind == "all":
        if spec or cidr4 or cidr6:
            raise _PermError(f"malformed {body!r} at {domain}")
        return True
    session.count(body)
    target = _expand(session, spec, domain) if spec else domain
    if kind in ("include", "exists") and not spec:
        raise _PermError(f"{body!r} needs a domain")
    if kind == "include":
        verdict = _evaluate(session, target)
        if verdict.result in ("none", "permerror"):
            raise _PermError(f"include:{target}: {verdict.detail}")
        if verdict.result == "temperror":
            raise _TempError(verdict.detail)
        return verdict.result == "pass"
    if kind == "exists":
        return bool(session.query(target, "A"))
    if kind == "ptr":
        return any(n == target or n.endswith("." + target) for n in _confirmed_names(session))
    prefix = _prefix(session.address, cidr4, cidr6, body)
    if kind == "a":
        hosts = [target]
    else:
        exchanges = [_name(v.split()[-1]) for v in session.query(target, "MX")]
        if len(exchanges) > MAX_NAMES:
            raise _PermError(f"{body}: {len(exchanges)} MX names (at most {MAX_NAMES})")
        hosts = [h for h in exchanges if h]  # "0 ." (null MX) names no host
    network = ipaddress.ip_network(f"{session.address}/{prefix}", strict=False)
    return any(a in network for host in hosts for a in session.addresses(host))


def _ip_matches(address: Address, kind: str, rest: str, body: str) -> bool:
    try:
        network = ipaddress.ip_network(rest, strict=False)
    except ValueError:
        raise _PermError(f"{body!r}: not an {kind} address or network") from None
    if network.version != (4 if kind == "ip4" else 6):
        raise _PermError(f"{body!r}: not an {kind} address or network")
    return address in network


def _prefix(address: Address, cidr4: str | None, cidr6: str | None, body: str) -> int:
    length = int(cidr4 or 32) if address.version == 4 else int(cidr6 or 128)
    if length > address.max_prefixlen:
        raise _PermError(f"{body!r}: prefix length {length}")
    return length


def _confirmed_names(session: _Session) -> list[str]:
    names = [_name(v) for v in session.query(session.address.reverse_pointer, "PTR")]
    confirmed = []
    for name in names[:MAX_NAMES]:
        try:
            if session.address in session.addresses(name):
                confirmed.append(name)
        except (_TempError, _PermError):
            continue
    return confirmed


def _expand(session: _Session, spec: str, domain: str) -> str:
    """A domain-spec with its macros (RFC 7208 §7) expanded, as a lookup name."""

    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        if text in ("%%", "%_", "%-"):
            return {"%%": "%", "%_": " ", "%-": "%20"}[text]
        if match.group(1) is None:
            raise _PermError(f"malformed macro in {spec!r}")
        letter, digits, reverse, delimiters = match.groups()
        parts = re.split(
            "[" + re.escape(delimiters or ".") + "]", _macro_value(session, letter, domain)
        )
        if reverse:
            parts.reverse()
        if digits:
            if int(digits) == 0:
                raise _PermError(f"macro {text}: zero labels")
            parts = parts[-int(digits) :]
        return ".".join(parts)

    expanded = _name(_MACRO.sub(one, spec))
    while len(expanded) > 253 and "." in expanded:  # §7.3: drop labels from the left
        expanded = expanded.split(".", 1)[1]
    return expanded


def _macro_value(session: _Session, letter: str, domain: str) -> str:
    address = session.address
    local, _, sender_domain = session.sender.rpartition("@")
    if letter.lower() == "i":
        if address.version == 4:
            return str(address)
        return ".".join(address.exploded.replace(":", ""))
    values = {
        "s": session.sender,
        "l": local or "postmaster",
        "o": sender_domain,
        "d": domain,
        "p": "unknown",  # §7.3: not to be used; receivers that do not look it up say this
        "v": "in-addr" if address.version == 4 else "ip6",
        "h": session.helo,
        "c": str(address),
        "r": "unknown",
        "t": "0",
    }
    return values[letter.lower()]
