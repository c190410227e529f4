"""The desired DNS record set of a MailDomain (pure).

Each record carries the reason it exists, for ``mailstack dns plan`` and for status. TXT values are
kept whole here; splitting into 255-byte strings is the wire format's concern (``txt_strings``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mailstack.api.models import MailDomain
from mailstack.material.dkim import DkimKey


@dataclass(frozen=True, order=True)
class Record:
    """One RRset: owner name (absolute, no trailing dot), type, TTL, values, and why."""

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]
    reason: str = ""


# RFC 6186 service records: (service label, port, protocol switch or None for always-on SMTP).
SRV_SERVICES: tuple[tuple[str, int, str], ...] = (
    ("_submissions._tcp", 465, "submissions"),
    ("_submission._tcp", 587, "submission"),
    ("_imaps._tcp", 993, "imap"),
    ("_imap._tcp", 143, "imap"),
    ("_pop3s._tcp", 995, "pop3"),
    ("_pop3._tcp", 110, "pop3"),
)


def txt_strings(value: str) -> list[str]:
    """A TXT value split into character-strings of at most 255 bytes (RFC 1035 §3.3.14)."""
    data = value.encode()
    return [data[i : i + 255].decode() for i in range(0, len(data), 255)] or [""]


def spf_value(domain: MailDomain) -> str:
    terms = ["v=spf1", "mx"]
    terms += [f"include:{include}" for include in domain.dns.spf.includes]
    terms.append(domain.dns.spf.policy)
    return " ".join(terms)


def dmarc_value(domain: MailDomain) -> str:
    dmarc = domain.dns.dmarc
    tags = ["v=DMARC1", f"p={dmarc.policy}"]
    if dmarc.subdomain_policy:
        tags.append(f"sp={dmarc.subdomain_policy}")
    if dmarc.rua:
        tags.append("rua=" + ",".join(f"mailto:{address}" for address in dmarc.rua))
    if dmarc.pct != 100:
        tags.append(f"pct={dmarc.pct}")
    tags += [f"adkim={dmarc.adkim}", f"aspf={dmarc.aspf}"]
    return "; ".join(tags)


def mta_sts_policy(domain: MailDomain) -> str:
    """The policy file served at https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461)."""
    sts = domain.dns.mta_sts
    return (
        f"version: STSv1\r\nmode: {sts.mode}\r\nmx: {domain.hostname}\r\nmax_age: {sts.max_age}\r\n"
    )


def mta_sts_id(domain: MailDomain) -> str:
    """The policy id: changes exactly when the policy does."""
    return hashlib.sha256(mta_sts_policy(domain).encode()).hexdigest()[:20]


def desired_records(domain: MailDomain, dkim: DkimKey) -> list[Record]:
    """Every record the MailDomain needs, in a stable order."""
    ttl = domain.dns.ttl
    apex = domain.domain
    host = domain.hostname
    records = [
        Record(apex, "MX", ttl, (f"10 {host}.",), "mail for the domain goes to its hostname"),
    ]
    if domain.dns.ipv4:
        records.append(Record(host, "A", ttl, domain.dns.ipv4, "address of the mail hostname"))
    if domain.dns.ipv6:
        records.append(Record(host, "AAAA", ttl, domain.dns.ipv6, "address of the mail hostname"))
    records.append(
        Record(apex, "TXT", ttl, (spf_value(domain),), "SPF: the MX hosts may send for the domain")
    )
    records.append(
        Record(
            f"{dkim.selector}._domainkey.{apex}",
            "TXT",
            ttl,
            (dkim.dns_value(),),
            f"DKIM public key of selector {dkim.selector}",
        )
    )
    records.append(Record(f"_dmarc.{apex}", "TXT", ttl, (dmarc_value(domain),), "DMARC policy"))
    if domain.dns.mta_sts.enabled:
        records.append(
            Record(
                f"_mta-sts.{apex}",
                "TXT",
                ttl,
                (f"v=STSv1; id={mta_sts_id(domain)}",),
                "MTA-STS policy id",
            )
        )
    if domain.dns.tls_rpt.enabled:
        rua = ",".join(f"mailto:{a}" for a in domain.dns.tls_rpt.rua) or f"mailto:postmaster@{apex}"
        records.append(
            Record(f"_smtp._tls.{apex}", "TXT", ttl, (f"v=TLSRPTv1; rua={rua}",), "TLS reporting")
        )
    protocols = domain.protocols
    for label, port, switch in SRV_SERVICES:
        enabled = getattr(protocols, switch)
        value = f"0 1 {port} {host}." if enabled else "0 0 0 ."
        why = "RFC 6186 client autoconfiguration" + ("" if enabled else " (service disabled)")
        records.append(Record(f"{label}.{apex}", "SRV", ttl, (value,), why))
    return records


def _zone_value(record: Record, value: str) -> str:
    if record.type != "TXT":
        return value
    return " ".join(
        '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' for part in txt_strings(value)
    )


def render_zone(records: list[Record]) -> str:
    """The records in zone-file form (absolute names), with each record's reason as a comment."""
    lines = []
    for record in records:
        lines.append(f"; {record.reason}" if record.reason else ";")
        for value in record.values:
            lines.append(
                f"{record.name}.\t{record.ttl}\tIN\t{record.type}\t{_zone_value(record, value)}"
            )
    return "\n".join(lines) + "\n"
