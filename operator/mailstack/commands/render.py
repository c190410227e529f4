"""``mailstack render``: every object the operator would create, as YAML, without a cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mailstack.api.errors import Problem, ValidationError
from mailstack.api.models import ClusterNetworks
from mailstack.api.parse.cluster_networks import parse_cluster_networks
from mailstack.commands.problems import report_problems
from mailstack.kubedoc import Obj
from mailstack.pipeline import prepare, render_all, save_state
from mailstack.render.objects import RenderOptions
from mailstack.render.templating import RenderError
from mailstack.render.yamlio import dump_objects, object_file_name
from mailstack.statedir import StateDir, write_atomic


def _write_dir(directory: Path, objects: list[Obj]) -> None:
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


def cluster_networks_argument(text: str) -> ClusterNetworks:
    """``--cluster-networks``: refused, with every problem, before anything runs."""
    try:
        return parse_cluster_networks(text)
    except ValidationError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_cluster_networks_argument(parser: argparse.ArgumentParser) -> None:
    """The option ``render``, ``up`` and ``operator`` share."""
    parser.add_argument(
        "--cluster-networks",
        type=cluster_networks_argument,
        default=ClusterNetworks(),
        metavar="JSON",
        help='the cluster\'s own ranges, {"pods": [CIDR...], "services": [...], "nodes": [...]} '
        "(the chart's clusterNetworks): public clients from them are reported as masked "
        "(ClientAddressesMasked) and never trusted; default: none (no tripwire)",
    )


def cmd_render(args: argparse.Namespace) -> int:
    state = StateDir(args.state) if args.state else None
    prepared = prepare(args.file, state, networks=args.cluster_networks)
    if prepared.problems:
        return report_problems(prepared.problems)
    if not prepared.services and not prepared.servers:
        return report_problems([Problem("input", "", "no MailDomain found in the given files")])
    objects = render_all(prepared, RenderOptions(cluster_networks=args.cluster_networks))
    if args.output:
        _write_dir(Path(args.output), objects)
    else:
        sys.stdout.write(dump_objects(objects))
    if state:
        save_state(state, prepared, objects)
    return 0


def add_render_command(commands: Any) -> None:
    """Register ``render`` on the CLI's sub-command parser."""
    render = commands.add_parser("render", help="print every object the operator would create")
    render.add_argument(
        "-f", "--file", action="append", required=True, help="YAML file or folder (repeatable)"
    )
    render.add_argument("-o", "--output", help="write one YAML file per object into this folder")
    render.add_argument("--state", help="keep generated keys and certificates in this folder")
    add_cluster_networks_argument(render)
    render.set_defaults(handler=cmd_render)
