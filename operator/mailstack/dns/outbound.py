"""Owns the verdict on a MailDomain's outbound identity (``spec.outbound``), pure but for its
lookups (``spf.Lookup``): per address, forward-confirmed reverse DNS to the HELO name and the
SPF result of the domain for it.

What receivers check of a sending server: the PTR of its address names a host whose A/AAAA
include the address again (FCrDNS), and that host is the name it greets with (many receivers
score a mismatch, some refuse); the SPF record of the envelope sender's domain passes for the
address (else DMARC has only DKIM, and our own DMARC policy quarantines the rest). The first
failed check of an address is its ``failed`` check, named in the condition by the controller.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mailstack.dns.lint import QueryError
from mailstack.dns.spf import Lookup, SpfResult, check_host

FailedCheck = Literal["", "ptr", "forward", "spf", "lookup"]


@dataclass(frozen=True)
class AddressCheck:
    """What the lookups said about one outbound address."""

    address: str
    ptr: tuple[str, ...] = ()  # the PTR names of the address, as found
    fcrdns: bool = False  # a PTR name is the HELO name, and its A/AAAA include the address
    spf: SpfResult = "none"
    failed: FailedCheck = ""
    problem: str = ""  # what failed, for people

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_status(self) -> dict[str, object]:
        return {
            "address": self.address,
            "ptr": list(self.ptr),
            "fcrdns": self.fcrdns,
            "spf": self.spf,
        }


def check_address(address: str, helo: str, domain: str, lookup: Lookup) -> AddressCheck:
    """FCrDNS of ``address`` to ``helo`` and the SPF of ``domain`` for it."""
    ip = ipaddress.ip_address(address)
    spf = check_host(address, domain, lookup, helo=helo)
    try:
        ptr = tuple(v.lower().rstrip(".") for v in lookup(ip.reverse_pointer, "PTR"))
        forward = lookup(helo, "A" if ip.version == 4 else "AAAA") if helo in ptr else []
    except QueryError as err:
        why = f"{address}: the reverse lookup failed: {err}"
        return AddressCheck(address, spf=spf.result, failed="lookup", problem=why)
    fcrdns = helo in ptr and any(ipaddress.ip_address(a) == ip for a in forward)
    if helo not in ptr:
        named = ", ".join(ptr) if ptr else "no name"
        why = f"{address}: its PTR record names {named}, not the HELO name {helo}"
        return AddressCheck(address, ptr, fcrdns, spf.result, "ptr", why)
    if not fcrdns:
        why = f"{address}: its PTR names {helo}, but the addresses of {helo} do not include it"
        return AddressCheck(address, ptr, fcrdns, spf.result, "forward", why)
    if spf.result == "temperror":
        why = f"{address}: the SPF lookups of {domain} failed: {spf.detail}"
        return AddressCheck(address, ptr, fcrdns, spf.result, "lookup", why)
    if spf.result != "pass":
        why = f"{address}: the SPF of {domain} gives {spf.result} for it ({spf.detail})"
        return AddressCheck(address, ptr, fcrdns, spf.result, "spf", why)
    return AddressCheck(address, ptr, fcrdns, spf.result)


def check_outbound(
    addresses: Sequence[str], helo: str, domain: str, lookup: Lookup
) -> tuple[AddressCheck, ...]:
    """Every outbound address, in order."""
    return tuple(check_address(a, helo, domain, lookup) for a in addresses)
