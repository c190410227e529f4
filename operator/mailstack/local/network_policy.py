"""The render's NetworkPolicies as nftables rules, so that `mailstack up` isolates pods as a
cluster does.

Pure: from NetworkPolicy documents and the local pods (with their addresses) to the text of one
``table inet`` for ``nft -f``. Without it every pod, the host and the other MailDomains' pods
reached Dovecot's LMTP and auth ports, which in a cluster only the MTA may reach.

Kubernetes semantics: a pod selected by a policy of type Ingress (Egress) accepts (opens) only
what one of those policies' rules allows; a pod no policy selects is open. Replies of allowed
connections pass (conntrack). As a kubelet's probes do, the host reaches the agents' health
ports. What is refused is answered (TCP reset, ICMP), not dropped, so a test or a client
fails at once. Only the features the renderer emits and a few plain neighbours are translated
(``podSelector`` and ``namespaceSelector`` by ``matchLabels``, ``ipBlock`` by ``cidr``, named
and numbered TCP/UDP ports); anything else raises ``PolicyError`` rather than being allowed or
ignored.

Addresses, not interfaces: bridged pod-to-pod packets reach the inet hooks with the bridge as
both interfaces (br_netfilter), so the pods are told apart by their addresses on the bridge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mailstack.kubedoc import Obj, ObjectRef
from mailstack.local.pods import PodPlan

# The one namespace label a local run knows: Kubernetes sets it on every namespace.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp"}


class PolicyError(Exception):
    """A NetworkPolicy uses a feature the local runtime does not translate; the message names
    the policy and the field."""


@dataclass(frozen=True)
class PolicyPod:
    """A local pod as policies see it: its key, namespace, labels, named container ports, its
    agents' health ports and its address on the bridge."""

    key: str
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int]
    probe_ports: tuple[int, ...]
    address: str

    @staticmethod
    def of(pod: PodPlan, address: str) -> PolicyPod:
        probes = tuple(sorted({c.health_port for c in pod.containers if c.health_port}))
        return PolicyPod(pod.key, pod.namespace, pod.labels, pod.ports, probes, address)


# protocol ("tcp"/"udp") -> port numbers, None for every port of the protocol; a whole
# ``_Ports`` of None: every port of every protocol.
_Ports = dict[str, set[int] | None]


def _refuse_unknown(where: str, value: Any, known: Iterable[str]) -> None:
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: expected a mapping, got {value!r}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise PolicyError(f"{where}: {', '.join(unknown)} not supported by mailstack up")


def _selects(where: str, selector: Any, labels: dict[str, str]) -> bool:
    _refuse_unknown(where, selector, ("matchLabels",))
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(key) == value for key, value in wanted.items())


def _namespace_selects(where: str, selector: Any, namespace: str) -> bool:
    _refuse_unknown(where, selector, ("matchLabels",))
    wanted = dict(selector.get("matchLabels") or {})
    other = sorted(set(wanted) - {NAMESPACE_NAME_LABEL})
    if other:
        raise PolicyError(
            f"{where}.matchLabels: only {NAMESPACE_NAME_LABEL} is known locally, not "
            + ", ".join(other)
        )
    return bool(wanted.get(NAMESPACE_NAME_LABEL, namespace) == namespace)


def _peer_pods(where: str, peers: Any, namespace: str, pods: list[PolicyPod]) -> list[PolicyPod]:
    """The pods a ``from``/``to`` list selects (in the policy's ``namespace`` unless a
    namespaceSelector says otherwise)."""
    chosen: list[PolicyPod] = []
    for index, peer in enumerate(peers):
        at = f"{where}[{index}]"
        if isinstance(peer, dict) and "ipBlock" in peer:
            continue  # an address range: ``_ip_blocks``
        _refuse_unknown(at, peer, ("podSelector", "namespaceSelector"))
        if not peer:
            raise PolicyError(f"{at}: an empty peer")
        for pod in pods:
            if "namespaceSelector" in peer:
                in_namespace = _namespace_selects(
                    f"{at}.namespaceSelector", peer["namespaceSelector"], pod.namespace
                )
            else:
                in_namespace = pod.namespace == namespace
            selected = in_namespace and _selects(
                f"{at}.podSelector", peer.get("podSelector", {}), pod.labels
            )
            if selected and pod not in chosen:
                chosen.append(pod)
    return chosen


def _ip_blocks(where: str, peers: Any, address_field: str) -> list[str]:
    """nft matches (``ip saddr 10.0.0.0/8``) of the ``ipBlock`` peers of a ``from``/``to``
    list; ``address_field`` is saddr or daddr. ``except`` is refused."""
    matches = []
    for index, peer in enumerate(peers):
        if not (isinstance(peer, dict) and "ipBlock" in peer):
            continue
        at = f"{where}[{index}]"
        _refuse_unknown(at, peer, ("ipBlock",))
        _refuse_unknown(f"{at}.ipBlock", peer["ipBlock"], ("cidr",))
        try:
            network = ipaddress.ip_network(str(peer["ipBlock"].get("cidr")), strict=True)
        except ValueError as err:
            raise PolicyError(f"{at}.ipBlock.cidr: {err}") from None
        family = "ip" if network.version == 4 else "ip6"
        matches.append(f"{family} {address_field} {network}")
    return matches


def _ports_on(where: str, ports: Any, pod: PolicyPod | None) -> _Ports | None:
    """The rule's ports resolved on ``pod`` (named ports are that pod's container ports; with
    no pod, i.e. any destination, only numbers); None for every port, {} for none at all."""
    if not ports:
        return None
    result: _Ports = {}
    for index, entry in enumerate(ports):
        at = f"{where}[{index}]"
        _refuse_unknown(at, entry, ("protocol", "port"))
        protocol = _PROTOCOLS.get(entry.get("protocol", "TCP"))
        if protocol is None:
            raise PolicyError(f"{at}.protocol: {entry['protocol']} not supported by mailstack up")
        port = entry.get("port")
        if port is None:
            result[protocol] = None
            continue
        if isinstance(port, str):
            number = pod.ports.get(port) if pod is not None else None
            if number is None:
                continue  # a name the pod does not declare matches nothing there
        elif isinstance(port, int) and not isinstance(port, bool):
            number = port
        else:
            raise PolicyError(f"{at}.port: {port!r} is neither a number nor a name")
        current = result.get(protocol, set())
        if current is not None:  # None: every port of the protocol, already
            result[protocol] = current | {number}
    return result


def _set(items: list[str]) -> str:
    """One nft value, or an anonymous set of several."""
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _ports(numbers: Iterable[int]) -> str:
    return _set([str(n) for n in sorted(set(numbers))])


def _addresses(pods: Iterable[PolicyPod]) -> str:
    return _set(sorted({p.address for p in pods}, key=ipaddress.ip_address))


def _allow_lines(match: str, ports: _Ports | None, verdict: str) -> list[str]:
    """nft rules allowing ``match`` (``ip saddr ...``, or "") on ``ports``."""
    prefix = f"{match} " if match else ""
    if ports is None:
        return [f"{prefix}{verdict}"]
    lines = []
    for protocol, numbers in sorted(ports.items()):
        if numbers is None:
            lines.append(f"{prefix}meta l4proto {protocol} {verdict}")
        elif numbers:
            lines.append(f"{prefix}{protocol} dport {_ports(numbers)} {verdict}")
    return lines


@dataclass(frozen=True)
class _Isolation:
    """The allow rules of one pod in one direction, from every policy that selects it."""

    pod: PolicyPod
    lines: list[str]


def _policy_types(where: str, spec: Obj) -> list[str]:
    types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))
    for kind in types:
        if kind not in ("Ingress", "Egress"):
            raise PolicyError(f"{where}.policyTypes: {kind!r}")
    return list(types)


def _rule_lines(
    where: str, rule: Any, direction: str, namespace: str, pod: PolicyPod, pods: list[PolicyPod]
) -> list[str]:
    # An egress rule returns: the packet still meets the destination's ingress rules.
    peers_field, verdict = ("from", "accept") if direction == "Ingress" else ("to", "return")
    _refuse_unknown(where, rule, (peers_field, "ports"))
    if not rule.get(peers_field):  # missing or empty: every peer
        if direction == "Ingress":
            return _allow_lines("", _ports_on(f"{where}.ports", rule.get("ports"), pod), verdict)
        ports = rule.get("ports")
        numbered = _allow_lines("", _ports_on(f"{where}.ports", ports, None), verdict)
        # Named ports of any destination: those of the run's pods that declare them.
        names = [p for p in ports or [] if isinstance(p, dict) and isinstance(p.get("port"), str)]
        named = [
            line
            for peer in pods
            if names
            for line in _allow_lines(
                f"ip daddr {peer.address}", _ports_on(f"{where}.ports", names, peer), verdict
            )
        ]
        return numbered + named
    peers = _peer_pods(f"{where}.{peers_field}", rule[peers_field], namespace, pods)
    address_field = "saddr" if direction == "Ingress" else "daddr"
    blocks = _ip_blocks(f"{where}.{peers_field}", rule[peers_field], address_field)
    # An address range's ports: named ones are the destination pod's (ingress), else numbers.
    destination = pod if direction == "Ingress" else None
    block_ports = _ports_on(f"{where}.ports", rule.get("ports"), destination) if blocks else None
    lines = [line for match in blocks for line in _allow_lines(match, block_ports, verdict)]
    if not peers:
        return lines
    if direction == "Ingress":
        match = f"ip saddr {_addresses(peers)}"
        ports = _ports_on(f"{where}.ports", rule.get("ports"), pod)
        return lines + _allow_lines(match, ports, verdict)
    return lines + [
        line
        for peer in peers
        for line in _allow_lines(
            f"ip daddr {peer.address}",
            _ports_on(f"{where}.ports", rule.get("ports"), peer),
            verdict,
        )
    ]


def isolation(policies: list[Obj], pods: list[PolicyPod], direction: str) -> list[_Isolation]:
    """Each pod that some policy isolates in ``direction`` ("Ingress"/"Egress"), with the
    nft rules of what those policies allow it."""
    field = direction.lower()
    result: dict[str, _Isolation] = {}
    for policy in policies:
        ref = ObjectRef.of(policy)
        where = f"NetworkPolicy {ref.namespace}/{ref.name}"
        spec = policy.get("spec") or {}
        _refuse_unknown(f"{where}.spec", spec, ("podSelector", "policyTypes", "ingress", "egress"))
        if direction not in _policy_types(f"{where}.spec", spec):
            continue
        for pod in pods:
            if pod.namespace != ref.namespace or not _selects(
                f"{where}.spec.podSelector", spec.get("podSelector", {}), pod.labels
            ):
                continue
            entry = result.setdefault(pod.key, _Isolation(pod, []))
            for index, rule in enumerate(spec.get(field) or []):
                entry.lines.extend(
                    _rule_lines(
                        f"{where}.spec.{field}[{index}]", rule, direction, ref.namespace, pod, pods
                    )
                )
    return [result[key] for key in sorted(result)]


_REFUSE = ["meta l4proto tcp reject with tcp reset", "reject with icmpx admin-prohibited"]


def policy_ruleset(
    policies: list[Obj], pods: list[PolicyPod], *, table: str, subnet: str, host_address: str
) -> str:
    """The ``table inet <table>`` that enforces ``policies`` on ``pods`` (all on ``subnet``,
    whose ``host_address`` is the host's; it alone reaches the health ports)."""
    chains: list[str] = []
    dispatch: dict[str, list[str]] = {"ingress": [], "egress": []}
    for direction, name, address_field in (("Ingress", "in", "daddr"), ("Egress", "out", "saddr")):
        for index, entry in enumerate(isolation(policies, pods, direction)):
            chain = f"{name}_{index}"
            dispatch[direction.lower()].append(
                f"ip {address_field} {entry.pod.address} jump {chain}"
            )
            lines = list(entry.lines)
            if direction == "Ingress" and entry.pod.probe_ports:
                # The kubelet's probes: from the host only, to the agents' health ports.
                lines.insert(
                    0, f"ip saddr {host_address} tcp dport {_ports(entry.pod.probe_ports)} accept"
                )
            chains.append(
                _chain(chain, [f"# {direction.lower()} of pod {entry.pod.key}"], lines + _REFUSE)
            )
    established = "ct state established,related accept"
    from_pods, to_pods = f"ip saddr {subnet} jump egress", f"ip daddr {subnet} jump ingress"
    base = [
        _chain(
            "forward",
            ["type filter hook forward priority filter; policy accept;"],
            [established, from_pods, to_pods],
        ),
        _chain(
            "input",
            ["type filter hook input priority filter; policy accept;"],
            [established, from_pods],
        ),
        _chain(
            "output",
            ["type filter hook output priority filter; policy accept;"],
            [established, to_pods],
        ),
        _chain("ingress", [], dispatch["ingress"]),
        _chain("egress", [], dispatch["egress"]),
    ]
    body = "\n".join(base + chains)
    return f"table inet {table} {{\n{body}}}\n"


def _chain(name: str, head: list[str], rules: list[str]) -> str:
    lines = [f"  chain {name} {{", *(f"    {line}" for line in head + rules), "  }"]
    return "\n".join(lines) + "\n"
