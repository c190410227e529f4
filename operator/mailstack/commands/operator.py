"""``mailstack operator``: its arguments, and running the operator they describe.

The operator itself is ``controller.serve.serve``; this module only turns the command line into
its ``OperatorConfig`` and sets up logging.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
from typing import TYPE_CHECKING, Any

from mailstack.api.errors import ValidationError
from mailstack.api.parse.pods import parse_pod_defaults
from mailstack.api.pod_models import MailPods
from mailstack.commands.render import add_cluster_networks_argument
from mailstack.controller.serve import serve
from mailstack.render.objects import RenderOptions

if TYPE_CHECKING:  # kopf is imported when the operator runs, not on every CLI call
    from mailstack.controller.config import OperatorConfig

DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    from mailstack.controller.config import OperatorConfig
    from mailstack.controller.dns_runner import DnsTimings

    return OperatorConfig(
        namespaces=tuple(args.namespaces or ()),
        peering=None if args.standalone else args.peering,
        priority=args.priority,
        resync_interval=args.resync_interval,
        debounce=args.debounce,
        require_domain_grant=args.require_domain_grant,
        proof_resolver=args.proof_resolver or "",
        metrics_address=args.metrics_address,
        dns=DnsTimings(call_timeout=args.dns_call_timeout, deadline=args.dns_deadline),
        render=RenderOptions(
            image=args.mail_image,
            image_pull_policy=args.image_pull_policy,
            mail_pods=args.mail_pod_defaults,
            cluster_networks=args.cluster_networks,
            operator_namespace=args.operator_namespace,
        ),
    )


def resolver_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def mail_pod_defaults(text: str) -> MailPods:
    """``--mail-pod-defaults``: refused, with every problem, before the operator starts."""
    try:
        return parse_pod_defaults(text)
    except ValidationError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def metrics_address(text: str) -> str:
    """``--metrics-address``: HOST:PORT, or empty (no metrics port)."""
    from mailstack.controller.metrics import split_address

    if text:
        try:
            split_address(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return text


def cmd_operator(args: argparse.Namespace) -> int:
    from mailstack.controller import log_context

    log_context.configure(args.log_format, verbose=args.verbose)
    asyncio.run(serve(config_from_args(args), liveness=args.liveness or None))
    return 0


def add_operator_command(commands: Any) -> None:
    """Register ``operator`` on the CLI's sub-command parser (``commands.main``)."""
    parser = commands.add_parser(
        "operator",
        help="run the Kubernetes operator",
        description="Reconcile MailDomain and Mailbox resources (in-cluster, or with KUBECONFIG).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="serve only this namespace (repeatable)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve every namespace (the default)"
    )
    parser.add_argument(
        "--peering",
        default="mailstack",
        help="name of the kopf peering object that keeps one replica active (default: mailstack)",
    )
    parser.add_argument(
        "--standalone", action="store_true", help="no peering: for a single local instance"
    )
    parser.add_argument("--priority", type=int, default=0, help="peering priority")
    parser.add_argument(
        "--liveness",
        default=DEFAULT_LIVENESS,
        help=f"kopf's liveness endpoint (default {DEFAULT_LIVENESS}; empty to disable)",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="re-check every MailDomain this often even without events (default 300)",
    )
    parser.add_argument(
        "--debounce",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="let a burst of Mailbox changes settle this long before rendering (default 1)",
    )
    parser.add_argument(
        "--dns-call-timeout",
        type=float,
        default=10.0,
        help="seconds each call to a DNS provider may take, connect and answer (default 10)",
    )
    parser.add_argument(
        "--dns-deadline",
        type=float,
        default=60.0,
        help="seconds one MailDomain's DNS publication may take in all (default 60)",
    )
    parser.add_argument("--mail-image", default=RenderOptions.image, help="image of the mail pods")
    parser.add_argument(
        "--image-pull-policy",
        default=RenderOptions.image_pull_policy,
        choices=["Always", "IfNotPresent", "Never"],
    )
    parser.add_argument(
        "--mail-pod-defaults",
        type=mail_pod_defaults,
        default=MailPods(),
        metavar="JSON",
        help="defaults of the mail pods in the shape of a MailDomain's spec.pods, which "
        "overrides them (the chart's mailPods); default: the built-in resources only",
    )
    parser.add_argument(
        "--require-domain-grant",
        action="store_true",
        help="serve a domain only where a MailDomainPolicy grants it, even with no policy yet",
    )
    parser.add_argument(
        "--proof-resolver",
        type=resolver_address,
        metavar="ADDRESS",
        help="the DNS resolver (an IP address, port 53) that looks up the proofs of control a "
        "MailDomainPolicy may require and the outbound identity (PTR, SPF of "
        "spec.outbound.addresses); default: the pod's resolvers",
    )
    add_cluster_networks_argument(parser)
    parser.add_argument(
        "--operator-namespace",
        default="",
        metavar="NS",
        help="the operator's own namespace: the MTA pods' NetworkPolicy lets its pods read what "
        "the tripwire saw (--cluster-networks); default: none",
    )
    parser.add_argument(
        "--metrics-address",
        type=metrics_address,
        default="",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (the chart: 0.0.0.0:9090); "
        "default: none (docs/operations.md lists the series)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text (the default) or json: one JSON object per line, with the MailDomain a "
        "reconcile is about as its 'object' field",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(handler=cmd_operator)
