"""Pod networking for the local runtime: a bridge, a network namespace per pod, DNAT for the
public ports, and the NetworkPolicies' rules (made by ``local.network_policy``).

Pods get addresses on a private /24 behind a bridge owned by this run; the host is ``.1``. The
public ports are published with nftables DNAT (never a userspace forwarder), so a client's real
address reaches Postfix and Dovecot: relay and authentication checks see who is really talking.
Clients on the host's loopback are masqueraded to the bridge address (the host is then the
client, which is the truth); on the IPv6 loopback, which Linux cannot DNAT, the same is done in
user space (``local.loopback6``). The ports are published only once the pods are ready, as a
Service sends nothing to a pod before it is ready: until then a client is refused (no
listener) instead of meeting half-started daemons. Everything is named after a run id and
removed on teardown.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mailstack.local.loopback6 import LoopbackRelay

IPV6_LOOPBACK = "::1"


class NetworkError(Exception):
    """A network step failed or was refused (ports taken, no free subnet, an ``ip`` or ``nft``
    command failed); the message says which and what to do."""


def _run(
    *argv: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, input=stdin, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def run_id_for(state: Path) -> str:
    """The run's id: 6 hex digits of the state folder's path. It names the bridge, namespaces,
    veths and nftables table, so the next run on the same state finds what a crash left."""
    return hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:6]


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = _run("ip", "-j", "-4", "addr", "show", check=False).stdout or "[]"
    networks = []
    for link in json.loads(out):
        for info in link.get("addr_info", []):
            networks.append(
                ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
            )
    return networks


def choose_subnet(run_id: str) -> ipaddress.IPv4Network:
    """A /24 of 10.192.0.0/10 that no address of this host overlaps, searched from a place the
    run id gives (the same state tends to get the same subnet)."""
    used = _used_networks()
    start = int(run_id, 16)
    for attempt in range(256):
        index = (start + attempt) % (64 * 256)
        candidate = ipaddress.IPv4Network(f"10.{192 + index // 256}.{index % 256}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise NetworkError("no free 10.192.0.0/10 subnet for the pod bridge")


def listen_address(value: str) -> str:
    """A ``--listen`` value as the runtime uses it: an IPv4 address (``0.0.0.0``: all of
    them) or the IPv6 loopback, with or without brackets (``[::1]``); ``ValueError`` otherwise.
    Other IPv6 addresses would need IPv6 on the pod bridge: not supported yet."""
    text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    address = ipaddress.ip_address(text)  # ValueError for what is no address
    if address.version == 6 and not address.is_loopback:
        raise ValueError(f"{value}: of IPv6 addresses only the loopback [::1] is supported")
    return str(address)


def ports_in_use(listen: list[str], ports: list[int]) -> list[str]:
    """``address:port`` of each pair that a socket on this host holds (bind fails)."""
    busy = []
    for address in listen:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        for port in ports:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                # Connections of an earlier run in TIME_WAIT do not count as a listener.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((address, port))
                except OSError:
                    busy.append(
                        f"[{address}]:{port}" if family == socket.AF_INET6 else f"{address}:{port}"
                    )
    return busy


def _ports_of_other_tables(own: str) -> set[int]:
    """Ports DNATed by the nftables tables of other ``mailstack up`` runs."""
    listing = _run("nft", "list", "tables", check=False).stdout
    ports: set[int] = set()
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith("mailstack_") and parts[2] != own:
            rules = _run("nft", "list", "table", parts[1], parts[2], check=False).stdout
            ports |= {int(p) for p in re.findall(r"tcp dport (\d+) dnat", rules)}
    return ports


@dataclass
class PodNetwork:
    """A pod's network: its namespace, its address on the bridge, the host end of its veth."""

    name: str  # netns name
    address: str
    veth: str


@dataclass
class Network:
    """The network of one run: the bridge, a namespace per pod, the nftables table of the
    published ports, and the ip_forward setting to restore on teardown."""

    run_id: str
    subnet: ipaddress.IPv4Network
    bridge: str = ""
    pods: dict[str, PodNetwork] = field(default_factory=dict)
    table: str = ""
    isolated: bool = False  # the policy table (``policy_table``) is in place
    forwarding_was: str | None = None
    relay: LoopbackRelay = field(default_factory=LoopbackRelay)  # the [::1] ports

    @property
    def policy_table(self) -> str:
        """The ``inet`` table of the NetworkPolicies' rules (the DNAT table is ``ip``)."""
        return f"mailstack_{self.run_id}"

    @property
    def host_address(self) -> str:
        """The host's address on the bridge (the subnet's ``.1``): the pods' default route."""
        return str(self.subnet.network_address + 1)

    def setup_bridge(self) -> None:
        """Create the run's bridge with the host address, after removing a crashed run's."""
        self.bridge = f"msb{self.run_id}"
        self.teardown_leftovers()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run(
            "ip", "addr", "add", f"{self.host_address}/{self.subnet.prefixlen}", "dev", self.bridge
        )
        _run("ip", "link", "set", self.bridge, "up")
        # Loopback clients are DNATed to the pods and leave through the bridge before SNAT.
        _run("sysctl", "-q", "-w", f"net.ipv4.conf.{self.bridge}.route_localnet=1")

    def add_pod(self, pod: str, sysctls: dict[str, str] | None = None) -> PodNetwork:
        """A network namespace for the pod, on the bridge through a veth, with the next address
        and the pod's (namespaced) ``sysctls``."""
        index = len(self.pods)
        netns = f"ms{self.run_id}-{index}"
        veth = f"msv{self.run_id}{index}"
        address = str(self.subnet.network_address + 2 + index)
        _run("ip", "netns", "add", netns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _run("ip", "link", "set", veth, "master", self.bridge, "up")
        _run("ip", "-n", netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _run("ip", "-n", netns, "link", "set", "eth0", "up")
        _run("ip", "-n", netns, "link", "set", "lo", "up")
        _run("ip", "-n", netns, "route", "add", "default", "via", self.host_address)
        for name, value in (sysctls or {}).items():
            _run("ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{name}={value}")
        self.pods[pod] = PodNetwork(netns, address, veth)
        return self.pods[pod]

    def check_unpublished(self, ports: list[int]) -> None:
        """Refuse ports that another ``mailstack up`` on this host publishes already: checked
        before any pod starts, and again when publishing."""
        clash = sorted(set(ports) & _ports_of_other_tables(f"mailstack_{self.run_id}"))
        if clash:
            raise NetworkError(
                f"ports {', '.join(map(str, clash))} are already published by another mailstack up"
                " on this host; choose another --port-offset"
            )

    def check_unused(self, listen: list[str], ports: list[int]) -> None:
        """Refuse ports that a program on this host listens on: the DNAT rules would take its
        connections without a word. Checked before any pod starts."""
        busy = ports_in_use(listen, ports)
        if busy:
            raise NetworkError(
                f"{', '.join(busy)} already in use by another program on this host; choose"
                " another --port-offset (or --listen)"
            )

    def _nat_ruleset(self, dnat: list[str]) -> str:
        rules = "".join(f"    {rule}\n" for rule in dnat)
        return f"""
table ip {self.table} {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
{rules}  }}
  chain output {{
    type nat hook output priority -100; policy accept;
{rules}  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 127.0.0.0/8 oifname "{self.bridge}" masquerade
    ip saddr {self.subnet} oifname != "{self.bridge}" masquerade
  }}
}}
"""

    def open_egress(self) -> None:
        """The pods' way out (masquerade, forwarding), before any pod starts; no port is
        published yet (``publish``)."""
        self.table = f"mailstack_{self.run_id}"
        _run("nft", "-f", "-", stdin=self._nat_ruleset([]))
        self.forwarding_was = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        # Forwarding carries DNATed clients to the pods and the pods' outbound mail out.
        _run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")

    def publish(self, listen: list[str], forwards: list[tuple[int, str, int]]) -> None:
        """DNAT ``listen:port`` to ``address:target`` for each (port, address, target), in one
        transaction with the pods' egress (``open_egress`` first); ``[::1]`` is relayed."""
        self.check_unpublished([port for port, _, _ in forwards])
        ipv4 = [a for a in listen if a != IPV6_LOOPBACK]
        if "0.0.0.0" in ipv4:
            match = "fib daddr type local"
        else:
            match = "ip daddr {{ {} }}".format(", ".join(ipv4))
        dnat = [
            f"{match} tcp dport {port} dnat to {address}:{target}"
            for port, address, target in forwards
            if ipv4
        ]
        table = f"ip {self.table}"
        _run(
            "nft",
            "-f",
            "-",
            stdin=f"table {table} {{}}\ndelete table {table}\n" + self._nat_ruleset(dnat),
        )
        if IPV6_LOOPBACK in listen:
            try:
                self.relay.start(forwards)
            except OSError as err:
                raise NetworkError(f"[::1]: {err}; choose another --port-offset") from None

    def isolate(self, ruleset: str) -> None:
        """Apply the NetworkPolicies' ``ruleset`` (a ``table inet`` named ``policy_table``),
        replacing the run's earlier one in one transaction: no moment without rules."""
        table = f"inet {self.policy_table}"
        _run("nft", "-f", "-", stdin=f"table {table} {{}}\ndelete table {table}\n{ruleset}")
        self.isolated = True

    def teardown_leftovers(self) -> None:
        """Remove what a previous run with the same id left behind (after a crash)."""
        _run("nft", "delete", "table", "ip", f"mailstack_{self.run_id}", check=False)
        _run("nft", "delete", "table", "inet", self.policy_table, check=False)
        for netns in _run("ip", "netns", "list", check=False).stdout.split("\n"):
            name = netns.split(" ")[0]
            if name.startswith(f"ms{self.run_id}-"):
                _run("ip", "netns", "delete", name, check=False)
        _run("ip", "link", "delete", f"msb{self.run_id}", check=False)

    def teardown(self) -> None:
        """Remove this run's tables, namespaces and bridge; restore ip_forward."""
        self.relay.stop()
        if self.table:
            _run("nft", "delete", "table", "ip", self.table, check=False)
        if self.isolated:
            _run("nft", "delete", "table", "inet", self.policy_table, check=False)
        for pod in self.pods.values():
            _run("ip", "netns", "delete", pod.name, check=False)
        if self.bridge:
            _run("ip", "link", "delete", self.bridge, check=False)
        if self.forwarding_was is not None:
            _run("sysctl", "-q", "-w", f"net.ipv4.ip_forward={self.forwarding_was}", check=False)
