"""Child processes for the agent: start, wait with a timeout, signal, run to completion.

The agent runs beside every daemon for the life of its pod, so it stays off the ``subprocess``
module: with what it pulls in (selectors, threading, contextlib, locale) that module costs each
agent about a megabyte of memory. ``os.posix_spawnp`` starts a program, a pidfd (Linux 5.3+)
says when it has exited, and ``os.waitpid`` collects its status. Exit codes follow
``subprocess``: negative for a process killed by a signal.
"""

from __future__ import annotations

import os
import select
import time

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class ProcessError(Exception):
    """A program could not be started, or exited with a failure where success was required."""


def which(program: str) -> str | None:
    """The path ``program`` runs from, searched in PATH as a shell would; None if not found."""
    if "/" in program:
        return program if os.access(program, os.X_OK) else None
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _spawn(argv: Sequence[str], output: int | None = None) -> int:
    actions = []
    if output is not None:
        actions = [(os.POSIX_SPAWN_DUP2, output, 1), (os.POSIX_SPAWN_DUP2, output, 2)]
    try:
        return os.posix_spawnp(argv[0], list(argv), os.environ, file_actions=actions)
    except OSError as err:
        raise ProcessError(f"cannot run {argv[0]}: {err.strerror}") from None


class Child:
    """A started program: its pid, and its exit code once it has ended."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.pid = _spawn(argv)
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # an old kernel, or a seccomp profile refusing it
            self._pidfd = None

    def poll(self) -> int | None:
        """The exit code if the program has ended, else None (never blocks)."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                if self._pidfd is not None:
                    os.close(self._pidfd)
                    self._pidfd = None
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        """The exit code once the program has ended, or None after ``timeout`` seconds.

        Signal handlers run while waiting (select and sleep resume after them), so a SIGTERM
        handler can forward the signal and the exit is still seen.
        """
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self._pidfd is not None:
                select.select([self._pidfd], [], [], left)
            else:
                time.sleep(min(left, 0.1))
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Signal the program unless it has been reaped. Safe in a signal handler: it does not
        reap (an exited program stays a zombie, its pid not reused, until ``poll`` reaps it)."""
        if self.returncode is None:
            try:  # noqa: SIM105 (contextlib is one more import in every agent)
                os.kill(self.pid, signum)
            except ProcessLookupError:  # reaped by a poll this handler interrupted
                pass


def run(argv: Sequence[str], *, capture: bool = False, check: bool = False) -> tuple[int, str]:
    """Run a program to its end: its exit code and, with ``capture``, its output (stdout and
    stderr together). With ``check``, a failure raises ProcessError carrying that output."""
    if not capture:
        pid, output = _spawn(argv), ""
    else:
        read_end, write_end = os.pipe()
        try:
            pid = _spawn(argv, output=write_end)
        finally:
            os.close(write_end)
        chunks = []
        with os.fdopen(read_end, "rb") as pipe:
            while chunk := pipe.read(65536):
                chunks.append(chunk)
        output = b"".join(chunks).decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if check and code != 0:
        detail = f": {output.strip()}" if output.strip() else ""
        raise ProcessError(f"{' '.join(argv)} exited with status {code}{detail}")
    return code, output
