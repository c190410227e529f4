"""The ``mailstack`` command line (design §5). A thin shell over the pure core.

Exit codes: 0 success, 2 invalid input (every problem printed on stderr as
``file: Kind/namespace/name field.path: message``), 1 an unexpected failure. Nothing is written
unless the whole input is valid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailstack import __version__
from mailstack.agent.command import HELP as AGENT_HELP
from mailstack.agent.command import add_agent_arguments, run_agent
from mailstack.api.errors import Problem
from mailstack.controller.command import add_operator_command
from mailstack.dns.commands import add_dns_commands
from mailstack.material.errors import MaterialError
from mailstack.pipeline import prepare, render_all, save_state
from mailstack.render.templating import RenderError
from mailstack.render.yamlio import dump_objects, object_file_name
from mailstack.statedir import StateDir, write_atomic

EXIT_INVALID = 2


def _report(problems: list[Problem]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{len(problems)} problem(s); nothing was written", file=sys.stderr)
    return EXIT_INVALID


def _write_dir(directory: Path, objects: list[dict[str, Any]]) -> None:
    """Write one file per object; files are complete before any is renamed into place."""
    staged: list[tuple[Path, str]] = []
    for obj in objects:
        staged.append((directory / object_file_name(obj), dump_objects([obj])))
    paths = [path for path, _ in staged]
    if len(set(paths)) != len(paths):
        raise RenderError("two objects would be written to the same file name")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in staged:
        write_atomic(path, text.encode())  # creates the namespace folder


def cmd_render(args: argparse.Namespace) -> int:
    state = StateDir(args.state) if args.state else None
    prepared = prepare(args.file, state)
    if prepared.problems:
        return _report(prepared.problems)
    if not prepared.services:
        return _report([Problem("input", "", "no MailDomain found in the given files")])
    objects = render_all(prepared)
    if args.output:
        _write_dir(Path(args.output), objects)
    else:
        sys.stdout.write(dump_objects(objects))
    if state:
        save_state(state, prepared, objects)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailstack", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"mailstack {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="print every object the operator would create")
    render.add_argument(
        "-f", "--file", action="append", required=True, help="YAML file or folder (repeatable)"
    )
    render.add_argument("-o", "--output", help="write one YAML file per object into this folder")
    render.add_argument("--state", help="keep generated keys and certificates in this folder")
    render.set_defaults(handler=cmd_render)

    add_dns_commands(commands)
    add_operator_command(commands)

    # Listed for --help; `mailstack agent` itself is dispatched by mailstack.entry.
    agent = commands.add_parser("agent", help=AGENT_HELP)
    add_agent_arguments(agent)
    agent.set_defaults(handler=run_agent)

    up = commands.add_parser("up", help="run the rendered stack on this host (as root)")
    up.add_argument("-f", "--file", action="append", required=True)
    up.add_argument("--state", default="state", help="folder for keys, mail and queues")
    up.add_argument(
        "--listen",
        action="append",
        help="IPv4 address for the public ports (repeatable; default 127.0.0.1; 0.0.0.0: all)",
    )
    up.add_argument("--port-offset", type=int, default=0, help="publish port P on P + offset")
    up.set_defaults(handler=cmd_up)
    return parser


def cmd_up(args: argparse.Namespace) -> int:
    from mailstack.local.runtime import run_up

    return run_up(args.file, args.state, args.listen or ["127.0.0.1"], args.port_offset)


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
