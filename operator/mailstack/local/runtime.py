"""``mailstack up``: render exactly as for the cluster, then run the rendered pods on this host.

The runtime is a small kubelet: it materialises each pod's volumes, gives each pod a network
namespace and each container mount and PID namespaces (``local.container``), restarts containers
that exit, waits for the agents' readiness endpoints, publishes the public ports with DNAT, and on
SIGHUP or a change of the input files re-renders: changed ConfigMaps/Secrets are swapped in place
(the agents reload the daemons), changed pod templates restart their pod. SIGTERM/Ctrl-C stop
everything and remove every namespace, link and rule it created. Mail, queues and keys stay in
``--state`` for the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from mailstack.api.documents import yaml_files
from mailstack.local.network import Network, NetworkError, choose_subnet, run_id_for
from mailstack.local.pods import (
    ContainerPlan,
    Forward,
    PodPlan,
    plan_pods,
    public_forwards,
    service_addresses,
    volume_root,
)
from mailstack.local.volumes import (
    fresh_empty_dir,
    host_gid,
    prepare_claim,
    source_files,
    write_projected,
)
from mailstack.pipeline import prepare, render_all, save_state
from mailstack.statedir import StateDir

READY_TIMEOUT = 180.0
# Binaries the runtime and the daemons need, with the Debian package that ships each.
REQUIRED = {
    "ip": "iproute2",
    "nft": "nftables",
    "unshare": "util-linux",
    "mount": "mount",
    "postfix": "postfix",
    "dovecot": "dovecot-core",
    "doveadm": "dovecot-core",
    "rspamd": "rspamd",
}
REQUIRED_FILES = {
    "/usr/lib/dovecot/imap": "dovecot-imapd",
    "/usr/lib/dovecot/pop3": "dovecot-pop3d",
    "/usr/lib/dovecot/lmtp": "dovecot-lmtpd",
    "/usr/lib/dovecot/managesieve": "dovecot-managesieved",
    "/usr/lib/dovecot/modules/lib90_sieve_plugin.so": "dovecot-sieve",
}


def missing_packages() -> list[str]:
    missing = [
        pkg
        for binary, pkg in REQUIRED.items()
        if not shutil.which(binary) and not os.path.exists(f"/usr/sbin/{binary}")
    ]
    missing += [pkg for path, pkg in REQUIRED_FILES.items() if not os.path.exists(path)]
    return sorted(set(missing))


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


def log(message: str) -> None:
    print(f"mailstack up: {message}", file=sys.stderr, flush=True)


@dataclass
class RunningContainer:
    plan: ContainerPlan
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: float = 0.0


class LocalRuntime:
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
        self.objects: list[dict[str, Any]] = []
        self.logs = state / "logs"
        self.stopping = False

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
                    raise NetworkError(
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
        host_resolv = Path("/etc/resolv.conf")
        if servers:
            resolv.write_text("".join(f"nameserver {server}\n" for server in servers))
        else:
            resolv.write_text(host_resolv.read_text() if host_resolv.exists() else "")
        return hosts, resolv

    def _mount_source(self, pod: PodPlan, mount: dict[str, Any]) -> dict[str, Any]:
        source = self._volume_path(pod, mount["volume"])
        if mount.get("subPath"):
            # As the kubelet: the sub-folder is created on first use.
            source = source / mount["subPath"]
            source.mkdir(exist_ok=True)
        return {"source": str(source), "target": mount["target"], "readOnly": mount["readOnly"]}

    def _start_container(self, pod: PodPlan, running: RunningContainer) -> None:
        hosts, resolv = self._write_pod_files(pod)
        plan = running.plan
        spec = {
            "command": plan.command,
            "mounts": [self._mount_source(pod, m) for m in plan.mounts],
            "hosts": str(hosts),
            "resolv": str(resolv),
            "env": {
                **plan.env,
                "MAILSTACK_POD": pod.name,
                "MAILSTACK_NAMESPACE": pod.namespace,
            },
            "keep": image_paths(),
        }
        spec_file = volume_root(self.state, pod) / f"container-{plan.name}.json"
        spec_file.write_text(json.dumps(spec, indent=1))
        netns = self.network.pods[pod.key].name
        self.logs.mkdir(parents=True, exist_ok=True)
        log_file = self.logs / f"{pod.namespace}_{pod.name}_{plan.name}.log"
        argv = [
            "ip",
            "netns",
            "exec",
            netns,
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--propagation",
            "private",
            sys.executable,
            "-m",
            "mailstack.local.container",
            str(spec_file),
        ]
        if _quiet():
            # Nothing to echo: the container writes its log file itself, with no copy through
            # this process (a few lines per message add up at hundreds of messages a second).
            with open(log_file, "ab") as log:
                process = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
        else:
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            threading.Thread(
                target=_pump,
                args=(process.stdout, log_file, f"{pod.name}/{plan.name}"),
                daemon=True,
            ).start()
        running.process = process
        running.started = time.monotonic()

    def _init_pid(self, process: subprocess.Popen[bytes]) -> int | None:
        try:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def _stop_container(self, running: RunningContainer, grace: float) -> None:
        process = running.process
        if process is None or process.poll() is not None:
            return
        init = self._init_pid(process)
        if init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            if init is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(init, signal.SIGKILL)  # PID 1 of the namespace: takes all with it
            process.kill()
            process.wait()

    def start_pod(self, pod: PodPlan) -> None:
        self._prepare_pod_dirs(pod)
        containers = [RunningContainer(plan) for plan in pod.containers]
        self.running[pod.key] = containers
        for running in containers:
            self._start_container(pod, running)

    def stop_pod(self, pod: PodPlan) -> None:
        threads = [
            threading.Thread(target=self._stop_container, args=(running, pod.grace_seconds))
            for running in self.running.get(pod.key, [])
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        pods = plan_pods(objects)
        self.network.setup_bridge()
        for pod in pods:
            self.pods[pod.key] = pod
            self.addresses[pod.key] = self.network.add_pod(pod.key).address
        forwards = [
            (f.port + self.port_offset, self.addresses[f.pod], f.target)
            for f in public_forwards(objects, pods)
        ]
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
        self.network.publish(self.listen, forwards)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> list[str]:
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
        """Restart containers that exited (restartPolicy Always, with back-off)."""
        now = time.monotonic()
        for key, containers in self.running.items():
            pod = self.pods[key]
            for running in containers:
                if self.stopping or running.process is None or running.process.poll() is None:
                    continue
                if running.next_start == 0.0:
                    if now - running.started > 600:
                        running.restarts = 0  # as the kubelet: ten good minutes reset the back-off
                    delay = min(2**running.restarts, 30)
                    running.next_start = now + delay
                    log(
                        f"{key}/{running.plan.name} exited with {running.process.returncode}; "
                        f"restarting in {delay} s"
                    )
                elif now >= running.next_start:
                    running.restarts += 1
                    running.next_start = 0.0
                    self._start_container(pod, running)

    def apply_render(self, objects: list[dict[str, Any]]) -> None:
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

    def stop(self) -> None:
        self.stopping = True
        threads = [
            threading.Thread(target=self.stop_pod, args=(pod,)) for pod in self.pods.values()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.network.teardown()

    def endpoints(self, forwards: list[Forward]) -> dict[str, Any]:
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


def _quiet() -> bool:
    """MAILSTACK_UP_QUIET=1: container logs go to their files only, not to the terminal."""
    return os.environ.get("MAILSTACK_UP_QUIET") == "1"


def _pump(stream: IO[bytes] | None, log_file: Path, prefix: str) -> None:
    """Copy a container's output to its log file and to the terminal, each line prefixed."""
    if stream is None:
        return
    with open(log_file, "ab") as handle:
        for line in stream:
            handle.write(line)
            handle.flush()
            sys.stdout.write(f"[{prefix}] {line.decode(errors='replace')}")
            sys.stdout.flush()


def _inputs_digest(files: list[str]) -> str:
    digest = hashlib.sha256()
    for path in yaml_files(files):
        try:
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
        except OSError:
            digest.update(str(path).encode() + b"\0<missing>")
    return digest.hexdigest()


def _render(
    files: list[str], state: StateDir, resolvers: dict[str, tuple[str, ...]] | None = None
) -> list[dict[str, Any]] | None:
    prepared = prepare(files, state)
    if prepared.problems:
        for problem in prepared.problems:
            print(f"error: {problem}", file=sys.stderr)
        return None
    if not prepared.services:
        print("error: no MailDomain found in the given files", file=sys.stderr)
        return None
    objects = render_all(prepared)
    save_state(state, prepared, objects)
    if resolvers is not None:
        for service, _ in prepared.services:
            key = f"{service.domain.namespace}/{service.domain.name}"
            resolvers[key] = service.domain.resolvers
    return objects


def run_up(files: list[str], state_dir: str, listen: list[str], port_offset: int) -> int:
    if os.geteuid() != 0:
        print(
            "error: mailstack up must run as root (network namespaces, mounts, ports < 1024)",
            file=sys.stderr,
        )
        return 1
    missing = missing_packages()
    if missing:
        print(
            "error: missing Debian packages: "
            + " ".join(missing)
            + f" (apt-get install {' '.join(missing)})",
            file=sys.stderr,
        )
        return 1
    state_path = Path(state_dir).resolve()
    state_path.mkdir(parents=True, exist_ok=True)
    os.chmod(state_path, 0o700)
    lock = open(state_path / ".lock", "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(
            f"error: another mailstack up is running with the state {state_path}", file=sys.stderr
        )
        return 1
    state = StateDir(state_path)
    resolvers: dict[str, tuple[str, ...]] = {}
    objects = _render(files, state, resolvers)
    if objects is None:
        return 2
    runtime = LocalRuntime(state_path, listen, port_offset, resolvers)
    reload_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            reload_requested.set()
        else:
            runtime.stopping = True

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        runtime.start(objects)
        forwards = public_forwards(objects, list(runtime.pods.values()))
        not_ready = runtime.wait_ready()
        endpoints = runtime.endpoints(forwards)
        (state_path / "endpoints.json").write_text(json.dumps(endpoints, indent=1, sort_keys=True))
        if runtime.stopping:
            return 0
        if not_ready:
            log("not ready after {:.0f} s: {}".format(READY_TIMEOUT, ", ".join(not_ready)))
        _print_endpoints(endpoints, state_path)
        (state_path / "ready").write_text("ready\n" if not not_ready else "degraded\n")
        digest = _inputs_digest(files)
        while not runtime.stopping:
            runtime.supervise()
            reload_requested.wait(timeout=1.0)
            current = _inputs_digest(files)
            if reload_requested.is_set() or current != digest:
                reload_requested.clear()
                digest = current
                log("re-rendering")
                new_objects = _render(files, state, resolvers)
                if new_objects is not None:
                    runtime.apply_render(new_objects)
                    (state_path / "rendered").write_text(str(time.time()) + "\n")
        return 0
    except NetworkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        (state_path / "ready").unlink(missing_ok=True)
        runtime.stop()
        log("stopped")


def _print_endpoints(endpoints: dict[str, Any], state: Path) -> None:
    listen = endpoints["listen"][0]
    describe = {
        "smtp": "SMTP (inbound, STARTTLS)",
        "submission": "submission (STARTTLS + AUTH)",
        "submissions": "submissions (implicit TLS + AUTH)",
        "imap": "IMAP (STARTTLS)",
        "imaps": "IMAPS",
        "pop3": "POP3 (STLS)",
        "pop3s": "POP3S",
        "sieve": "ManageSieve",
    }
    print("mailstack up: ready", flush=True)
    for domain, ports in sorted(endpoints["domains"].items()):
        print(f"{domain}:")
        for name, port in sorted(ports.items(), key=lambda item: item[1]):
            print(f"  {describe.get(name, name):36} {listen}:{port}")
    print(f"CA certificate clients must trust:     {state / 'ca.crt'}")
    print(f"DNS records to publish:                {state / 'records.zone'}", flush=True)
