"""Owns the cluster's own address ranges (``ClusterNetworks``): the operator's
``--cluster-networks`` JSON (the chart's ``clusterNetworks``), and the rule that a MailDomain's
``spec.limits.perClient.exemptNetworks`` never exempts an address of those ranges.

A client of a public listener inside these ranges is the SNAT symptom (``externalTrafficPolicy:
Cluster``, an ingress or proxy without PROXY protocol): its address says nothing about the real
client, so it must get nothing a public client would not get (docs/operator.md, "Masked client
addresses"). ``mynetworks`` is the pod's loopback alone; exemptions are the one trust a
MailDomain's author can give, so an overlap is refused rather than silently narrowed.
"""

from __future__ import annotations

import ipaddress

from mailstack.api.errors import FieldError, Problem
from mailstack.api.models import ClusterNetworks, MailDomain
from mailstack.api.parse.common import option_json, raise_problems
from mailstack.api.parse.limits import ip_network
from mailstack.api.reader import Reader, join

DOCUMENT = "cluster networks"
PATH = "clusterNetworks"
MAX_RANGES = 64
# Wider ranges would take in public address space: a typo, not a cluster.
MIN_PREFIX = {4: 8, 6: 7}


def cluster_range(value: object) -> str:
    """One range of the cluster: an address or CIDR range (canonical), not wider than /8
    (IPv4) or /7 (IPv6)."""
    network = ip_network(value)
    parsed = ipaddress.ip_network(network)
    if parsed.prefixlen < MIN_PREFIX[parsed.version]:
        raise FieldError(
            f"{value!r} is wider than /{MIN_PREFIX[parsed.version]}: "
            "it would take in public addresses"
        )
    return network


def parse_cluster_networks(text: str, source: str = "") -> ClusterNetworks:
    """``{"pods": [...], "services": [...], "nodes": [...]}`` (each optional); raises
    ``ValidationError`` with every problem. Empty text: no ranges (the tripwire is off)."""
    r = Reader(DOCUMENT, source)
    fields = r.mapping(option_json(r, text, PATH), PATH, {"pods", "services", "nodes"})
    networks = ClusterNetworks(
        **{key: r.items(fields, key, PATH, cluster_range, MAX_RANGES) for key in fields}
    )
    raise_problems(r)
    return networks


def cluster_range_of(address: str, networks: ClusterNetworks) -> tuple[str, str] | None:
    """(kind, range) of the first cluster range holding ``address`` (an IP address); None
    when it is in none, or not an address."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    for kind, network in networks.ranges():
        if parsed in ipaddress.ip_network(network):
            return kind, network
    return None


def exempt_cluster_problems(domain: MailDomain, networks: ClusterNetworks) -> list[Problem]:
    """A problem for each ``exemptNetworks`` entry that overlaps a cluster range."""
    problems = []
    path = "spec.limits.perClient.exemptNetworks"
    for index, exempt in enumerate(domain.limits.per_client.exempt_networks):
        mine = ipaddress.ip_network(exempt)
        for kind, network in networks.ranges():
            theirs = ipaddress.ip_network(network)
            if mine.version == theirs.version and mine.overlaps(theirs):
                problems.append(
                    Problem(
                        domain.ref,
                        join(path, index),
                        f"{exempt} overlaps the cluster's {kind} range {network}: addresses of "
                        "the cluster are never exempt on the public listeners (they are what "
                        "SNAT or a proxy without PROXY protocol shows; docs/operator.md, "
                        '"Masked client addresses")',
                    )
                )
                break
    return problems
