"""Forwarding outside the server: which envelope recipients lead there, and what rspamd does
with mail it will not forward (pure).

Owns the forwarding guard's map (``render_forwarding_map``: the ``forwarding`` key of the
``<name>-users`` Secret, which rspamd.lua reads) and the held addresses it names, with their
virtual alias entries (``held_alias_entries``).

rspamd sees the envelope recipients as the client gave them, before Postfix expands the virtual
aliases, so the map says, per address a client can name, where Postfix's expansion leads:

- ``local``: only to mailboxes here (written only when the catch-all forwards outside, so that
  rspamd does not take a known address for one the catch-all receives; and for held addresses);
- ``refuse``: only to other servers. Mail that rspamd marks as spam, or that fails our own
  DMARC, is refused at SMTP time: the sender learns it, nothing sits in a mailbox nobody reads,
  and nothing leaves with this server's name on it;
- held addresses: to other servers and to mailboxes here. Such mail goes to the mailboxes
  only: rspamd deletes the recipient (Postfix's milter ``delrcpt`` removes every address it
  expanded to) and adds the held address of each mailbox, which Postfix delivers to that
  mailbox alone, where Sieve files it to Junk.

A held address is the mailbox's with the detail ``+not-forwarded`` (our local parts never
contain ``+``, api/validate.py). Its own virtual alias entry maps it to itself: without one,
Postfix would fall back to the mailbox's entry and forward again. Anyone may send to a held
address; it only delivers to the mailbox without forwarding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

HELD_DETAIL = "not-forwarded"
# Where the rspamd container mounts the map: this one key of the users Secret, nothing else.
FORWARDING_DIR = "/etc/mailstack/forwarding"
FORWARDING_MAP_KEY = "forwarding"
FORWARDING_MAP = f"{FORWARDING_DIR}/{FORWARDING_MAP_KEY}"

LOCAL = "local"
REFUSE = "refuse"

AliasEntries = Sequence[tuple[str, tuple[str, ...]]]


def held_address(mailbox: str) -> str:
    """The address that delivers to ``mailbox`` without its forwarding."""
    local, _, domain = mailbox.partition("@")
    return f"{local}+{HELD_DETAIL}@{domain}"


def _final_recipients(
    address: str, table: dict[str, tuple[str, ...]], domain: str, seen: frozenset[str]
) -> set[str]:
    """Where Postfix's recursive virtual alias expansion takes ``address``: mailboxes here and
    addresses elsewhere. An address that expands to itself is final, as in Postfix; one met
    again (a loop) adds nothing more. Each address is followed once (reachability, linear in
    the entries): following every path instead took hours for 13 Mailboxes forwarding to each
    other, a tenant's way to stall the operator's renders."""
    found: set[str] = set()
    visited = set(seen)
    pending = [address]
    while pending:
        current = pending.pop()
        if current in visited:
            continue
        visited.add(current)
        targets = (
            table.get(current, table.get("@" + domain)) if current.endswith("@" + domain) else None
        )
        if targets is None:
            found.add(current)  # elsewhere, or here with no entry: final
            continue
        for target in targets:
            if target == current:
                found.add(target)
            elif target not in visited:
                pending.append(target)
    return found


def _verdict(finals: set[str], domain: str) -> str:
    outside = any(not final.endswith("@" + domain) for final in finals)
    mailboxes = sorted(final for final in finals if final.endswith("@" + domain))
    if not outside:
        return LOCAL
    if not mailboxes:
        return REFUSE
    return ",".join(held_address(box) for box in mailboxes)


def forwarding_entries(entries: AliasEntries, domain: str) -> list[tuple[str, str]]:
    """The guard map: (address a client can name, ``local`` | ``refuse`` | held addresses).

    ``entries`` are the virtual alias entries (``users.virtual_alias_entries``), the catch-all
    ``@domain`` among them; only addresses that forward outside are listed, unless the
    catch-all does, and then every address is.
    """
    table = dict(entries)
    verdicts = {
        address: _verdict(_final_recipients(address, table, domain, frozenset()), domain)
        for address in table
        if not address.startswith("@")
    }
    catch_all = table.get("@" + domain)
    if catch_all is not None:
        finals: set[str] = set()
        for target in catch_all:
            finals |= _final_recipients(target, table, domain, frozenset({"@" + domain}))
        verdicts["@" + domain] = _verdict(finals, domain)
    everything = verdicts.get("@" + domain, LOCAL) != LOCAL
    result = {a: v for a, v in verdicts.items() if everything or v != LOCAL}
    for verdict in verdicts.values():
        if verdict not in (LOCAL, REFUSE):
            result.update((held, LOCAL) for held in verdict.split(","))
    return sorted(result.items())


def held_alias_entries(entries: AliasEntries, domain: str) -> list[tuple[str, tuple[str, ...]]]:
    """Virtual alias entries of the held addresses: each maps to itself (delivered there)."""
    return [
        (address, (address,))
        for address, verdict in forwarding_entries(entries, domain)
        if verdict == LOCAL and f"+{HELD_DETAIL}@" in address
    ]


def render_forwarding_map(entries: AliasEntries, domain: str) -> str:
    """The guard map as rspamd's hash map reads it: ``key value`` lines."""
    return render_forwarding_maps([(entries, domain)])


def render_forwarding_maps(domains: Iterable[tuple[AliasEntries, str]]) -> str:
    """The guard map of several domains served together (a shared server), one header."""
    header = (
        "# Envelope recipients that forward outside this server, and what becomes of mail\n"
        "# rspamd marks as spam or that fails our DMARC (render/forwarding.py).\n"
    )
    lines = [
        f"{a} {v}\n" for entries, domain in domains for a, v in forwarding_entries(entries, domain)
    ]
    return header + "".join(lines)
