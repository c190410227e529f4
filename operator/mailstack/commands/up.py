"""``mailstack up``: run the rendered stack on this host (the local runtime, ``local/``)."""

from __future__ import annotations

import argparse
from typing import Any

from mailstack.commands.render import add_cluster_networks_argument


def cmd_up(args: argparse.Namespace) -> int:
    # Imported here: the local runtime is only needed by this command.
    from mailstack.local.up import run_up

    return run_up(
        args.file,
        args.state,
        args.listen or ["127.0.0.1"],
        args.port_offset,
        args.cluster_networks,
    )


def add_up_command(commands: Any) -> None:
    """Register ``up`` on the CLI's sub-command parser."""
    up = commands.add_parser("up", help="run the rendered stack on this host (as root)")
    up.add_argument("-f", "--file", action="append", required=True)
    up.add_argument("--state", default="state", help="folder for keys, mail and queues")
    up.add_argument(
        "--listen",
        action="append",
        help="IPv4 address for the public ports (repeatable; default 127.0.0.1; 0.0.0.0: all)",
    )
    up.add_argument("--port-offset", type=int, default=0, help="publish port P on P + offset")
    add_cluster_networks_argument(up)
    up.set_defaults(handler=cmd_up)
