"""Verify published records: ask the authoritative servers (or a given one) and compare.

Owns: ``check_records`` (each desired record matching / missing / different), ``discover``
(what a domain publishes when no desired set is known) and the querier (``Querier``:
non-recursive queries, UDP with TCP fallback, to one or more servers; ``authoritative_servers``
finds them through the system resolver), and ``resolver_lookup``: recursive lookups at a given
resolver, which the outbound identity checks use. What is wrong with a record's values is
``lint.py``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
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

from mailstack.dns.lint import QueryError, TxtLookup, record_problems
from mailstack.dns.records import SRV_SERVICES, Record, rdata_value
from mailstack.dns.spf import Lookup

CheckState = Literal["matching", "missing", "different", "present", "error"]


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


# -- comparing --------------------------------------------------------------------------------


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
        problems = record_problems(record.name, record.type, all_values, apex, lookup)
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
        problems = record_problems(name, rtype, values, domain, lookup)
        if not values:
            if optional:
                continue
            results.append(CheckResult(name, rtype, "missing", problems=tuple(problems)))
            continue
        results.append(CheckResult(name, rtype, "present", (), tuple(values), tuple(problems)))
    return results


def resolver_lookup(nameserver: str = "", port: int = 53, timeout: float = 5.0) -> Lookup:
    """Recursive lookups of any type (``spf.Lookup``) at ``nameserver`` (an address; empty: the
    system's resolvers), uncached, in canonical values: what ``dns.outbound`` evaluates."""
    if nameserver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [nameserver]
        resolver.port = port
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout
    resolver.cache = None

    def lookup(name: str, rtype: str) -> list[str]:
        try:
            answer = resolver.resolve(name, rtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as err:
            raise QueryError(str(err) or type(err).__name__) from None
        return [rdata_value(r) for r in answer]

    return lookup
