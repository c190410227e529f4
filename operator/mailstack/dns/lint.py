"""What is wrong with published mail records, from their values alone (pure but for SPF's lookups).

Owns the sanity checks ``dns check`` runs on what it finds: ``spf_problems`` (one SPF record,
syntax, at most 10 DNS-querying terms counted through ``include:``/``redirect=``, RFC 7208),
``dmarc_problems`` (one DMARC record, tag syntax, RFC 7489) and ``dkim_problems`` (RFC 6376).
Following SPF includes needs TXT lookups: they come in as a function (``TxtLookup``), so the
querying stays in ``check.py``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from mailstack.dns.records import SPF_PREFIX

MAX_SPF_LOOKUPS = 10

TxtLookup = Callable[[str], list[str]]


class QueryError(Exception):
    """A DNS question got no usable answer (timeout, SERVFAIL, no server)."""


# -- SPF (RFC 7208) ---------------------------------------------------------------------------

_SPF_MECHANISMS = {"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"}
_SPF_LOOKUP_TERMS = {"include", "a", "mx", "ptr", "exists", "redirect"}


def spf_records(values: Sequence[str]) -> list[str]:
    return [v for v in values if v.lower() == SPF_PREFIX or v.lower().startswith(SPF_PREFIX + " ")]


def _spf_terms(record: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(term name, argument) pairs of one SPF record, and syntax problems."""
    terms: list[tuple[str, str]] = []
    problems: list[str] = []
    for term in record.split()[1:]:
        if "=" in term and term.split("=", 1)[0].replace("-", "").replace(".", "").isalnum():
            name, value = term.split("=", 1)
            terms.append((name.lower(), value))
            continue
        qualifier = term[0] if term[:1] in "+-~?" else "+"
        body = term[1:] if term[:1] in "+-~?" else term
        name, _, arg = body.partition(":")
        name = name.partition("/")[0].lower()
        if name not in _SPF_MECHANISMS:
            problems.append(f"unknown SPF term {term!r}")
            continue
        if name in ("ip4", "ip6"):
            try:
                network = ipaddress.ip_network(arg, strict=False)
                if network.version != (4 if name == "ip4" else 6):
                    raise ValueError
            except ValueError:
                problems.append(f"{term!r}: not an {name} address or network")
        if name in ("include", "exists") and not arg:
            problems.append(f"{term!r} needs a domain")
        if name == "all" and qualifier == "+":
            problems.append(f"{term!r} lets every host on the Internet send as the domain")
        if name == "ptr":
            problems.append("'ptr' is deprecated (RFC 7208 §5.5)")
        terms.append((name, arg))
    mechanisms = [t[0] for t in terms if t[0] in _SPF_MECHANISMS]
    if "all" in mechanisms[:-1]:
        problems.append("mechanisms after 'all' are never used")
    if "all" in mechanisms and any(t[0] == "redirect" for t in terms):
        problems.append("'redirect=' is ignored when 'all' is present")
    return terms, problems


def spf_lookups(
    record: str, lookup: TxtLookup | None, seen: frozenset[str] = frozenset()
) -> tuple[int, list[str]]:
    """DNS-querying terms of an SPF record, counted through includes and redirect."""
    terms, _ = _spf_terms(record)
    count = 0
    notes: list[str] = []
    for name, arg in terms:
        if name not in _SPF_LOOKUP_TERMS:
            continue
        count += 1
        if name not in ("include", "redirect") or lookup is None:
            continue
        target = arg.lower().rstrip(".")
        if target in seen:
            notes.append(f"SPF include loop at {target}")
            continue
        try:
            found = spf_records(lookup(target))
        except QueryError as err:
            notes.append(f"could not follow {name} {target}: {err}")
            continue
        if len(found) != 1:
            notes.append(f"{name} {target}: {len(found)} SPF records there (permerror)")
            continue
        inner, inner_notes = spf_lookups(found[0], lookup, seen | {target})
        count += inner
        notes += inner_notes
    return count, notes


def spf_problems(values: Sequence[str], lookup: TxtLookup | None = None) -> list[str]:
    """What is wrong with the SPF of a name, given all its TXT values."""
    found = spf_records(values)
    if not found:
        return ["no SPF (v=spf1) record"]
    if len(found) > 1:
        return [f"{len(found)} SPF records: receivers treat that as a permanent error (RFC 7208)"]
    _, problems = _spf_terms(found[0])
    count, notes = spf_lookups(found[0], lookup)
    problems += notes
    if count > MAX_SPF_LOOKUPS:
        problems.append(
            f"{count} DNS-querying terms; at most {MAX_SPF_LOOKUPS} are allowed (RFC 7208 §4.6.4)"
        )
    return problems


# -- DMARC (RFC 7489) -------------------------------------------------------------------------

_DMARC_POLICIES = {"none", "quarantine", "reject"}
_DMARC_TAGS = {"v", "p", "sp", "np", "rua", "ruf", "adkim", "aspf", "pct", "fo", "rf", "ri"}


def _dmarc_uri(uri: str) -> bool:
    uri = uri.strip().split("!", 1)[0]
    if uri.lower().startswith("mailto:"):
        address = uri[7:]
        return "@" in address and not address.startswith("@") and not address.endswith("@")
    return uri.lower().startswith("https://")


def dmarc_problems(values: Sequence[str]) -> list[str]:
    """What is wrong with a ``_dmarc`` name, given all its TXT values."""
    records = [v for v in values if v.replace(" ", "").startswith("v=DMARC1")]
    if not records:
        return ["no DMARC (v=DMARC1) record"]
    if len(records) > 1:
        return [f"{len(records)} DMARC records: receivers then apply none (RFC 7489 §6.6.3)"]
    problems: list[str] = []
    tags: dict[str, str] = {}
    parts = [p.strip() for p in records[0].split(";")]
    for index, part in enumerate(parts):
        if not part:
            if index != len(parts) - 1:
                problems.append("empty tag (';;')")
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep:
            problems.append(f"{part!r} is not tag=value")
            continue
        if name in tags:
            problems.append(f"tag {name} is given twice")
        if name not in _DMARC_TAGS:
            problems.append(f"unknown tag {name}")
        tags[name] = value
        if index == 0 and (name != "v" or value != "DMARC1"):
            problems.append("the record must start with v=DMARC1")
    if "p" not in tags:
        problems.append("no p= tag (the policy is required)")
    for tag in ("p", "sp", "np"):
        if tag in tags and tags[tag].lower() not in _DMARC_POLICIES:
            problems.append(f"{tag}={tags[tag]}: expected none, quarantine or reject")
    for tag in ("adkim", "aspf"):
        if tag in tags and tags[tag].lower() not in ("r", "s"):
            problems.append(f"{tag}={tags[tag]}: expected r or s")
    if "pct" in tags and not (tags["pct"].isdigit() and 0 <= int(tags["pct"]) <= 100):
        problems.append(f"pct={tags['pct']}: expected 0 to 100")
    if "ri" in tags and not tags["ri"].isdigit():
        problems.append(f"ri={tags['ri']}: expected a number of seconds")
    for tag in ("rua", "ruf"):
        for uri in tags.get(tag, "").split(",") if tag in tags else ():
            if not _dmarc_uri(uri):
                problems.append(f"{tag}: {uri.strip()!r} is not a mailto: or https: URI")
    return problems


def dkim_problems(values: Sequence[str]) -> list[str]:
    keys = [v for v in values if "p=" in v.replace(" ", "")]
    if len(keys) != 1:
        return [f"{len(keys)} DKIM key records (expected one)"]
    tags = dict(
        (t.split("=", 1)[0].strip(), t.split("=", 1)[1].strip())
        for t in keys[0].split(";")
        if "=" in t
    )
    if tags.get("v", "DKIM1") != "DKIM1":
        return ["v= must be DKIM1"]
    if not tags.get("p"):
        return ["p= is empty: the key is revoked"]
    return []


# -- by name ---------------------------------------------------------------------------------


def record_problems(
    name: str, rtype: str, values: list[str], apex: str, lookup: TxtLookup | None
) -> list[str]:
    """What is wrong with the values found at a name: SPF at the apex, DMARC, DKIM."""
    if rtype != "TXT":
        return []
    if name == apex:
        return spf_problems(values, lookup)
    if name == f"_dmarc.{apex}":
        return dmarc_problems(values)
    if "._domainkey." in name:
        return dkim_problems(values)
    return []
