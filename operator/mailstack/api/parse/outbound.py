"""``spec.outbound`` of a MailDomain: the addresses mail leaves from, the HELO name, binding.

Owns the rules of outbound identity in a spec: every address is a public one (``api.hosts``'
rule: an address the SPF record names and receivers see; a private one is never seen by them);
``bindAddress`` needs at most one address per family (Postfix binds one of each,
``smtp_bind_address`` and ``smtp_bind_address6``) and at least one; with ``spec.relay`` mail
leaves from the relay, whose addresses and name are its own (its SPF goes into
``spec.dns.spf.includes``), so neither addresses nor binding are accepted. Whether a tenant may
bind to an address at all is the platform's (``policy.Grants.outbound_refusals``).
"""

from __future__ import annotations

import ipaddress

from mailstack.api import hosts, models, validate
from mailstack.api.errors import FieldError
from mailstack.api.reader import Reader, boolean, join

MAX_ADDRESSES = 16

WITH_RELAY = (
    "with spec.relay, mail leaves from the relay: its addresses are the relay's (list its SPF "
    "include in spec.dns.spf.includes)"
)


def public_address(value: object) -> str:
    """An IPv4 or IPv6 address that receivers on the internet can see (canonical)."""
    text = validate.any_ip_address(value)
    problem = hosts.address_problem(ipaddress.ip_address(text))
    if problem is not None:
        raise FieldError(f"{text} is {problem}: mail to the internet leaves from a public address")
    return text


def parse_outbound(r: Reader, value: object, hostname: str, relay: bool) -> models.Outbound:
    """``spec.outbound``; ``hostname`` is the default HELO name, ``relay`` whether a relay is
    set."""
    path = "spec.outbound"
    outbound = r.mapping(value, path, {"addresses", "heloName", "bindAddress"})
    addresses = r.items(outbound, "addresses", path, public_address, max_items=MAX_ADDRESSES)
    bind = r.field(outbound, "bindAddress", path, boolean, models.Outbound.bind_address)
    helo = r.field(outbound, "heloName", path, validate.domain_name, hostname)
    if relay and addresses:
        r.fail(join(path, "addresses"), WITH_RELAY)
    if relay and bind:
        r.fail(join(path, "bindAddress"), WITH_RELAY)
    ipv4 = tuple(a for a in addresses if ":" not in a)
    ipv6 = tuple(a for a in addresses if ":" in a)
    if bind and not relay:
        if not addresses:
            r.fail(join(path, "bindAddress"), "needs the address to bind to in addresses")
        for family, of_family in (("IPv4", ipv4), ("IPv6", ipv6)):
            if len(of_family) > 1:
                why = f"Postfix binds one {family} address: list only the one to bind to"
                r.fail(join(path, "bindAddress"), why)
    return models.Outbound(ipv4=ipv4, ipv6=ipv6, helo_name=helo, bind_address=bind)
