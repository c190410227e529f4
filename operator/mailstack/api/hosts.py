"""Which hosts a tenant may point the operator and the mail pods at: public ones (pure).

A MailDomain names hosts that are contacted on its behalf: the relay (``spec.relay.host``, by
Postfix, with the relay's password) and the DNS provider's server (``rfc2136.server``,
``powerdns.apiUrl``, by the operator, with the provider's key). On a shared cluster a tenant
could aim them at the cluster's insides: the API server, another tenant's Service, a node's
kubelet, the cloud's metadata address. Under the platform's policies (``policy.Grants``
enforced) such a host must be public, unless a grant of the domain allows it by name or range
(``allowedHosts``). Without policies nothing is checked, as for a single team.

Not public: IP addresses in the private, loopback, link-local (cloud metadata), shared (CGNAT),
multicast and reserved ranges, IPv4-mapped and -translated IPv6 forms of them; names that only
resolve inside a cluster or a site (single labels, ``.svc``, ``.cluster.local``, ``.local``,
``.internal``, ``.localhost``, ``.home.arpa``, ...). Other spellings of an address (decimal,
octal, hex, short forms) are already refused as names by the field validators. Not checked
here: what a public name resolves to (its owner's DNS may answer a private address) and the
search domains a pod's resolver appends. The operator checks both when it connects to a DNS
provider's host (``dns.providers.reach.HostGuard``: absolute resolution, ``address_problem`` of
every address); Postfix resolves the relay without search domains, but what it resolves to is
not checked. Redirects are not followed by the operator's HTTP clients (``dns.providers.http``).
"""

from __future__ import annotations

import ipaddress
import urllib.parse

INTERNAL_SUFFIXES = (
    ".svc",
    ".pod",
    ".cluster.local",
    ".local",
    ".localhost",
    ".localdomain",
    ".internal",
    ".intranet",
    ".lan",
    ".home.arpa",
    ".corp",
    ".private",
)


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why the address is not a public one, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or _nat64(address)
        if embedded is not None:
            return address_problem(embedded)
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_private or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED):
        return "a private address"
    if address.is_multicast or address.is_reserved or address.is_unspecified:
        return "not a unicast public address"
    if not address.is_global:
        return "not a public address"
    return None


_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, cluster pod ranges
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def host_problem(host: str) -> str | None:
    """Why ``host`` (a validated name or IP address) is not public, or None."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        name = host.lower().rstrip(".")
        if "." not in name:
            return "a single-label name, which resolves through the cluster's search domains"
        suffix = next((s for s in INTERNAL_SUFFIXES if name.endswith(s)), None)
        if suffix is not None:
            return f"a name under {suffix}, which only resolves inside a cluster or a site"
        return None
    return address_problem(address)


def url_host(url: str) -> str:
    """The host of an http(s) URL (brackets of an IPv6 literal removed)."""
    return urllib.parse.urlsplit(url).hostname or ""


def allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether a grant's ``allowedHosts`` (names, ``*.`` suffixes, addresses, CIDRs) covers it."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    for pattern in patterns:
        if "/" in pattern or _is_address(pattern):
            if address is not None and address in ipaddress.ip_network(pattern, strict=False):
                return True
        elif pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
