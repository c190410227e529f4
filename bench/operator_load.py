"""Operator benchmark: 10,000 Mailboxes across 50 MailDomains on the API server emulator.

    .venv/bin/python bench/operator_load.py [--domains 50] [--mailboxes 10000] [--write-docs]

The emulator (tests/component/emulator/) runs in this process; the operator runs as it is
deployed, ``mailstack operator --standalone`` in its own process, against a kubeconfig pointing
at the emulator. Measured:

1. convergence: everything exists before the operator starts (like installing the operator into
   a cluster that has the resources, or a long outage); time from the operator's start until
   every MailDomain and every Mailbox reports Ready for its current generation;
2. a no-op resync: the operator is restarted with a short resync interval and left alone for a
   while (resume handlers, then periodic resyncs of every MailDomain); the API writes it makes
   then must be zero; its reads show the passes really ran;
3. the operator process's peak RSS (VmHWM) over both runs.

Passwords are pre-hashed ``{BLF-CRYPT}`` values: bcrypt at cost 10 takes ~60 ms per plain
password, which would measure bcrypt (10,000 × 60 ms) rather than the operator. The emulator
checks the CRD schemas but skips their CEL rules here (cel-python needs milliseconds per rule);
built-in kinds are validated against the Kubernetes 1.30 schemas.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as ``python bench/NAME.py``, Python puts bench/ first on the path: replace it with the
# repository, so ``bench`` and ``tests`` import and nothing in bench/ shadows a standard module.
if __package__ in (None, ""):
    sys.path[0] = str(ROOT)

from tests.component.emulator import ApiServer, Write  # noqa: E402

HASH = "{BLF-CRYPT}$2b$10$oNX0qrTw9O53hLe7QUwJleCv/SNk366H0AaviuhdUL0m9Ve3uMtW."
NS = "bench"
API = "mailstack.dev/v1alpha1"
DOCS = ROOT / "docs" / "benchmarks.md"


def populate(api: ApiServer, domains: int, mailboxes: int) -> None:
    store = api.store

    def create_all() -> None:
        store.create_namespace(NS)
        md, mb, sec = store.by_plural("maildomains"), store.by_plural("mailboxes"), None
        sec = store.by_plural("secrets")
        for d in range(domains):
            spec = {"domain": f"d{d:02}.example", "postmaster": f"u0@d{d:02}.example"}
            store.create(
                md,
                NS,
                {
                    "apiVersion": API,
                    "kind": "MailDomain",
                    "metadata": {"name": f"d{d:02}"},
                    "spec": spec,
                },
                manager="kubectl",
            )
        for i in range(mailboxes):
            d, n = i % domains, i // domains
            name = f"u{n}-d{d:02}"
            store.create(
                sec,
                NS,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "labels": {"mailstack.dev/usable-by": "mailboxes"}},
                    "data": {"password": _b64(HASH)},
                },
                manager="kubectl",
            )
            store.create(
                mb,
                NS,
                {
                    "apiVersion": API,
                    "kind": "Mailbox",
                    "metadata": {"name": name},
                    "spec": {
                        "address": f"u{n}@d{d:02}.example",
                        "passwordSecretRef": {"name": name},
                    },
                },
                manager="kubectl",
            )

    api.call(create_all, timeout=600)


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def converged(api: ApiServer) -> tuple[int, int, int, int]:
    """(ready domains, domains, ready mailboxes, mailboxes) — read on the emulator's loop."""

    def count() -> tuple[int, int, int, int]:
        store = api.store
        result = []
        for plural in ("maildomains", "mailboxes"):
            objects = store.list(store.by_plural(plural), NS)
            ready = sum(1 for obj in objects if _ready(obj))
            result += [ready, len(objects)]
        return result[0], result[1], result[2], result[3]

    return api.call(count)  # type: ignore[no-any-return]


def _ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def operator_writes(writes: list[Write]) -> list[Write]:
    return [w for w in writes if not w.internal and w.manager in ("mailstack", "kopf")]


class Operator:
    """``mailstack operator`` in a subprocess."""

    def __init__(self, kubeconfig: Path, resync: float, port: int, log: Path) -> None:
        self.port = port
        self.log_path = log
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "mailstack"),
                "operator",
                "--standalone",
                f"--liveness=http://127.0.0.1:{port}/healthz",
                f"--resync-interval={resync}",
                "--debounce=1",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.peak_kib = 0

    def alive(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                return True
        except OSError:
            return False

    def sample(self) -> None:
        try:
            text = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return
        match = re.search(r"VmHWM:\s+(\d+) kB", text)
        if match:
            self.peak_kib = max(self.peak_kib, int(match.group(1)))

    def stop(self) -> None:
        self.sample()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(predicate: Callable[[], bool], timeout: float, op: Operator) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        op.sample()
        if op.process.poll() is not None:
            raise SystemExit(f"the operator exited ({op.process.returncode}); see {op.log_path}")
        if predicate():
            return time.monotonic() - start
        time.sleep(0.25)
    raise SystemExit(f"timed out after {timeout}s")


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().split()[1]
    return (
        f"{cpu}, {os.cpu_count()} cores, {int(memory) // 1024 // 1024 + 1} GB RAM; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"kopf {version('kopf')}, aiohttp {version('aiohttp')}"
    )


def run(domains: int, mailboxes: int, resync: float, quiet: float) -> dict[str, Any]:
    result: dict[str, Any] = {"domains": domains, "mailboxes": mailboxes}
    logs = Path(tempfile.mkdtemp(prefix="bench-operator-load-"))  # kept: the operators' logs
    result["logs"] = str(logs)
    with (
        tempfile.TemporaryDirectory() as tmp,
        ApiServer(cel=False, history=200_000, bookmark_interval=5) as api,
    ):
        kubeconfig = api.kubeconfig(Path(tmp) / "kubeconfig")
        start = time.monotonic()
        populate(api, domains, mailboxes)
        result["populate_s"] = time.monotonic() - start
        assert api.emulator is not None

        # 1. Convergence.
        before = api.write_count()
        op = Operator(kubeconfig, 3600, free_port(), logs / "operator-1.log")
        t0 = time.monotonic()
        try:
            result["converge_s"] = wait(
                lambda: (c := converged(api))[0] == c[1] and c[2] == c[3], 600, op
            )
            time.sleep(2)
            op.sample()
        finally:
            op.stop()
        writes = operator_writes(api.writes(before))
        result["converge_writes"] = len(writes)
        result["converge_status_writes"] = sum(1 for w in writes if w.subresource == "status")
        result["converge_child_writes"] = sum(
            1 for w in writes if w.resource not in ("maildomains", "mailboxes", "events")
        )
        result["peak_rss_mib_converge"] = op.peak_kib / 1024
        result["startup_to_ready_s"] = time.monotonic() - t0

        # 2. Restart and leave it alone: resume passes, then resyncs every `resync` seconds.
        before = api.write_count()
        reads_before = api.call(
            lambda: sum(
                n
                for (agent, verb, _, res), n in api.emulator.counts.items()
                if agent == "mailstack" and verb == "get" and res == "configmaps"
            )
        )
        op = Operator(kubeconfig, resync, free_port(), logs / "operator-2.log")
        try:
            wait(op.alive, 120, op)
            deadline = time.monotonic() + quiet
            while time.monotonic() < deadline:
                op.sample()
                time.sleep(0.5)
        finally:
            op.stop()
        reads = api.call(
            lambda: sum(
                n
                for (agent, verb, _, res), n in api.emulator.counts.items()
                if agent == "mailstack" and verb == "get" and res == "configmaps"
            )
        )
        idle_writes = operator_writes(api.writes(before))
        result["resync_writes"] = len(idle_writes)
        result["resync_write_kinds"] = sorted(
            {
                f"{w.verb} {w.resource}{'/' + w.subresource if w.subresource else ''}"
                for w in idle_writes
            }
        )
        # Each pass reads the four ConfigMaps of each MailDomain.
        result["resync_passes"] = (reads - reads_before) / (4 * domains)
        result["resync_window_s"] = quiet
        result["resync_interval_s"] = resync
        result["peak_rss_mib"] = max(op.peak_kib / 1024, result["peak_rss_mib_converge"])
        result["machine"] = machine()
    return result


def report(r: dict[str, Any]) -> str:
    rows = [
        (
            "time to converge (operator start → every MailDomain and Mailbox Ready for its "
            "generation)",
            f"{r['converge_s']:.1f} s",
            "≤ 60 s",
        ),
        (
            "API writes while converging",
            f"{r['converge_writes']:,} ({r['converge_child_writes']:,} children, "
            f"{r['converge_status_writes']:,} statuses)",
            "",
        ),
        (
            f"API writes during a no-op restart and resyncs ({r['resync_window_s']:.0f} s, "
            f"{r['resync_passes']:.1f} passes over every MailDomain)",
            str(r["resync_writes"]),
            "0",
        ),
        ("operator peak RSS (VmHWM, both runs)", f"{r['peak_rss_mib']:.0f} MiB", "≤ 200 MiB"),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""## Operator

`bench/operator_load.py`: {r["mailboxes"]:,} Mailboxes across {r["domains"]} MailDomains, one
password Secret each, with pre-hashed `{{BLF-CRYPT}}` values (bcrypt at cost 10 costs ~60 ms
per plain password: the benchmark would measure bcrypt). The API server is the emulator of the
component tests (kmock 0.8 made realistic: resourceVersions, server-side apply, status
subresource, watch resume, CRD schemas without their CEL rules, the Kubernetes 1.30 schemas for
built-in kinds), in the benchmark's process; the operator runs as deployed, `mailstack operator`
in its own process. Everything exists before the operator starts; then the operator is
restarted and left alone with a {r["resync_interval_s"]:g} s resync interval.

| measure | result | target |
|---|---|---|
{table}

Machine: {r["machine"]}; other work was running on it.
Reproduce: `.venv/bin/python bench/operator_load.py --write-docs`.
"""


def write_docs(section: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Operator\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text.rstrip("\n") + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=50)
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--resync", type=float, default=10.0, help="resync interval, seconds")
    parser.add_argument("--quiet", type=float, default=35.0, help="no-op window, seconds")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    result = run(args.domains, args.mailboxes, args.resync, args.quiet)
    section = report(result)
    print(section)
    print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items()})
    if args.write_docs:
        write_docs(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
