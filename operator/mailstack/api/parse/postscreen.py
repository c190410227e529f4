"""``spec.postscreen`` of a MailDomain: the screening of new clients on port 25.

Owns: the bounds of the pregreet wait, the DNS list site names (domain names, never a name
that only resolves inside a cluster), their answer filters (Postfix's ``d.d.d.d`` form, each
``d`` a number or ``[a..b;c]``), weights and thresholds, and the allow-listed networks. Every
value reaches main.cf, so nothing else passes.
"""

from __future__ import annotations

import re

from mailstack.api import hosts, validate
from mailstack.api import postscreen_models as models
from mailstack.api.errors import FieldError
from mailstack.api.parse.common import sections
from mailstack.api.parse.limits import ip_network
from mailstack.api.reader import Reader, boolean, integer, join, one_of

MAX_DNSBL_SITES = 16
MAX_ALLOW_NETWORKS = 32
MAX_WEIGHT = 100
# postscreen_greet_wait: Postfix's default is 6 s (2 s under stress); each new client waits it
# once (then postscreen_greet_ttl, a day), so longer buys little and delays every first mail.
GREET_WAIT_SECONDS = (1, 10)

_ACTIONS = ("enforce", "drop", "ignore")
_NUMBER = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_ITEM = rf"{_NUMBER}(?:\.\.{_NUMBER})?"
_OCTET = rf"(?:{_NUMBER}|\[{_ITEM}(?:;{_ITEM})*\])"
_FILTER = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")


def dnsbl_filter(value: object) -> str:
    """The answers of a DNS list that count: ``127.0.0.2``, ``127.0.0.[2..11]``,
    ``127.0.[0..255].[2;4;10..12]`` (each part a number 0-255 or a ``[...]`` of numbers and
    ``a..b`` ranges separated by ``;``)."""
    if not isinstance(value, str):
        raise FieldError("expected an answer filter like 127.0.0.[2..11] (string)")
    if not _FILTER.fullmatch(value):
        raise FieldError(
            f"{value!r} is not an answer filter: expected four parts, each a number (0-255) or"
            " a pattern like [2..11;20], as in 127.0.0.[2..11]"
        )
    for low, high in _RANGE.findall(value):
        if int(high) < int(low):
            raise FieldError(f"{value!r}: the range {low}..{high} runs backwards")
    return value


def dnsbl_site_name(value: object) -> str:
    """A DNS list's zone: a domain name that is not internal to a cluster or a site (a list
    answers for the whole internet; an internal name is a mistake or a probe)."""
    name = validate.domain_name(value)
    problem = hosts.host_problem(name)
    if problem is not None:
        raise FieldError(f"{name!r} is not a public DNS list: {problem}")
    return name


def _weight(value: object) -> int:
    weight = integer(-MAX_WEIGHT, MAX_WEIGHT)(value)
    if weight == 0:
        raise FieldError(
            "a weight of 0 counts nothing: give a positive weight (a block list) "
            "or a negative one (an allow list)"
        )
    return weight


def _site(r: Reader, value: object, path: str) -> models.DnsblSite:
    site = r.mapping(value, path, {"name", "weight", "filter"})
    if value is not None and "name" not in site:
        r.fail(join(path, "name"), "is required")
    return models.DnsblSite(
        name=r.field(site, "name", path, dnsbl_site_name, ""),
        weight=r.field(site, "weight", path, _weight, models.DnsblSite.weight),
        filter=r.field(site, "filter", path, dnsbl_filter, None),
    )


def _dnsbl(r: Reader, value: object, path: str) -> models.Dnsbl:
    dnsbl = r.mapping(value, path, {"sites", "threshold", "allowlistThreshold", "action"})
    default = models.Dnsbl
    sites = sections(r, dnsbl.get("sites"), join(path, "sites"), _site, MAX_DNSBL_SITES)
    names = [site.name for site in sites if site.name]
    for name in sorted({n for n in names if names.count(n) > 1}):
        r.fail(join(path, "sites"), f"{name} is listed twice (give one filter and weight)")
    return models.Dnsbl(
        sites=sites,
        threshold=r.field(dnsbl, "threshold", path, integer(1, MAX_WEIGHT), default.threshold),
        allowlist_threshold=r.field(
            dnsbl,
            "allowlistThreshold",
            path,
            integer(-MAX_WEIGHT, 0),
            default.allowlist_threshold,
        ),
        action=r.field(dnsbl, "action", path, one_of("enforce", "drop"), default.action),
    )


def parse_postscreen(r: Reader, value: object) -> models.Postscreen:
    path = "spec.postscreen"
    fields = {"pregreet", "deepProtocolTests", "dnsbl", "allowNetworks"}
    postscreen = r.mapping(value, path, fields)
    pregreet_path = join(path, "pregreet")
    pregreet = r.mapping(postscreen.get("pregreet"), pregreet_path, {"action", "waitSeconds"})
    default = models.Postscreen
    return models.Postscreen(
        pregreet=r.field(pregreet, "action", pregreet_path, one_of(*_ACTIONS), default.pregreet),
        greet_wait=r.field(
            pregreet, "waitSeconds", pregreet_path, integer(*GREET_WAIT_SECONDS), default.greet_wait
        ),
        deep_protocol_tests=r.field(
            postscreen, "deepProtocolTests", path, boolean, default.deep_protocol_tests
        ),
        dnsbl=_dnsbl(r, postscreen.get("dnsbl"), join(path, "dnsbl")),
        allow_networks=r.items(postscreen, "allowNetworks", path, ip_network, MAX_ALLOW_NETWORKS),
    )
