"""Periodic chores beside the daemon: commands the agent runs on a schedule, never blocking it.

A daemon may name housekeeping commands (Dovecot's daily sweep of old Junk and Trash messages,
``doveadm expunge``). They run one after another as child processes, first ``delay`` seconds
after the agent starts and then every ``interval`` seconds, measured from the start of the
previous round. The supervisor calls ``tick`` on each turn of its loop, so a long sweep never
holds up config reloads or a SIGTERM; ``stop`` ends a command still running when the daemon
stops. Each command is logged when it starts (for Dovecot, two lines a day: the container log
shows that the sweep ran), and a failed one with its status; the round goes on: a chore is never
worth a restart.
"""

from __future__ import annotations

import time

from mailstack.agent.processes import Child, ProcessError

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# The first round some minutes after start, so a pod that restarts often still gets its sweep
# and a start is not slowed by it; then daily.
DELAY = 600.0
INTERVAL = 86400.0


class Housekeeping:
    """The schedule and the one running command (if any) of a daemon's chores."""

    def __init__(
        self,
        commands: list[list[str]],
        log: Callable[[str], None],
        delay: float = DELAY,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.commands = commands
        self.interval = interval
        self.log = log
        self.clock = clock
        self.due = clock() + delay
        self.queue: list[list[str]] = []
        self.running: Child | None = None
        self.current: list[str] = []

    def tick(self) -> None:
        """Reap a finished command, start the next one, or start a round when one is due."""
        if self.running is not None:
            code = self.running.poll()
            if code is None:
                return
            if code != 0:
                self.log(f"housekeeping: {' '.join(self.current)} exited with status {code}")
            self.running = None
        if not self.queue and self.commands and self.clock() >= self.due:
            self.queue = [list(c) for c in self.commands]
            self.due = self.clock() + self.interval
        while self.queue and self.running is None:
            self.current = self.queue.pop(0)
            self.log(f"housekeeping: {' '.join(self.current)}")
            try:
                self.running = Child(self.current)
            except ProcessError as err:
                self.log(f"housekeeping: {err}")

    def stop(self, timeout: float = 5.0) -> None:
        """End the running command, if any: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        self.queue = []
        if self.running is None:
            return
        self.running.send_signal(15)
        if self.running.wait(timeout) is None:
            self.running.send_signal(9)
            self.running.wait(timeout)
        self.running = None
