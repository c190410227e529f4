"""The rest of the world, for the mail tests: a network namespace with DNS and a remote MTA.

The namespace is connected to the host by a veth pair on a private /30. Inside it run BIND
(authoritative for the test domains, so Postfix and rspamd resolve MX, SPF, DKIM and DMARC for
real) and the SMTP sink standing for remote servers and the smarthost. Clients can run inside it
too, so the mail stack sees a genuine remote address. Everything is removed on ``stop``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The internet's /30 comes from 10.100.0.0/16: outside 10.192.0.0/10, where `mailstack up` puts
# its pod bridge (the host's clients), which the test stack exempts from the per-client limits.
INTERNET_PREFIX = "10.100"
# Four more client addresses in the namespace (new clients for postscreen's tests: each address
# is screened once, then remembered): the /30 of 10.102 with the internet's last two octets,
# as free as the internet's /30 is (test_probes_under_load.py takes its addresses from 10.101).
CLIENTS_PREFIX = "10.102"


def client_network(internet_ip: str) -> ipaddress.IPv4Network:
    """The /30 of the namespace's further client addresses (``CLIENTS_PREFIX``)."""
    third, fourth = internet_ip.split(".")[2:]
    return ipaddress.IPv4Network(f"{CLIENTS_PREFIX}.{third}.{fourth}/30", strict=False)


def client_addresses(internet_ip: str) -> list[str]:
    """The namespace's further client addresses, for its main address."""
    return [str(address) for address in client_network(internet_ip)]


# Where the namespace's "masked" address comes from (add_masked_address): outside the
# internet's, the further clients' and test_probes_under_load.py's 10.101.
MASKED_PREFIX = "10.103"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def _free_subnet() -> ipaddress.IPv4Network:
    used = []
    for link in json.loads(_run("ip", "-j", "-4", "addr", "show").stdout or "[]"):
        for info in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for _ in range(1000):
        third, fourth = secrets.randbelow(256), secrets.randbelow(64) * 4
        candidate = ipaddress.IPv4Network(f"{INTERNET_PREFIX}.{third}.{fourth}/30")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError(f"no free /30 in {INTERNET_PREFIX}.0.0/16")


class Internet:
    def __init__(self, workdir: Path) -> None:
        self.tag = secrets.token_hex(3)
        self.netns = f"msnet-{self.tag}"
        self.veth = f"msn{self.tag}"
        self.subnet = _free_subnet()
        self.host_ip = str(self.subnet.network_address + 1)
        self.ip = str(self.subnet.network_address + 2)
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.sink_dir = workdir / "sink"

    def start(self) -> None:
        _run("ip", "netns", "add", self.netns)
        _run(
            "ip",
            "link",
            "add",
            self.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.netns,
        )
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth)
        _run("ip", "link", "set", self.veth, "up")
        _run("ip", "-n", self.netns, "addr", "add", f"{self.ip}/30", "dev", "eth0")
        _run("ip", "-n", self.netns, "link", "set", "eth0", "up")
        _run("ip", "-n", self.netns, "link", "set", "lo", "up")
        _run("ip", "-n", self.netns, "route", "add", "default", "via", self.host_ip)
        for address in client_addresses(self.ip):
            _run("ip", "-n", self.netns, "addr", "add", f"{address}/32", "dev", "eth0")
            # Removed with the veth on stop.
            _run("ip", "route", "add", f"{address}/32", "via", self.ip, "dev", self.veth)

    def add_masked_address(self) -> str:
        """A second address of the namespace, from ``MASKED_PREFIX``, routed from the host: the
        stack is told it is in the cluster's pod range, so a client using it looks like one
        behind SNAT (the tripwire's tests)."""
        for _ in range(20):
            address = f"{MASKED_PREFIX}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
            added = _run("ip", "route", "add", f"{address}/32", "via", self.ip, check=False)
            if added.returncode == 0:  # no other run routes it
                _run("ip", "-n", self.netns, "addr", "add", f"{address}/32", "dev", "eth0")
                return address
        raise RuntimeError(f"no free address in {MASKED_PREFIX}.0.0/16")

    def spawn(self, *argv: str, log: Path) -> subprocess.Popen[bytes]:
        handle = open(log, "ab")  # noqa: SIM115 (owned by the process)
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *argv], stdout=handle, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        return process

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_sink(
        self, port: int = 2525, tls: Path | None = None, login: str | None = None
    ) -> None:
        """The SMTP sink (``tests.mail.sink``); with STARTTLS from the certificate in ``tls``
        and a required ``login`` (USER:PASSWORD) when they are given."""
        self.sink_dir.mkdir(parents=True, exist_ok=True)
        options = [*(["--tls", str(tls)] if tls else []), *(["--login", login] if login else [])]
        self.spawn(
            sys.executable,
            "-m",
            "tests.mail.sink",
            self.ip,
            str(port),
            str(self.sink_dir),
            *options,
            log=self.workdir / "sink.log",
        )
        self._wait_port(port)

    def start_http(self, folder: Path, port: int) -> subprocess.Popen[bytes]:
        """A plain HTTP server of ``folder`` (say, signature files for freshclam)."""
        process = self.spawn(
            sys.executable,
            *("-m", "http.server", "--bind", self.ip, "--directory", str(folder), str(port)),
            log=self.workdir / "http.log",
        )
        self._wait_port(port)
        return process

    def start_dns(self, zones: dict[str, str]) -> None:
        """BIND authoritative for ``zones`` (name -> records in zone-file form), on port 53."""
        named = shutil.which("named") or "/usr/sbin/named"
        if not os.path.exists(named):
            raise RuntimeError("named is not installed (Debian package bind9)")
        conf_dir = self.workdir / "named"
        conf_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        os.chmod(conf_dir, 0o777)
        zone_conf = []
        for name, records in zones.items():
            path = conf_dir / f"{name}.zone"
            path.write_text(
                f"$TTL 300\n{name}. 300 IN SOA ns.{name}. hostmaster.{name}. 1 3600 600 86400 300\n"
                f"{name}. 300 IN NS ns.{name}.\nns.{name}. 300 IN A {self.ip}\n{records}"
            )
            os.chmod(path, 0o644)
            zone_conf.append(f'zone "{name}" {{ type primary; file "{path}"; }};')
        conf = conf_dir / "named.conf"
        conf.write_text(
            "options {\n"
            f'  directory "{conf_dir}";\n'
            f'  pid-file "{conf_dir}/named.pid";\n'
            f"  listen-on port 53 {{ {self.ip}; }};\n"
            "  listen-on-v6 { none; };\n"
            "  recursion no;\n"
            "  dnssec-validation no;\n"
            "};\n" + "\n".join(zone_conf) + "\n"
        )
        # As root: the pytest folders are private to root, and the namespace is the sandbox.
        self.spawn(named, "-g", "-c", str(conf), log=self.workdir / "named.log")
        self._wait_port(53)

    def _wait_port(self, port: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = self.run(
                sys.executable,
                "-c",
                f"import socket; socket.create_connection(('{self.ip}', {port}), 1)",
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"nothing listens on {self.ip}:{port} in {self.netns}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _run("ip", "netns", "delete", self.netns, check=False)
        _run("ip", "link", "delete", self.veth, check=False)
