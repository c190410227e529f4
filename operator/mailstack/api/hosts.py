"""Which hosts a tenant may point the operator and the mail pods at: public ones (pure).

A MailDomain names hosts that are contacted on its behalf (``policy.contacted_hosts``): the
relay (``spec.relay.host``, by Postfix, with the relay's password), the DNS provider's server
(``rfc2136.server``, ``powerdns.apiUrl``, by the operator, with the provider's key), the
antivirus signature sources (by freshclam) and the DNS resolvers (``spec.resolvers``, by
rspamd). On a shared cluster a tenant could aim them at the cluster's insides: the API server,
another tenant's Service, a node's kubelet, the cloud's metadata address. Under the platform's
policies (``policy.Grants`` enforced) such a host must be public, unless a grant of the domain
allows it by name or range (``allowedHosts``). Without policies nothing is checked, as for a
single team.

Not public: IP addresses in the private, loopback, link-local (cloud metadata), shared (CGNAT),
multicast and reserved ranges, IPv4-mapped and -translated IPv6 forms of them; names that only
resolve inside a cluster or a site (single labels, ``.svc``, ``.cluster.local``, ``.local``,
``.internal``, ``.localhost``, ``.home.arpa``, ..., and ``<name>.<namespace>.svc.<any cluster
domain>``: ``CLUSTER_LABELS``). Addresses are judged by IANA's special-purpose registries
(``NOT_PUBLIC``), not by the Python version's ``ipaddress``. Any spelling the C library reads as
an IPv4 address (``inet_aton``: hex or octal labels, short forms, such as ``169.254.169.0xfe``,
which the name validators accept because its top label holds a letter) is judged as that
address (``as_address``). Not checked here: what a public name resolves to (its owner's DNS may
answer a private address). The search domains a pod's resolver appends are kept out where the
name is used: the operator resolves a DNS provider's host absolute and checks every address
(``dns.providers.reach.HostGuard``); Postfix resolves the relay without search domains, but
what it resolves to is not checked; freshclam gets absolute names (``absolute_url``). Redirects
are not followed by the operator's HTTP clients (``dns.providers.http``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
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

# A cluster's names are <service>.<namespace>.svc.<cluster domain> and <pod address, dashed>.
# <namespace>.pod.<cluster domain>, and the cluster domain is not always cluster.local: a name
# with one of these labels after two others is refused whatever follows. A public name of that
# shape (``a.b.svc.example.com``) is refused too; a grant's ``allowedHosts`` admits it.
CLUSTER_LABELS = ("svc", "pod")


_LOOPBACK = "a loopback address"
_LINK_LOCAL = "a link-local address (cloud metadata lives there)"
_PRIVATE = "a private address"
_NOT_UNICAST = "not a unicast public address"
_SPECIAL = "a special-purpose address, not globally reachable"

# IANA's IPv4 and IPv6 Special-Purpose Address Registries (and multicast), spelled out so the
# verdict does not depend on the Python version: ``ipaddress``'s ``is_global`` changed between
# releases (before 3.11.10/3.12.4 most of 192.0.0.0/24 counted as global, and 192.0.0.192 is
# Oracle Cloud's metadata address). Whole blocks are refused, also their few globally routed
# anycast parts (192.0.0.9, 2001:1::1, ...), which no relay or DNS server of a tenant is.
# Embedded IPv4 forms (mapped, 6to4, NAT64) are judged by their IPv4 address first.
NOT_PUBLIC: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("0.0.0.0/8", _NOT_UNICAST),  # "this network"
        ("10.0.0.0/8", _PRIVATE),
        ("100.64.0.0/10", _PRIVATE),  # carrier-grade NAT, cluster pod ranges
        ("127.0.0.0/8", _LOOPBACK),
        ("169.254.0.0/16", _LINK_LOCAL),
        ("172.16.0.0/12", _PRIVATE),
        ("192.0.0.0/24", _SPECIAL),  # IETF protocol assignments
        ("192.0.2.0/24", _SPECIAL),  # documentation (TEST-NET-1)
        ("192.88.99.0/24", _SPECIAL),  # 6to4 relay anycast (deprecated)
        ("192.168.0.0/16", _PRIVATE),
        ("198.18.0.0/15", _SPECIAL),  # benchmarking
        ("198.51.100.0/24", _SPECIAL),  # documentation (TEST-NET-2)
        ("203.0.113.0/24", _SPECIAL),  # documentation (TEST-NET-3)
        ("224.0.0.0/4", _NOT_UNICAST),  # multicast
        ("240.0.0.0/4", _NOT_UNICAST),  # reserved, and the limited broadcast address
        ("::1/128", _LOOPBACK),
        ("::/8", _NOT_UNICAST),  # unspecified, IPv4-compatible (deprecated), reserved
        ("64:ff9b:1::/48", _SPECIAL),  # local-use IPv4/IPv6 translation
        ("100::/64", _SPECIAL),  # discard-only
        ("100:0:0:1::/64", _SPECIAL),  # dummy prefix
        ("2001::/23", _SPECIAL),  # IETF protocol assignments (Teredo, ORCHID, benchmarking)
        ("2001:db8::/32", _SPECIAL),  # documentation
        ("3fff::/20", _SPECIAL),  # documentation
        ("5f00::/16", _SPECIAL),  # segment routing (SRv6) SIDs
        ("fc00::/7", _PRIVATE),  # unique local (AWS metadata: fd00:ec2::254)
        ("fe80::/10", _LINK_LOCAL),
        ("fec0::/10", _PRIVATE),  # site-local (deprecated)
        ("ff00::/8", _NOT_UNICAST),  # multicast
    )
)


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why the address is not a public one, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or _nat64(address)
        if embedded is not None:
            return address_problem(embedded)
    listed = next((why for net, why in NOT_PUBLIC if address in net), None)
    if listed is not None:
        return listed
    # What the registry lists is above; Python's view stays as a net for later additions.
    if address.is_loopback:
        return _LOOPBACK
    if address.is_link_local:
        return _LINK_LOCAL
    if address.is_private:
        return _PRIVATE
    if address.is_multicast or address.is_reserved or address.is_unspecified:
        return _NOT_UNICAST
    if not address.is_global:
        return "not a public address"
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def host_problem(host: str) -> str | None:
    """Why ``host`` (a validated name or IP address) is not public, or None."""
    address = as_address(host)
    if address is None:
        name = host.lower().rstrip(".")
        if "." not in name:
            return "a single-label name, which resolves through the cluster's search domains"
        suffix = next((s for s in INTERNAL_SUFFIXES if name.endswith(s)), None)
        if suffix is not None:
            return f"a name under {suffix}, which only resolves inside a cluster or a site"
        label = next((x for x in name.split(".")[2:] if x in CLUSTER_LABELS), None)
        if label is not None:
            return (
                f"a name with a {label} label after two others, like a cluster's "
                f"<name>.<namespace>.{label}.<cluster domain>"
            )
        return None
    return address_problem(address)


def as_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` stands for where the mail pods and the operator resolve it, or
    None for a name. Besides the usual forms, every spelling ``inet_aton`` reads as an IPv4
    address (``169.254.169.0xfe``, ``0xa9.0xfe.0xa9.0xfe``, ``169.0xfea9fe``, octal, short
    forms) is one: glibc's ``getaddrinfo`` (Postfix, libcurl in freshclam, the operator)
    takes it so, without asking DNS, although it is a valid domain name (a top label with a
    letter). Judged with a trailing dot removed too: refusing such a name costs nothing."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    for spelling in {host, host.rstrip(".")}:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(spelling))
        except (OSError, ValueError):
            continue
    return None


def absolute_url(url: str) -> str:
    """``url`` (a validated http(s) URL) with its host name made absolute (a trailing dot), so
    that the pod's resolver never completes it with the cluster's search domains
    (``kubernetes.default`` would become the API server's ``kubernetes.default.svc.<cluster
    domain>``, ``shop.tenant-b`` another tenant's Service). Addresses stay as they are."""
    match = re.fullmatch(r"([a-z]+://)(\[[^\]]*\]|[^:/?#]*)(.*)", url, re.DOTALL)
    if match is None:
        return url
    start, host, rest = match.groups()
    if not host or host.endswith(".") or as_address(host) is not None:
        return url
    return f"{start}{host}.{rest}"


def url_host(url: str) -> str:
    """The host of an http(s) URL (brackets of an IPv6 literal removed)."""
    return urllib.parse.urlsplit(url).hostname or ""


def allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether a grant's ``allowedHosts`` (names, ``*.`` suffixes, addresses, CIDRs) covers it."""
    address = as_address(host)
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
