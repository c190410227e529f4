"""The local kubelet: runs a render's pods on this host and keeps them to the latest render.

Owns ``LocalRuntime``: each pod's volumes (materialised by ``local.volumes``), its network
namespace (``local.network``), its /etc/hosts and resolv.conf (files of the run, bound over a
private layer on the host's /etc: never onto the host's files), the spec each container's init
mounts (``local.container``), restarts of containers that exit (``local.processes``), the wait
for the agents' readiness endpoints, the public ports published once the pods are ready, with
DNAT (or, for the ProxyProtocol exposure, behind HAProxy: ``local.haproxy``), and a new render
applied in place (its NetworkPolicies too, as nftables rules: ``local.network_policy``):
changed ConfigMaps/Secrets are swapped (the agents reload the daemons),
changed pod templates restart their pod. ``local.up`` drives it for ``mailstack up``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from mailstack.kubedoc import Obj
from mailstack.local.haproxy import LocalProxy, ProxyError, untrusted_domains
from mailstack.local.network import Network, NetworkError, choose_subnet, run_id_for
from mailstack.local.network_policy import PolicyError, PolicyPod, policy_ruleset
from mailstack.local.pods import (
    Forward,
    PodPlan,
    plan_pods,
    public_forwards,
    service_addresses,
    volume_root,
)
from mailstack.local.processes import (
    RunningContainer,
    in_parallel,
    launch,
    restart_due,
    stop_container,
)
from mailstack.local.security import SecurityError, setpriv_command
from mailstack.local.terminal import log
from mailstack.local.volumes import (
    fresh_empty_dir,
    host_gid,
    host_ids,
    prepare_claim,
    source_files,
    write_projected,
)

READY_TIMEOUT = 180.0


def host_etc() -> Path:
    """The host folder the pods see as /etc under their own layer (``local.container``):
    ``MAILSTACK_UP_HOST_ETC``, else /etc. The mail tests point it at a copy they can change."""
    return Path(os.environ.get("MAILSTACK_UP_HOST_ETC") or "/etc").resolve()


class RuntimeConfigError(Exception):
    """The render cannot run as it is: a pod refers to an object the render does not hold."""


def image_paths() -> list[str]:
    """Where the "image" lives on this host: the interpreter, the venv, this package."""
    package = Path(__file__).resolve().parents[1]
    return sorted(
        {
            str(Path(sys.prefix).resolve()),
            str(Path(sys.base_prefix).resolve()),
            str(Path(sys.executable).resolve().parent),
            str(package.parent),
        }
    )


class LocalRuntime:
    """The pods of one render, run on this host: started, supervised, updated, stopped.

    ``state`` is the ``--state`` folder (PVCs, pod folders, logs), ``listen`` the addresses
    the public ports are published on, ``port_offset`` added to each published port, and
    ``resolvers`` each MailDomain's DNS servers ("namespace/name" -> servers; default: the
    host's). ``stopping`` (set by a signal or ``stop``) ends restarts and readiness waits.
    """

    def __init__(
        self,
        state: Path,
        listen: list[str],
        port_offset: int,
        resolvers: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.state = state
        self.listen = listen
        # MailDomain name -> spec.resolvers: the DNS servers its pods use (default: the host's).
        self.resolvers = resolvers or {}
        self.port_offset = port_offset
        self.network = Network(run_id_for(state), choose_subnet(run_id_for(state)))
        self.pods: dict[str, PodPlan] = {}
        self.running: dict[str, list[RunningContainer]] = {}
        self.addresses: dict[str, str] = {}
        # (published port, pod address, container port) of the render ``start`` ran.
        self.forwards: list[tuple[int, str, int]] = []
        self.proxied: list[bool] = []  # per forward: behind HAProxy (ProxyProtocol)
        self.objects: list[Obj] = []
        self.logs = state / "logs"
        self.stopping = False
        self.proxy: LocalProxy | None = None  # HAProxy, for the ProxyProtocol exposure

    # --- volumes --------------------------------------------------------------------------

    def _volume_path(self, pod: PodPlan, name: str) -> Path:
        volume = pod.volumes[name]
        if volume.kind == "claim":
            return self.state / "volumes" / pod.namespace / volume.claim
        if volume.kind == "emptyDir":
            return volume_root(self.state, pod) / "empty" / name
        return volume_root(self.state, pod) / "volumes" / name

    def sync_volumes(self, pod: PodPlan) -> bool:
        """Write the pod's ConfigMap/Secret volumes; True when any content changed."""
        changed = False
        gid = host_gid(pod.fs_group)
        for volume in pod.volumes.values():
            if volume.kind in ("configMap", "secret"):
                if volume.source is None:
                    raise RuntimeConfigError(
                        f"{pod.key}: volume {volume.name} refers to a missing object"
                    )
                files = source_files(volume.source, volume.items)
                changed |= write_projected(
                    self._volume_path(pod, volume.name), files, volume.mode, gid
                )
        return changed

    def _prepare_pod_dirs(self, pod: PodPlan) -> None:
        for volume in pod.volumes.values():
            path = self._volume_path(pod, volume.name)
            if volume.kind == "emptyDir":
                fresh_empty_dir(path)
            elif volume.kind == "claim":
                prepare_claim(path, pod.fs_group)
        self.sync_volumes(pod)

    # --- containers -----------------------------------------------------------------------

    def _write_pod_files(self, pod: PodPlan) -> tuple[Path, Path]:
        root = volume_root(self.state, pod)
        root.mkdir(parents=True, exist_ok=True)
        hosts = root / "hosts"
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for names, address in service_addresses(
            self.objects, list(self.pods.values()), self.addresses
        ):
            lines.append(f"{address}\t{names}")
        hosts.write_text("\n".join(lines) + "\n")
        resolv = root / "resolv.conf"
        servers = self.resolvers.get(
            f"{pod.namespace}/{pod.labels.get('app.kubernetes.io/instance')}"
        )
        host_resolv = host_etc() / "resolv.conf"
        if servers:
            resolv.write_text("".join(f"nameserver {server}\n" for server in servers))
        else:
            resolv.write_text(host_resolv.read_text() if host_resolv.exists() else "")
        return hosts, resolv

    def _mount_source(self, pod: PodPlan, mount: dict[str, Any]) -> dict[str, Any]:
        source = self._volume_path(pod, mount["volume"])
        if mount.get("subPath"):
            # As the kubelet: the sub-folder is created on first use, with the volume's mode
            # (and its group, through the set-group-ID bit fsGroup gave the volume).
            volume_mode = source.stat().st_mode & 0o7777
            source = source / mount["subPath"]
            if not source.exists():
                source.mkdir()
                source.chmod(volume_mode)
        return {"source": str(source), "target": mount["target"], "readOnly": mount["readOnly"]}

    def _start_container(self, pod: PodPlan, running: RunningContainer) -> None:
        hosts, resolv = self._write_pod_files(pod)
        plan = running.plan
        try:
            privileges = setpriv_command(plan.security, host_ids())
        except SecurityError as err:
            raise RuntimeConfigError(f"{pod.key}/{plan.name}: {err}") from None
        spec = {
            # As the container runtime: the user, groups and capabilities of the securityContext.
            "command": [*privileges, *plan.command],
            "mounts": [self._mount_source(pod, m) for m in plan.mounts],
            "hosts": str(hosts),
            "resolv": str(resolv),
            "etc": str(host_etc()),
            "env": {
                **plan.env,
                "MAILSTACK_POD": pod.name,
                "MAILSTACK_NAMESPACE": pod.namespace,
            },
            "keep": image_paths(),
        }
        spec_file = volume_root(self.state, pod) / f"container-{plan.name}.json"
        spec_file.write_text(json.dumps(spec, indent=1))
        self.logs.mkdir(parents=True, exist_ok=True)
        launch(
            running,
            self.network.pods[pod.key].name,
            spec_file,
            self.logs / f"{pod.namespace}_{pod.name}_{plan.name}.log",
            f"{pod.name}/{plan.name}",
        )

    def start_pod(self, pod: PodPlan) -> None:
        """Fresh emptyDirs, current ConfigMaps/Secrets, then every container of the pod."""
        self._prepare_pod_dirs(pod)
        containers = [RunningContainer(plan) for plan in pod.containers]
        self.running[pod.key] = containers
        for running in containers:
            self._start_container(pod, running)

    def stop_pod(self, pod: PodPlan) -> None:
        """Stop the pod's containers together, within the pod's grace period."""
        in_parallel(
            [
                functools.partial(stop_container, running, pod.grace_seconds)
                for running in self.running.get(pod.key, [])
            ]
        )

    # --- lifecycle ------------------------------------------------------------------------

    def _isolate(self) -> None:
        """The render's NetworkPolicies as the run's nftables rules (``local.network_policy``)."""
        policies = [o for o in self.objects if o["kind"] == "NetworkPolicy"]
        pods = [PolicyPod.of(pod, self.addresses[key]) for key, pod in self.pods.items()]
        try:
            ruleset = policy_ruleset(
                policies,
                pods,
                table=self.network.policy_table,
                subnet=str(self.network.subnet),
                host_address=self.network.host_address,
            )
        except PolicyError as err:
            raise RuntimeConfigError(str(err)) from None
        self.network.isolate(ruleset)

    def start(self, objects: list[Obj]) -> None:
        """Network, policies and pods for a render; refuses clashing ports first. The ports
        are published by ``publish``."""
        self.objects = objects
        pods = plan_pods(objects)
        self.network.setup_bridge()
        for pod in pods:
            self.pods[pod.key] = pod
            self.addresses[pod.key] = self.network.add_pod(pod.key, pod.sysctls).address
        # Before any daemon listens: no moment in which every pod reaches every port.
        self._isolate()
        planned = public_forwards(objects, pods)
        untrusted = untrusted_domains(
            objects, [f.domain for f in planned if f.proxied], self.network.host_address
        )
        if untrusted:
            raise RuntimeConfigError(
                f"{', '.join(untrusted)}: exposure ProxyProtocol, but its trustedCIDRs do not "
                f"hold {self.network.host_address}, where mailstack up's HAProxy connects from: "
                "add the pod bridge's range, 10.192.0.0/10"
            )
        self.network.open_egress()
        forwards = [(f.port + self.port_offset, self.addresses[f.pod], f.target) for f in planned]
        ports = [port for port, _, _ in forwards]
        if len(ports) != len(set(ports)):
            raise NetworkError(
                "published ports clash (a --port-offset that puts one MailDomain's ports on "
                "another's?); choose another --port-offset"
            )
        # Before any daemon starts: a clash found only at publishing would start and stop them all.
        self.network.check_unpublished(ports)
        self.network.check_unused(self.listen, ports)
        for pod in pods:
            self.start_pod(pod)
        self.forwards = forwards
        self.proxied = [f.proxied for f in planned]

    def publish(self) -> None:
        """Publish the pods' public ports (once they are ready: ``wait_ready``): with DNAT, or
        behind HAProxy for the ProxyProtocol exposure."""
        pairs = list(zip(self.forwards, self.proxied, strict=True))
        self.network.publish(self.listen, [f for f, proxied in pairs if not proxied])
        self._start_proxy([f for f, proxied in pairs if proxied])

    def _start_proxy(self, forwards: list[tuple[int, str, int]]) -> None:
        """HAProxy in front of the pods of the ProxyProtocol exposure (``local.haproxy``)."""
        if not forwards:
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        self.proxy = LocalProxy(self.state / "haproxy.cfg", self.logs / "haproxy.log")
        try:
            self.proxy.start(self.listen, forwards, self.network.host_address)
        except ProxyError as err:
            raise RuntimeConfigError(str(err)) from None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> list[str]:
        """Poll the agents' ``/readyz`` (supervising meanwhile); the containers not ready."""
        deadline = time.monotonic() + timeout
        pending = {
            f"{key}/{c.plan.name}": f"http://{self.addresses[key]}:{c.plan.health_port}/readyz"
            for key, containers in self.running.items()
            for c in containers
            if c.plan.health_port
        }
        while pending and time.monotonic() < deadline and not self.stopping:
            for name, url in list(pending.items()):
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            del pending[name]
                except OSError:
                    pass
            self.supervise()
            if pending:
                time.sleep(0.2)
        return sorted(pending)

    def supervise(self) -> None:
        """Restart containers that exited (restartPolicy Always, with back-off), and HAProxy."""
        now = time.monotonic()
        for key, containers in self.running.items():
            for running in containers:
                if not self.stopping and restart_due(running, f"{key}/{running.plan.name}", now):
                    self._start_container(self.pods[key], running)
        if self.proxy is not None and not self.stopping:
            self.proxy.supervise(now)

    def published(self) -> bool:
        """Every published port has its forwarder: False while HAProxy is down."""
        return self.proxy is None or self.proxy.running

    def apply_render(self, objects: list[Obj]) -> None:
        """Bring running pods to a new render: swap volumes, restart changed templates."""
        self.objects = objects
        for pod in plan_pods(objects):
            current = self.pods.get(pod.key)
            if current is None:
                log(f"{pod.key}: new pods need a restart of mailstack up")
                continue
            self.pods[pod.key] = pod
            if current.template_digest != pod.template_digest:
                log(f"{pod.key}: pod template changed, restarting the pod")
                self.stop_pod(current)
                self.start_pod(pod)
            elif self.sync_volumes(pod):
                log(f"{pod.key}: configuration updated in place")
        try:
            self._isolate()
        except (RuntimeConfigError, NetworkError) as err:
            log(f"network policies not updated, the previous rules stay: {err}")

    def stop(self) -> None:
        """Stop every pod (all at once) and remove every namespace, link and rule."""
        self.stopping = True
        if self.proxy is not None:
            self.proxy.stop()
        in_parallel([functools.partial(self.stop_pod, pod) for pod in self.pods.values()])
        self.network.teardown()

    def endpoints(self, forwards: list[Forward]) -> dict[str, Any]:
        """What ``endpoints.json`` holds: addresses, each MailDomain's published ports."""
        domains: dict[str, dict[str, int]] = {}
        for forward in forwards:
            domains.setdefault(forward.domain, {})[forward.name] = forward.port + self.port_offset
        first = sorted(domains)[0] if domains else ""
        return {
            "listen": self.listen,
            "portOffset": self.port_offset,
            "hostAddress": self.network.host_address,
            "pods": {key: self.addresses[key] for key in self.pods},
            "ports": domains.get(first, {}),
            "domains": domains,
        }
