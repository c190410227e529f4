"""Owns the tripwire's decision (pure): what the postfix agents report about clients of the
public listeners that come from the cluster's own ranges, kept per MailDomain, and the
``ClientAddressesMasked`` condition made of it.

The agents serve ``address port count seconds-since-last`` lines (agent/tripwire.py); the
operator turns ages into its own wall-clock times, keeps the latest sighting of each address and
port across polls (an agent forgets on restart), and drops a sighting not renewed for
``CLEAR_AFTER``. The condition is True while any sighting is kept, False when none, Unknown
(``NotConfigured``) without clusterNetworks. It names addresses, ports and the range each lies
in, but no counts or times: those change with every message and would make every poll a status
write. It never counts for Ready: mail still flows, only the addresses are wrong.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mailstack.api.models import ClusterNetworks
from mailstack.api.parse.cluster_networks import cluster_range_of
from mailstack.controller import reasons
from mailstack.controller.conditions import Condition

CLIENT_ADDRESSES_MASKED = "ClientAddressesMasked"
# A day: a nightly job relaying through the public Service is seen, and a fixed setup clears
# by the next day (the agents' logs say when each address was last seen).
CLEAR_AFTER = 24 * 3600.0
MAX_SIGHTINGS = 64  # per MailDomain: the condition names a few; memory stays bounded
MAX_LINES = 64  # the agent keeps 32 pairs; more is not an agent
MAX_NAMED = 8  # addresses named in the message; the rest are counted

Key = tuple[str, str]  # (address, port)


@dataclass(frozen=True)
class Sighting:
    address: str
    port: str
    count: int  # mail transactions the agent counted since it started
    last_seen: float  # the operator's wall-clock time (seconds)


def parse_observations(text: str, now: float) -> list[Sighting]:
    """The agent's lines as sightings at ``now``; malformed lines are skipped."""
    found = []
    for line in text.splitlines()[:MAX_LINES]:
        words = line.split()
        if len(words) != 4 or not words[2].isdigit() or not words[3].isdigit():
            continue
        address, port = words[0], words[1]
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            continue
        if not (port == "?" or (port.isdigit() and 0 < int(port) < 65536)):
            continue
        found.append(Sighting(address, port, int(words[2]), now - int(words[3])))
    return found


def merge(
    known: Mapping[Key, Sighting],
    seen: Iterable[Sighting],
    now: float,
    clear_after: float = CLEAR_AFTER,
) -> dict[Key, Sighting]:
    """``known`` updated with the latest of each pair, without the pairs not seen for
    ``clear_after``, and at most ``MAX_SIGHTINGS`` (the latest): what an agent answers is
    whatever a pod of the tenant's says, so what is kept of it is bounded."""
    result = dict(known)
    for sighting in seen:
        key = (sighting.address, sighting.port)
        before = result.get(key)
        if before is None or sighting.last_seen >= before.last_seen:
            result[key] = sighting
    fresh = [(key, s) for key, s in result.items() if now - s.last_seen < clear_after]
    fresh.sort(key=lambda item: (-item[1].last_seen, item[0]))
    return dict(fresh[:MAX_SIGHTINGS])


def masked_condition(sightings: Iterable[Sighting], networks: ClusterNetworks) -> Condition:
    """``ClientAddressesMasked`` from the sightings kept for one MailDomain."""
    if not networks.ranges():
        return Condition(
            CLIENT_ADDRESSES_MASKED,
            "Unknown",
            reasons.NOT_CONFIGURED,
            "the operator has no clusterNetworks: masked client addresses are not looked for",
        )
    ordered = sorted(sightings, key=lambda s: (s.address, s.port))
    if not ordered:
        return Condition(
            CLIENT_ADDRESSES_MASKED,
            "False",
            reasons.NO_MASKED_CLIENTS,
            "no client of a public listener came from the cluster's ranges",
        )
    named = []
    for sighting in ordered[:MAX_NAMED]:
        where = cluster_range_of(sighting.address, networks)
        within = f"{where[0]} range {where[1]}" if where else "no longer a cluster range"
        named.append(f"{sighting.address} on port {sighting.port} ({within})")
    more = f" and {len(ordered) - MAX_NAMED} more" if len(ordered) > MAX_NAMED else ""
    return Condition(
        CLIENT_ADDRESSES_MASKED,
        "True",
        reasons.MASKED_CLIENTS_SEEN,
        f"clients of the public listeners come from the cluster's own addresses: "
        f"{', '.join(named)}{more}. Their real addresses are hidden by SNAT "
        "(externalTrafficPolicy: Cluster) or a proxy without PROXY protocol, so SPF, DNSBLs and "
        "the per-client limits see the wrong client; they are trusted no more than any public "
        'client (docs/operator.md, "Masked client addresses")',
    )
