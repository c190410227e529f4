"""The desired DNS record set of a MailDomain, and the canonical form of record values (pure).

Owns: what records a mail domain needs and why (``desired_records``), the zone-file rendering of
them (``render_zone``, written to ``records.zone`` and printed by ``dns plan`` for the manual
provider), and the one textual form of a value that plans and providers compare
(``canonical_value``, ``txt_value_from_text``, ``txt_zone_text``).

Value forms: names are absolute, lower case, without the trailing dot (``mail.example.com``);
targets inside values are absolute *with* the trailing dot (``10 mail.example.com.``). A TXT value
is the joined text of its character-strings, unquoted: a 2048-bit DKIM key is one value here and
several ≤255-byte strings on the wire (``txt_strings``), so values compare joined whatever the
split a server returns.

Records deliberately *not* published:

- ``autoconfig`` / ``autodiscover`` CNAMEs: the Thunderbird autoconfig XML and the Outlook
  autodiscover answers are rendered (``render.web``) but nothing in the stack serves them yet.
  A CNAME to the mail host would send Thunderbird to a closed HTTP port and Outlook to an HTTPS
  endpoint whose certificate does not cover the name (a certificate warning shown to users).
  The RFC 6186 SRV records describe the same settings; the CNAMEs come when an HTTP endpoint
  serves them.
- extra MX hosts: the MailDomain spec has no field for them yet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.TXT import TXT

from mailstack.api.models import MailDomain
from mailstack.api.validate import has_control_characters
from mailstack.material.dkim import DkimKey
from mailstack.render.layout import PUBLIC_PORTS, Port, Srv
from mailstack.render.web.mta_sts import POLICY_PATH, mta_sts_id, mx_hosts, policy_host

SPF_PREFIX = "v=spf1"


@dataclass(frozen=True, order=True)
class Record:
    """One desired RRset: owner name (absolute, no trailing dot), type, TTL, values, and why.

    ``value_prefix`` marks a *shared* RRset: only the values starting with it are ours, every
    other value at the same name and type belongs to someone else and is never touched (the SPF
    value among the other TXT records at the apex).
    """

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]
    reason: str = ""
    value_prefix: str = ""

    def owns_value(self, value: str) -> bool:
        return not self.value_prefix or value.startswith(self.value_prefix)


def _srv_services() -> tuple[tuple[Port, Srv], ...]:
    """The public ports that SRV records announce, with their records, in record order: the
    records of one ``spec.protocols`` switch together (in the port table's order), the preferred
    (lowest priority) first."""
    announced = [(port, port.srv) for port in PUBLIC_PORTS if port.srv is not None]
    switches = list(dict.fromkeys(port.protocol for port, _ in announced))
    return tuple(
        sorted(announced, key=lambda pair: (switches.index(pair[0].protocol), pair[1].priority))
    )


# RFC 6186 (and RFC 5804) service records, from the port table (layout.PUBLIC_PORTS).
SRV_SERVICES = _srv_services()

# ACME directory host (suffix) -> the CA's CAA issuer domain name (RFC 8659 §4.2).
CAA_ISSUERS: tuple[tuple[str, str], ...] = (
    ("letsencrypt.org", "letsencrypt.org"),  # production and staging honour the same name
    ("zerossl.com", "sectigo.com"),
    ("pki.goog", "pki.goog"),
    ("buypass.com", "buypass.com"),
    ("buypass.no", "buypass.com"),
    ("ssl.com", "ssl.com"),
    ("digicert.com", "digicert.com"),
)


def txt_strings(value: str) -> list[str]:
    """A TXT value split into character-strings of at most 255 bytes (RFC 1035 §3.3.14)."""
    data = value.encode()
    parts: list[str] = []
    while data:
        cut = min(255, len(data))
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            cut -= 1
        parts.append(data[:cut].decode())
        data = data[cut:]
    return parts or [""]


def txt_zone_text(value: str) -> str:
    """A TXT value in zone-file form: quoted ≤255-byte strings, escaped as dnspython does."""
    rdata = TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [s.encode() for s in txt_strings(value)])
    return rdata.to_text()


def txt_value_from_strings(strings: Sequence[bytes]) -> str:
    """The joined value of a TXT record's character-strings (bytes that are not UTF-8 kept)."""
    return b"".join(strings).decode("utf-8", errors="surrogateescape")


def txt_value_from_text(text: str) -> str:
    """The joined value of TXT rdata in zone-file form (``"a" "b"``, escapes allowed)."""
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, text)
    assert isinstance(rdata, TXT)
    return txt_value_from_strings(rdata.strings)


def canonical_value(rtype: str, value: str) -> str:
    """The one textual form of a value that plans compare and providers translate.

    TXT values are kept as they are (joined, unquoted). Addresses are normalised (IPv6
    compressed); names inside values are lower case and absolute. Raises ``ValueError`` for a
    value that does not parse as the given type.
    """
    if rtype == "TXT":
        return value
    if rtype == "A":
        return str(ipaddress.IPv4Address(value.strip()))
    if rtype == "AAAA":
        return str(ipaddress.IPv6Address(value.strip()))
    try:
        rdtype = dns.rdatatype.from_text(rtype)
        # Names without a trailing dot are absolute, as every provider API treats them.
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False
        )
    except (dns.exception.DNSException, ValueError) as err:
        raise ValueError(f"{rtype} value {value!r} does not parse: {err}") from None
    text = rdata.to_text()
    return text if rtype == "CAA" else text.lower()


def rdata_value(rdata: dns.rdata.Rdata) -> str:
    """The canonical value of one rdata (TXT strings joined)."""
    if isinstance(rdata, TXT):
        return txt_value_from_strings(rdata.strings)
    return canonical_value(dns.rdatatype.to_text(rdata.rdtype), rdata.to_text())


def spf_value(domain: MailDomain, own: str = "mx") -> str:
    """An SPF value: the hosts that send, the spec's includes, its policy.

    The hosts that send are ``spec.outbound.addresses`` (``ip4:``/``ip6:``, no lookup) when
    given; else ``own``, the mechanism naming our hosts: at the apex ``mx``, the domain's MX
    hosts; for the HELO name (RFC 7208 §2.3, which receivers check too, and use for bounces,
    whose envelope sender is empty) ``a``, the addresses of the host itself (``mx`` there would
    mean the host's own MX).
    """
    outbound = domain.outbound
    hosts = [f"ip4:{a}" for a in outbound.ipv4] + [f"ip6:{a}" for a in outbound.ipv6]
    terms = [SPF_PREFIX, *(hosts or [own])]
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


def tls_rpt_value(domain: MailDomain) -> str:
    rua = domain.dns.tls_rpt.rua or (f"postmaster@{domain.domain}",)
    return "v=TLSRPTv1; rua=" + ",".join(f"mailto:{a}" for a in rua)


def caa_issuer(acme_server: str) -> str | None:
    """The CAA ``issue`` value for an ACME directory URL, or None for an unknown CA."""
    host = (urlsplit(acme_server).hostname or "").lower().rstrip(".")
    for suffix, issuer in CAA_ISSUERS:
        if host == suffix or host.endswith("." + suffix):
            return issuer
    return None


def _addresses(
    domain: MailDomain, service_addresses: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    if domain.dns.ipv4 or domain.dns.ipv6:
        return domain.dns.ipv4, domain.dns.ipv6, "spec.dns.addresses"
    v4: list[str] = []
    v6: list[str] = []
    for text in service_addresses:
        address = ipaddress.ip_address(text)
        (v4 if address.version == 4 else v6).append(str(address))
    return tuple(dict.fromkeys(v4)), tuple(dict.fromkeys(v6)), "the public Service's addresses"


def _spf_reason(domain: MailDomain) -> str:
    senders = (
        "the outbound addresses" if domain.outbound.ipv4 + domain.outbound.ipv6 else "the MX hosts"
    )
    return f"SPF: {senders} may send mail for the domain (only the v=spf1 value is managed)"


def _helo_spf_reason(domain: MailDomain) -> str:
    host = domain.hostname
    if domain.helo_name != host:  # the HELO name's records are its owner's (docs/operator.md)
        return f"SPF for the host name {host} (only the v=spf1 value is managed)"
    return (
        f"SPF for the HELO name {host} (RFC 7208 §2.3), also checked for bounces "
        "(only the v=spf1 value is managed)"
    )


def desired_records(
    domain: MailDomain, dkim: DkimKey, service_addresses: Sequence[str] = ()
) -> list[Record]:
    """Every record the MailDomain needs, in a stable order.

    ``service_addresses`` (the public Service's load-balancer addresses) are used for A/AAAA
    only when ``spec.dns.addresses`` is empty.
    """
    ttl = domain.dns.ttl
    apex = domain.domain
    host = domain.hostname
    records = [
        Record(
            apex,
            "MX",
            ttl,
            tuple(f"10 {mx}." for mx in mx_hosts(domain)),
            f"mail for {apex} is delivered to {', '.join(mx_hosts(domain))}",
        ),
    ]
    ipv4, ipv6, source = _addresses(domain, service_addresses)
    if ipv4:
        records.append(Record(host, "A", ttl, ipv4, f"IPv4 address of {host} (from {source})"))
    if ipv6:
        records.append(Record(host, "AAAA", ttl, ipv6, f"IPv6 address of {host} (from {source})"))
    records.append(
        Record(
            apex,
            "TXT",
            ttl,
            (spf_value(domain),),
            _spf_reason(domain),
            value_prefix=SPF_PREFIX,
        )
    )
    if host != apex:
        records.append(
            Record(
                host,
                "TXT",
                ttl,
                (spf_value(domain, own="a"),),
                _helo_spf_reason(domain),
                value_prefix=SPF_PREFIX,
            )
        )
    records.append(
        Record(
            f"{dkim.selector}._domainkey.{apex}",
            "TXT",
            ttl,
            (dkim.dns_value(),),
            f"DKIM public key of selector {dkim.selector} ({dkim.algorithm}), the key rspamd "
            "signs with",
        )
    )
    records.append(
        Record(f"_dmarc.{apex}", "TXT", ttl, (dmarc_value(domain),), "DMARC policy (RFC 7489)")
    )
    if domain.dns.mta_sts.enabled:
        records.append(
            Record(
                f"_mta-sts.{apex}",
                "TXT",
                ttl,
                (f"v=STSv1; id={mta_sts_id(domain)}",),
                f"MTA-STS policy id (RFC 8461), a digest of the policy served at "
                f"https://{policy_host(domain)}{POLICY_PATH}",
            )
        )
    if domain.dns.tls_rpt.enabled:
        records.append(
            Record(
                f"_smtp._tls.{apex}",
                "TXT",
                ttl,
                (tls_rpt_value(domain),),
                "SMTP TLS reporting address (RFC 8460)",
            )
        )
    for port, srv in SRV_SERVICES:
        if port.enabled_by(domain.protocols):
            value = f"{srv.priority} 1 {port.number} {host}."
            why = f"{srv.rfc} client autoconfiguration: {srv.offers} on {host}:{port.number}"
        else:
            value = "0 0 0 ."
            why = f"{srv.rfc}: {srv.offers} is not offered (protocols.{port.protocol} is off)"
        records.append(Record(f"{srv.label}.{apex}", "SRV", ttl, (value,), why))
    if domain.tls.issuer == "acme":
        issuer = caa_issuer(domain.tls.acme_server)
        # At the hostname, not the apex: a CAA record at the apex would restrict every
        # certificate of the domain (the web site's too) to this one CA.
        if issuer is not None and host != apex:
            records.append(
                Record(
                    host,
                    "CAA",
                    ttl,
                    (f'0 issue "{issuer}"',),
                    f"CAA: only {issuer} (the ACME CA at {domain.tls.acme_server}) may issue "
                    f"certificates for {host}",
                )
            )
    return records


def _zone_value(record: Record, value: str) -> str:
    return txt_zone_text(value) if record.type == "TXT" else value


def render_zone(records: Sequence[Record]) -> str:
    """The records in zone-file form (absolute names), with each record's reason as a comment."""
    lines = []
    for record in records:
        lines.append(f"; {record.reason}" if record.reason else ";")
        for value in record.values:
            lines.append(
                f"{record.name}.\t{record.ttl}\tIN\t{record.type}\t{_zone_value(record, value)}"
            )
    for line in lines:
        # Defence in depth, as the templates' finalize: validation keeps these out already.
        if has_control_characters(line.replace("\t", " ")):
            raise ValueError(f"refusing to write a zone line with a control character: {line!r}")
    return "\n".join(lines) + "\n"


def managed_names(domain: MailDomain, selectors: Sequence[str] = ()) -> list[str]:
    """Every name ``desired_records`` may use for this spec (and the given extra DKIM selectors).

    What a provider that cannot list its zone reads, so records of ours that are no longer
    desired (MTA-STS switched off, addresses removed) are still found and deleted.
    """
    apex = domain.domain
    names = [apex, domain.hostname, f"_dmarc.{apex}", f"_mta-sts.{apex}", f"_smtp._tls.{apex}"]
    names += [f"{s}._domainkey.{apex}" for s in (domain.dkim.selector, *selectors)]
    names += [f"{srv.label}.{apex}" for _, srv in SRV_SERVICES]
    return list(dict.fromkeys(names))
