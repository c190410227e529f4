"""``spec.dns`` of a MailDomain: TTL, addresses and the mail policy records (SPF, DMARC, MTA-STS,
TLS-RPT).

Owns: each of those sections; the provider is parsed by ``dns_provider``.
"""

from __future__ import annotations

from typing import Literal

from mailstack.api import dns_models as models
from mailstack.api import validate
from mailstack.api.parse.dns_provider import parse_provider
from mailstack.api.reader import Reader, boolean, integer, join, one_of

DMARC_POLICIES = ("none", "quarantine", "reject")


def parse_dns(r: Reader, value: object, domain: str) -> models.Dns:
    """``spec.dns``; ``domain`` ("" when invalid) is the zone of providers not given one."""
    path = "spec.dns"
    dns = r.mapping(
        value, path, {"provider", "ttl", "addresses", "spf", "dmarc", "mtaSts", "tlsRpt"}
    )
    provider = parse_provider(r, dns.get("provider"), join(path, "provider"), domain)
    ttl = r.field(dns, "ttl", path, integer(60, 86400), models.Dns.ttl)
    ipv4, ipv6 = _addresses(r, dns.get("addresses"), join(path, "addresses"))
    return models.Dns(
        provider=provider,
        ttl=ttl,
        ipv4=ipv4,
        ipv6=ipv6,
        spf=_spf(r, dns.get("spf"), join(path, "spf")),
        dmarc=_dmarc(r, dns.get("dmarc"), join(path, "dmarc")),
        mta_sts=_mta_sts(r, dns.get("mtaSts"), join(path, "mtaSts")),
        tls_rpt=_tls_rpt(r, dns.get("tlsRpt"), join(path, "tlsRpt")),
    )


def _addresses(r: Reader, value: object, path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The IPv4 and IPv6 addresses published for the mail host."""
    addresses = r.mapping(value, path, {"ipv4", "ipv6"})
    ipv4 = r.items(addresses, "ipv4", path, lambda x: validate.ip_address(x, 4))
    ipv6 = r.items(addresses, "ipv6", path, lambda x: validate.ip_address(x, 6))
    return ipv4, ipv6


def _spf(r: Reader, value: object, path: str) -> models.Spf:
    spf = r.mapping(value, path, {"policy", "includes"})
    return models.Spf(
        policy=r.field(spf, "policy", path, one_of("-all", "~all", "?all"), models.Spf.policy),
        includes=r.items(spf, "includes", path, validate.dns_name),
    )


def _alignment_mode(value: object) -> Literal["r", "s"]:
    """``relaxed`` or ``strict``, as DMARC writes it (``adkim=``, ``aspf=``)."""
    return "s" if one_of("relaxed", "strict")(value) == "strict" else "r"


def _dmarc(r: Reader, value: object, path: str) -> models.Dmarc:
    dmarc = r.mapping(value, path, {"policy", "subdomainPolicy", "rua", "pct", "alignment"})
    alignment_path = join(path, "alignment")
    alignment = r.mapping(dmarc.get("alignment"), alignment_path, {"dkim", "spf"})
    default = models.Dmarc
    return models.Dmarc(
        policy=r.field(dmarc, "policy", path, one_of(*DMARC_POLICIES), default.policy),
        subdomain_policy=r.field(
            dmarc, "subdomainPolicy", path, one_of(*DMARC_POLICIES), default.subdomain_policy
        ),
        rua=r.items(dmarc, "rua", path, validate.report_address),
        pct=r.field(dmarc, "pct", path, integer(0, 100), default.pct),
        adkim=r.field(alignment, "dkim", alignment_path, _alignment_mode, default.adkim),
        aspf=r.field(alignment, "spf", alignment_path, _alignment_mode, default.aspf),
    )


def _mta_sts(r: Reader, value: object, path: str) -> models.MtaSts:
    mta_sts = r.mapping(value, path, {"enabled", "mode", "maxAge"})
    default = models.MtaSts
    return models.MtaSts(
        enabled=r.field(mta_sts, "enabled", path, boolean, default.enabled),
        mode=r.field(mta_sts, "mode", path, one_of("none", "testing", "enforce"), default.mode),
        max_age=r.field(mta_sts, "maxAge", path, integer(86400, 31557600), default.max_age),
    )


def _tls_rpt(r: Reader, value: object, path: str) -> models.TlsRpt:
    tls_rpt = r.mapping(value, path, {"enabled", "rua"})
    return models.TlsRpt(
        enabled=r.field(tls_rpt, "enabled", path, boolean, models.TlsRpt.enabled),
        rua=r.items(tls_rpt, "rua", path, validate.report_address),
    )
