"""The ``mailstack agent`` command line: its arguments, shared by ``mailstack --help``.

Kept apart from ``mailstack.commands`` so that the agent's process imports nothing but the agent
(see ``mailstack.entry``). The forms the rendered containers use (``DAEMON [--health-port N]``)
are read without argparse, which would stay in memory for the life of the agent; anything else
(``--help``, a mistake) goes through argparse for its messages.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing (and re with it) costs the agent half a megabyte.
# Type checkers take any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

DAEMON_NAMES = ("postfix", "dovecot", "rspamd", "clamd", "freshclam")
HELP = "in-container supervisor of one daemon"


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("daemon", choices=DAEMON_NAMES)
    parser.add_argument("--health-port", type=int, help="serve /healthz and /readyz on this port")


def run_agent(args: argparse.Namespace) -> int:
    return _run(args.daemon, args.health_port)


def _run(daemon: str, health_port: int | None) -> int:
    from mailstack.agent.supervisor import main as agent_main

    return agent_main(daemon, health_port)


def _plain_form(argv: Sequence[str]) -> tuple[str, int | None] | None:
    """``DAEMON``, ``DAEMON --health-port N`` or ``DAEMON --health-port=N``; else None."""
    args = list(argv)
    if not args or args[0] not in DAEMON_NAMES:
        return None
    rest = args[1:]
    if not rest:
        return args[0], None
    if len(rest) == 1 and rest[0].startswith("--health-port="):
        rest = ["--health-port", rest[0].partition("=")[2]]
    if len(rest) == 2 and rest[0] == "--health-port" and rest[1].isascii() and rest[1].isdigit():
        return args[0], int(rest[1])
    return None


def run_agent_command(argv: Sequence[str]) -> int:
    plain = _plain_form(argv)
    if plain is not None:
        return _run(*plain)
    import argparse

    parser = argparse.ArgumentParser(prog="mailstack agent", description=HELP)
    add_agent_arguments(parser)
    return run_agent(parser.parse_args(list(argv)))
