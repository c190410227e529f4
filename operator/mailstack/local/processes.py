"""The processes of the local containers: start, stop, restart with back-off, their output.

Owns ``RunningContainer`` (a container of a pod and its current process). Each container runs as
``ip netns exec <pod netns> unshare --mount --pid --fork python -m mailstack.local.container
SPEC``: the process this module holds is ``unshare``, its child is the container's init (PID 1
of the new PID namespace). What the spec holds (mounts, hosts, env) is ``local.runtime``'s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from mailstack.local.pods import ContainerPlan
from mailstack.local.terminal import log

# As the kubelet's restart back-off: 1, 2, 4 ... seconds, at most this many.
MAX_RESTART_DELAY = 30
# As the kubelet: a container that ran this long before it exited starts the back-off afresh.
BACKOFF_RESET_SECONDS = 600


class Supervised(Protocol):
    """A process restarted with back-off (``restart_due``): a container, or ``up``'s HAProxy."""

    process: subprocess.Popen[bytes] | None
    restarts: int
    next_start: float
    started: float


@dataclass
class RunningContainer:
    """A container of a local pod, its process (``None`` before the first start) and the
    restart bookkeeping: restarts so far, when the pending restart is due (0: none pending),
    when the current process started (monotonic clock)."""

    plan: ContainerPlan
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: float = 0.0


def quiet() -> bool:
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


def launch(
    running: RunningContainer, netns: str, spec_file: Path, log_file: Path, label: str
) -> None:
    """Start the container's init on ``spec_file`` in the pod's network namespace.

    Its output is appended to ``log_file`` and, unless ``quiet()``, echoed to the terminal
    with the prefix ``[label]``.
    """
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
    if quiet():
        # Nothing to echo: the container writes its log file itself, with no copy through
        # this process (a few lines per message add up at hundreds of messages a second).
        with open(log_file, "ab") as log_handle:
            process = subprocess.Popen(
                argv, stdout=log_handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
    else:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        threading.Thread(target=_pump, args=(process.stdout, log_file, label), daemon=True).start()
    running.process = process
    running.started = time.monotonic()


def _init_pid(process: subprocess.Popen[bytes]) -> int | None:
    """The container's init: the only child of ``unshare --fork`` (None once it is gone)."""
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def stop_container(running: RunningContainer, grace: float) -> None:
    """SIGTERM to the container's init, SIGKILL after ``grace`` seconds; wait for the end."""
    process = running.process
    if process is None or process.poll() is not None:
        return
    init = _init_pid(process)
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


def in_parallel(calls: list[Callable[[], None]]) -> None:
    """Run the calls each in its own thread and wait for all: stops share one grace period."""
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def restart_due(running: Supervised, label: str, now: float) -> bool:
    """For a process that exited (a container's, HAProxy's): True when it is time to start it
    again.

    restartPolicy Always, with the kubelet's back-off: the first look at an exited process
    schedules (and logs) the restart, a later look at or after that time says True.
    """
    process = running.process
    if process is None or process.poll() is None:
        return False
    if running.next_start == 0.0:
        if now - running.started > BACKOFF_RESET_SECONDS:
            running.restarts = 0
        delay = min(2**running.restarts, MAX_RESTART_DELAY)
        running.next_start = now + delay
        log(f"{label} exited with {process.returncode}; restarting in {delay} s")
        return False
    if now >= running.next_start:
        running.restarts += 1
        running.next_start = 0.0
        return True
    return False
