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


def _listen_address(value: str) -> str:
    # Imported here, as in cmd_up.
    from mailstack.local.network import listen_address

    try:
        return listen_address(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_up_command(commands: Any) -> None:
    """Register ``up`` on the CLI's sub-command parser."""
    up = commands.add_parser("up", help="run the rendered stack on this host (as root)")
    up.add_argument("-f", "--file", action="append", required=True)
    up.add_argument("--state", default="state", help="folder for keys, mail and queues")
    up.add_argument(
        "--listen",
        action="append",
        type=_listen_address,
        help="address for the public ports (repeatable; default 127.0.0.1; 0.0.0.0: every IPv4"
        " address; [::1]: the IPv6 loopback)",
    )
    up.add_argument("--port-offset", type=int, default=0, help="publish port P on P + offset")
    add_cluster_networks_argument(up)
    up.set_defaults(handler=cmd_up)
