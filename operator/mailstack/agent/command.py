"""The ``mailstack agent`` command line: its arguments, shared by ``mailstack --help``.

Kept apart from ``mailstack.cli`` so that the agent's process imports nothing but the agent
(see ``mailstack.entry``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

DAEMON_NAMES = ("postfix", "dovecot", "rspamd")
HELP = "in-container supervisor of one daemon"


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("daemon", choices=DAEMON_NAMES)
    parser.add_argument("--health-port", type=int, help="serve /healthz and /readyz on this port")


def run_agent(args: argparse.Namespace) -> int:
    from mailstack.agent.supervisor import main as agent_main

    return agent_main(args.daemon, args.health_port)


def run_agent_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="mailstack agent", description=HELP)
    add_agent_arguments(parser)
    return run_agent(parser.parse_args(list(argv)))
