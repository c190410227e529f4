"""``mailstack up``: render exactly as for the cluster, then run the rendered pods on this host.

Owns the run from the command line to the end: preflight (``local.preflight``), the render into
``--state`` as the operator would render it, ``local.runtime`` started on it, and then the watch:
on SIGHUP or a change of the input files it re-renders and applies the new render in place.
SIGTERM/Ctrl-C stop everything and remove every namespace, link and rule the run created. Mail,
queues and keys stay in ``--state`` for the next run. Files in the state folder tell scripts how
far the run is: ``endpoints.json``, ``ready`` (``ready`` or ``degraded``; removed on stop) and
``rendered`` (the time of the last re-render applied).
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from mailstack.api.documents import yaml_files
from mailstack.api.models import ClusterNetworks
from mailstack.kubedoc import Obj
from mailstack.local.network import NetworkError
from mailstack.local.pods import public_forwards
from mailstack.local.preflight import PreflightError, check_host, lock_state
from mailstack.local.runtime import READY_TIMEOUT, LocalRuntime, RuntimeConfigError
from mailstack.local.terminal import log, print_endpoints
from mailstack.pipeline import Prepared, prepare, render_all, save_state
from mailstack.render.objects import RenderOptions
from mailstack.statedir import StateDir


def _inputs_digest(files: list[str]) -> str:
    """A digest of the input files' names and contents: it changes when any of them does."""
    digest = hashlib.sha256()
    for path in yaml_files(files):
        try:
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
        except OSError:
            digest.update(str(path).encode() + b"\0<missing>")
    return digest.hexdigest()


def _render(
    files: list[str],
    state: StateDir,
    resolvers: dict[str, tuple[str, ...]] | None = None,
    networks: ClusterNetworks | None = None,
) -> list[Obj] | None:
    """Render the files and keep the generated material in ``state``; None (and the problems
    printed) when they do not render. Fills ``resolvers`` with each MailDomain's DNS servers."""
    prepared = prepare(files, state, networks=networks)
    if prepared.problems:
        for problem in prepared.problems:
            print(f"error: {problem}", file=sys.stderr)
        return None
    for entry in prepared.servers:  # its pods, ports and reloads here are still to be built
        domains = ", ".join(service.domain.domain for service, _ in entry.domains) or "none"
        print(
            f"warning: mailstack up does not run a MailServer yet: {entry.server.ref} "
            f"(domains: {domains}) is left out",
            file=sys.stderr,
        )
    prepared = Prepared(prepared.services, prepared.problems)
    if not prepared.services:
        print("error: no MailDomain found in the given files", file=sys.stderr)
        return None
    objects = render_all(prepared, RenderOptions(cluster_networks=networks or ClusterNetworks()))
    save_state(state, prepared, objects)
    if resolvers is not None:
        for service, _ in prepared.services:
            key = f"{service.domain.namespace}/{service.domain.name}"
            resolvers[key] = service.domain.resolvers
    return objects


def run_up(
    files: list[str],
    state_dir: str,
    listen: list[str],
    port_offset: int,
    networks: ClusterNetworks | None = None,
) -> int:
    """Run ``mailstack up`` until SIGTERM/Ctrl-C. The exit status: 0 once stopped, 1 when this
    host, its ports or the render's pods cannot run (the error printed), 2 when the input files
    do not render (the problems printed)."""
    state_path = Path(state_dir).resolve()
    try:
        check_host()
        lock = lock_state(state_path)
    except PreflightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    with lock:
        return _run_locked(files, StateDir(state_path), listen, port_offset, networks)


def _run_locked(
    files: list[str],
    state: StateDir,
    listen: list[str],
    port_offset: int,
    networks: ClusterNetworks | None,
) -> int:
    resolvers: dict[str, tuple[str, ...]] = {}
    objects = _render(files, state, resolvers, networks)
    if objects is None:
        return 2
    runtime = LocalRuntime(state.root, listen, port_offset, resolvers)
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
        if runtime.stopping:
            return 0
        # As a Service: no traffic before the pods are ready (a client would meet a Postfix
        # whose milter is not up yet: 451). Pods still not ready at the deadline get it anyway.
        runtime.publish()
        endpoints = runtime.endpoints(forwards)
        (state.root / "endpoints.json").write_text(json.dumps(endpoints, indent=1, sort_keys=True))
        if not_ready:
            log("not ready after {:.0f} s: {}".format(READY_TIMEOUT, ", ".join(not_ready)))
        print_endpoints(endpoints, state.root)
        _follow_inputs(runtime, files, state, resolvers, reload_requested, networks, not not_ready)
        return 0
    except (NetworkError, RuntimeConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        (state.root / "ready").unlink(missing_ok=True)
        runtime.stop()
        log("stopped")


def _follow_inputs(
    runtime: LocalRuntime,
    files: list[str],
    state: StateDir,
    resolvers: dict[str, tuple[str, ...]],
    reload_requested: threading.Event,
    networks: ClusterNetworks | None = None,
    pods_ready: bool = True,
) -> None:
    """Until the runtime stops: supervise its containers (and HAProxy), keep the ``ready`` file
    ("degraded" while pods were not ready in time or HAProxy is down), and re-render on SIGHUP
    or when the input files change (checked every second); a render that fails leaves the pods
    as they are."""
    digest = _inputs_digest(files)
    status = ""
    while not runtime.stopping:
        runtime.supervise()
        wanted = "ready\n" if pods_ready and runtime.published() else "degraded\n"
        if wanted != status:
            if status:
                log(f"now {wanted.strip()}")
            (state.root / "ready").write_text(wanted)
            status = wanted
        reload_requested.wait(timeout=1.0)
        current = _inputs_digest(files)
        if reload_requested.is_set() or current != digest:
            reload_requested.clear()
            digest = current
            log("re-rendering")
            new_objects = _render(files, state, resolvers, networks)
            if new_objects is not None:
                runtime.apply_render(new_objects)
                (state.root / "rendered").write_text(str(time.time()) + "\n")
