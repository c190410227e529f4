"""Verify published records: ask the authoritative servers (or a given one) and compare.

Owns: ``check_records`` (each desired record matching / missing / different), ``discover``
(what a domain publishes when no desired set is known), the SPF and DMARC sanity checks
(``spf_problems``: one SPF record, syntax, at most 10 DNS-querying terms counted through
``include:``/``redirect=``; ``dmarc_problems``: one DMARC record, tag syntax), and the querier
(``Querier``: non-recursive queries, UDP with TCP fallback, to one or more servers;
``authoritative_servers`` finds them through the system resolver).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from mailstack.dns.records import SPF_PREFIX, SRV_SERVICES, Record, rdata_value

CheckState = Literal["matching", "missing", "different", "present", "error"]
MAX_SPF_LOOKUPS = 10

TxtLookup = Callable[[str], list[str]]


class QueryError(Exception):
    pass


@dataclass(frozen=True)
class CheckResult:
    name: str
    type: str
    state: CheckState
    expected: tuple[str, ...] = ()
    found: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("matching", "present") and not self.problems


@dataclass
class CheckReport:
    domain: str
    servers: list[str]
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def format(self) -> str:
        lines = [f"; {self.domain}: asked {', '.join(self.servers)}"]
        for r in self.results:
            mark = "ok " if r.ok else "!! "
            lines.append(f"{mark}{r.state:<9} {r.name}. {r.type}")
            if r.state in ("different", "missing") and r.expected:
                lines += [f"      want {v}" for v in r.expected]
            if r.state in ("different", "present", "error") and r.found:
                lines += [f"      have {v}" for v in r.found]
            lines += [f"      problem: {p}" for p in r.problems]
        bad = sum(1 for r in self.results if not r.ok)
        lines.append(f"; {len(self.results) - bad} of {len(self.results)} records right")
        return "\n".join(lines) + "\n"


def parse_server(text: str, default_port: int = 53) -> tuple[str, int]:
    """``ADDR``, ``ADDR:PORT``, ``[V6]:PORT`` or a bare IPv6 address → (address, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


class Querier:
    """Non-recursive queries to the given servers; the first one that answers wins."""

    def __init__(self, servers: Sequence[tuple[str, int]], timeout: float = 3.0) -> None:
        if not servers:
            raise ValueError("no servers to ask")
        self.servers = list(servers)
        self.timeout = timeout

    def describe(self) -> list[str]:
        return [f"{a}:{p}" if p != 53 else a for a, p in self.servers]

    def values(self, name: str, rtype: str) -> list[str]:
        """The canonical values of ``name``/``rtype``; [] when the name or type does not exist."""
        errors = []
        for address, port in self.servers:
            query = dns.message.make_query(name, rtype, use_edns=0, payload=1232)
            query.flags &= ~dns.flags.RD
            try:
                answer, _ = dns.query.udp_with_fallback(
                    query, address, timeout=self.timeout, port=port
                )
            except (dns.exception.DNSException, OSError) as err:
                errors.append(f"{address}:{port}: {err or type(err).__name__}")
                continue
            rcode = answer.rcode()
            if rcode == dns.rcode.NXDOMAIN:
                return []
            if rcode != dns.rcode.NOERROR:
                errors.append(f"{address}:{port}: {dns.rcode.to_text(rcode)}")
                continue
            wanted = dns.rdatatype.from_text(rtype)
            qname = dns.name.from_text(name)
            return [
                rdata_value(rdata)
                for rrset in answer.answer
                if rrset.rdtype == wanted and rrset.name == qname
                for rdata in rrset
            ]
        raise QueryError("; ".join(errors))


def authoritative_servers(domain: str, timeout: float = 5.0) -> list[tuple[str, int]]:
    """The addresses of the zone's name servers, found through the system resolver."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout
    try:
        zone = dns.resolver.zone_for_name(domain, resolver=resolver)
        targets = [r.to_text() for r in resolver.resolve(zone, "NS")]
        found: list[tuple[str, int]] = []
        for target in sorted(targets):
            for rtype in ("A", "AAAA"):
                try:
                    found += [(r.to_text(), 53) for r in resolver.resolve(target, rtype)]
                except dns.resolver.NoAnswer:
                    continue
    except dns.exception.DNSException as err:
        raise QueryError(f"cannot find the authoritative servers of {domain}: {err}") from None
    if not found:
        raise QueryError(f"the name servers of {domain} have no addresses")
    return found


def recursive_txt(timeout: float = 5.0) -> TxtLookup:
    """TXT lookups through the system resolver (to follow SPF includes of other domains)."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout

    def lookup(name: str) -> list[str]:
        try:
            answer = resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as err:
            raise QueryError(str(err)) from None
        return [rdata_value(r) for r in answer]

    return lookup


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


# -- comparing --------------------------------------------------------------------------------


def _sanity(
    name: str, rtype: str, values: list[str], apex: str, lookup: TxtLookup | None
) -> list[str]:
    if rtype != "TXT":
        return []
    if name == apex:
        return spf_problems(values, lookup)
    if name == f"_dmarc.{apex}":
        return dmarc_problems(values)
    if "._domainkey." in name:
        return dkim_problems(values)
    return []


def check_records(
    records: Sequence[Record],
    querier: Querier,
    apex: str,
    lookup: TxtLookup | None = None,
) -> list[CheckResult]:
    """Each desired record as found at the servers: matching, missing or different."""
    results = []
    for record in records:
        try:
            all_values = querier.values(record.name, record.type)
        except QueryError as err:
            results.append(
                CheckResult(record.name, record.type, "error", record.values, (), (str(err),))
            )
            continue
        found = [v for v in all_values if record.owns_value(v)]
        if not found:
            state: CheckState = "missing"
        elif sorted(found) == sorted(record.values):
            state = "matching"
        else:
            state = "different"
        problems = _sanity(record.name, record.type, all_values, apex, lookup)
        results.append(
            CheckResult(
                record.name,
                record.type,
                state,
                record.values,
                tuple(found),
                tuple(problems),
                record.reason,
            )
        )
    return results


def discover(
    domain: str, querier: Querier, selector: str, lookup: TxtLookup | None = None
) -> list[CheckResult]:
    """Without a desired set: what the domain publishes of the mail records, sanity-checked."""
    wanted: list[tuple[str, str]] = [(domain, "MX"), (domain, "TXT")]
    wanted += [(f"{selector}._domainkey.{domain}", "TXT"), (f"_dmarc.{domain}", "TXT")]
    wanted += [(f"_mta-sts.{domain}", "TXT"), (f"_smtp._tls.{domain}", "TXT")]
    wanted += [(f"{srv.label}.{domain}", "SRV") for _, srv in SRV_SERVICES]
    results: list[CheckResult] = []
    for name, rtype in wanted:
        try:
            values = querier.values(name, rtype)
        except QueryError as err:
            results.append(CheckResult(name, rtype, "error", problems=(str(err),)))
            continue
        if rtype == "MX":
            for host in sorted({v.split()[1].rstrip(".") for v in values if v.split()[1] != "."}):
                for atype in ("A", "AAAA"):
                    try:
                        found = querier.values(host, atype)
                    except QueryError:
                        continue  # another zone: not ours to judge
                    if found:
                        results.append(CheckResult(host, atype, "present", (), tuple(found)))
        optional = name.startswith(("_mta-sts.", "_smtp._tls.")) or rtype == "SRV"
        problems = _sanity(name, rtype, values, domain, lookup)
        if not values:
            if optional:
                continue
            results.append(CheckResult(name, rtype, "missing", problems=tuple(problems)))
            continue
        results.append(CheckResult(name, rtype, "present", (), tuple(values), tuple(problems)))
    return results
