"""The ``mailstack`` command line: the parser, dispatch to ``commands/<name>``, the exit codes.

Exit codes: 0 success, 2 invalid input (every problem printed on stderr as
``file: Kind/namespace/name field.path: message``), 1 an unexpected failure. Nothing is written
unless the whole input is valid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mailstack import __version__
from mailstack.agent.command import HELP as AGENT_HELP
from mailstack.agent.command import add_agent_arguments, run_agent
from mailstack.commands.dns import add_dns_commands
from mailstack.commands.operator import add_operator_command
from mailstack.commands.problems import EXIT_INVALID
from mailstack.commands.render import add_render_command
from mailstack.commands.up import add_up_command
from mailstack.material.errors import MaterialError
from mailstack.render.templating import RenderError

DESCRIPTION = "MailDomain and Mailbox resources rendered, published and run as a mail service."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailstack", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"mailstack {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    add_render_command(commands)
    add_dns_commands(commands)
    add_operator_command(commands)

    # Listed for --help; `mailstack agent` itself is dispatched by mailstack.entry.
    agent = commands.add_parser("agent", help=AGENT_HELP)
    add_agent_arguments(agent)
    agent.set_defaults(handler=run_agent)

    add_up_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except (RenderError, MaterialError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
