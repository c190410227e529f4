"""The upstream proxy of ``mailstack up`` for MailDomains with the ProxyProtocol exposure.

Owns the HAProxy in front of such a MailDomain's pods: its configuration (pure: one TCP proxy
per published port, sending PROXY protocol v2 to the pod's port) and its process, started by
``local.runtime`` on the host in place of the DNAT rules, and stopped by its PID. It stands for
the proxy a cluster puts in front (ingress-nginx, Traefik, HAProxy, a cloud's load balancer):
the client's address reaches Postfix and Dovecot in the PROXY header, while the connection
itself comes from the host's address on the pod bridge, which the MailDomain's ``trustedCIDRs``
must therefore hold (``untrusted_domains``). Like a pod's containers, HAProxy is restarted with
back-off when it exits (``supervise``): without it every PROXY port refuses connections.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from mailstack.kubedoc import Obj, meta_of
from mailstack.local.network import ports_in_use
from mailstack.local.processes import restart_due
from mailstack.local.terminal import log
from mailstack.render.objects import DOMAIN_ANNOTATION

# How long a connection may stay idle: IMAP IDLE sessions last up to 30 minutes between
# commands (RFC 9051 asks servers for at least 30); HAProxy would cut them at its default.
IDLE_TIMEOUT = "31m"
START_TIMEOUT = 10.0
# The host's loopback clients, as HAProxy's ``src`` matches them.
LOOPBACK = "127.0.0.0/8 ::1"


class ProxyError(Exception):
    """HAProxy is missing, refused its configuration or did not start; the message says why."""


def _address(address: str, port: int) -> str:
    """``address:port`` as HAProxy reads it (an IPv6 address with the ``ipv6@`` prefix)."""
    host = address.strip("[]")
    if ipaddress.ip_address(host).version == 6:
        return f"ipv6@{host}:{port}"
    return f"{host}:{port}"


def haproxy_config(
    listen: list[str], forwards: Iterable[tuple[int, str, int]], host_address: str
) -> str:
    """The configuration of one HAProxy: for each (published port, pod address, pod port), a TCP
    proxy bound on every ``listen`` address that sends PROXY v2 to the pod's port.

    A client on the host's loopback is announced as ``host_address`` (the host's address on the
    pod bridge), as DNAT shows it: the PROXY listeners refuse a loopback client (render/postfix.py,
    UNANNOUNCEABLE_CLIENTS), which the pod would take for itself."""
    lines = [
        "# mailstack up: the upstream proxy of the MailDomains with exposure ProxyProtocol.",
        "global",
        "  log stderr format raw local0 info",
        "  maxconn 4096",
        "defaults",
        "  mode tcp",
        "  log global",
        "  option tcplog",
        "  timeout connect 5s",
        f"  timeout client {IDLE_TIMEOUT}",
        f"  timeout server {IDLE_TIMEOUT}",
    ]
    for port, address, target in sorted(forwards):
        lines += [f"listen port-{port}"]
        lines += [f"  bind {_address(host, port)}" for host in listen]
        lines += [f"  tcp-request connection set-src ipv4({host_address}) if {{ src {LOOPBACK} }}"]
        lines += [f"  server pod {_address(address, target)} send-proxy-v2"]
    return "\n".join(lines) + "\n"


def untrusted_domains(objects: list[Obj], domains: Iterable[str], source: str) -> list[str]:
    """Those of ``domains`` whose NetworkPolicies admit no range (``ipBlock``) holding
    ``source``, the address HAProxy connects to the pods from: their PROXY ports would refuse it."""
    ranges: dict[str, list[str]] = {}
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        domain = meta_of(policy).get("annotations", {}).get(DOMAIN_ANNOTATION, "")
        for rule in policy["spec"].get("ingress") or []:
            for peer in rule.get("from") or []:
                if "ipBlock" in peer:
                    ranges.setdefault(domain, []).append(peer["ipBlock"]["cidr"])
    address = ipaddress.ip_address(source)
    return sorted(
        domain
        for domain in set(domains)
        if not any(address in ipaddress.ip_network(r) for r in ranges.get(domain, []))
    )


class LocalProxy:
    """The HAProxy process of one run (``start``, then ``stop``)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.binary = ""
        self.process: subprocess.Popen[bytes] | None = None
        # The restart bookkeeping of ``processes.restart_due`` (as a container's).
        self.restarts = 0
        self.next_start = 0.0
        self.started = 0.0

    @property
    def running(self) -> bool:
        """HAProxy's process is alive (a restart may be pending when it is not)."""
        return self.process is not None and self.process.poll() is None

    def _spawn(self) -> subprocess.Popen[bytes]:
        handle = open(self.log, "ab")  # noqa: SIM115 (owned by the process)
        self.process = subprocess.Popen(
            [self.binary, "-db", "-f", str(self.config)], stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()
        self.started = time.monotonic()
        return self.process

    def supervise(self, now: float) -> None:
        """Start HAProxy again when it exited, with the containers' back-off, and say so."""
        if self.process is None or not restart_due(self, "haproxy", now):
            return
        self._spawn()
        log(f"haproxy started again (restart {self.restarts}); see {self.log}")

    def start(
        self, listen: list[str], forwards: list[tuple[int, str, int]], host_address: str
    ) -> None:
        """Write the configuration, check it with ``haproxy -c``, start HAProxy in the
        foreground and wait until it accepts on the first published port."""
        self.binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(self.binary).exists():
            raise ProxyError("haproxy is not installed (Debian package haproxy)")
        self.config.write_text(haproxy_config(listen, forwards, host_address))
        check = subprocess.run(
            [self.binary, "-c", "-q", "-f", str(self.config)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise ProxyError(f"haproxy refused {self.config}: {check.stderr.strip()}")
        process = self._spawn()
        # Bound when a bind of this host fails on every published port (no test connection:
        # it would reach a daemon).
        ports = [port for port, _, _ in forwards]
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ProxyError(f"haproxy exited ({process.returncode}); see {self.log}")
            if len(ports_in_use(listen, ports)) == len(listen) * len(ports):
                return
            time.sleep(0.05)
        raise ProxyError(f"haproxy did not bind its ports within {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        """Stop HAProxy (SIGTERM to its PID), at most 5 s, then kill it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
