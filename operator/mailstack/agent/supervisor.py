"""The agent's main loop: prepare, run the daemon in the foreground, reload on change, stop.

The daemon is a child process that inherits stdout/stderr (its logs are the container's logs).
SIGTERM/SIGINT are forwarded; when the daemon exits, the agent exits with its status so the
kubelet (or ``mailstack up``) restarts the container. Mounted config changes are detected by
digest every ``poll`` seconds and, once stable for one more poll, trigger the daemon's reload.
The daemon's housekeeping commands (``agent.housekeeping``) are started from the same loop; its
tunnels (``agent.tunnel``) are opened after the preparation and closed with the daemon.
"""

from __future__ import annotations

import sys

from mailstack.agent.daemons import DAEMONS, AgentError, Daemon
from mailstack.agent.health import HealthState, serve_health
from mailstack.agent.housekeeping import Housekeeping
from mailstack.agent.processes import Child, ProcessError
from mailstack.agent.watch import fingerprint
from mailstack.render import layout

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable
    from types import FrameType

    from mailstack.agent.health import Acceptor
    from mailstack.agent.tunnel import Tunnel
else:
    # The C module under ``signal``, whose enum import would cost every agent about 0.7 MB.
    import _signal


def log(message: str) -> None:
    print(f"mailstack-agent: {message}", file=sys.stderr, flush=True)


def run_daemon(daemon: Daemon, health_port: int | None, poll: float = 2.0) -> int:
    try:
        daemon.prepare()
    except (AgentError, OSError, ProcessError) as err:
        log(f"{daemon.name}: cannot prepare: {err}")
        return 1
    tunnels: list[Tunnel] = []
    # The tripwire's policy service (its observations on the health server) is shut down with
    # the tunnels.
    closing: list[Acceptor] = []
    pages: dict[str, Callable[[], str]] = {}
    try:
        if daemon.tunnels:  # _ssl is imported only by the agents that run a tunnel
            from mailstack.agent.tunnel import open_tunnels

            tunnels = open_tunnels(daemon.name)
        if daemon.tripwire:
            from mailstack.agent.tripwire import MaskedClients, open_tripwire

            masked = MaskedClients()
            closing.append(open_tripwire(masked))
            pages[layout.MASKED_CLIENTS_PATH] = masked.text
        if daemon.auth_policy:
            from mailstack.agent.auth_policy import open_auth_policy

            closing.append(open_auth_policy())
    except (AgentError, OSError, ValueError, KeyError) as err:  # KeyError: no postfix user
        log(f"{daemon.name}: cannot open its tunnels: {err}")
        return 1
    state = HealthState([*daemon.probes, *(t.problem for t in tunnels)], daemon.readiness, pages)
    server = serve_health(state, health_port) if health_port else None
    seen = fingerprint(daemon.watched)
    try:
        process = Child(daemon.command)
    except ProcessError as err:
        log(f"{daemon.name}: {err}")
        for opened in tunnels:
            opened.shutdown()
        for policy in closing:
            policy.shutdown()
        if server is not None:
            server.shutdown()
        return 1
    state.running = True
    log(f"{daemon.name} started (pid {process.pid})")
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        process.send_signal(daemon.stop_signal)

    _signal.signal(_signal.SIGTERM, stop)
    _signal.signal(_signal.SIGINT, stop)
    pending: int | None = None
    chores = Housekeeping(daemon.housekeeping, log)
    try:
        while True:
            code = process.wait(timeout=poll)
            if code is not None:
                break
            if stopping:
                continue
            chores.tick()
            current = fingerprint(daemon.watched)
            if current == seen:
                pending = None
                continue
            if pending != current:
                pending = current  # wait one more poll: the kubelet may still be writing
                continue
            log(f"{daemon.name}: mounted configuration changed, reloading")
            daemon.reload(process.pid)
            seen, pending = current, None
    finally:
        chores.stop()
        state.running = False
        for opened in tunnels:
            opened.shutdown()
        for policy in closing:
            policy.shutdown()
        if server is not None:
            server.shutdown()
    log(f"{daemon.name} exited with status {code}")
    return 0 if stopping and code in (0, -daemon.stop_signal) else (code or 1)


def main(name: str, health_port: int | None) -> int:
    factory = DAEMONS.get(name)
    if factory is None:
        log(f"unknown daemon {name!r}; expected one of {', '.join(DAEMONS)}")
        return 2
    return run_daemon(factory(), health_port)
