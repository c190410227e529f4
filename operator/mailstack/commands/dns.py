"""The ``mailstack dns plan|apply|check`` commands: a thin shell over dns/.

Exit codes: 0 success; 1 a provider failed (unreachable, timeout, refused credentials) or a check
found records missing or wrong; 2 invalid input; 3 a record is in conflict (held by someone
else; everything else was applied); 4 the plan was refused by the safety threshold (re-run with
``--force``). Every failure prints one line ``error: <reason>`` on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

import yaml

from mailstack.api.documents import load_documents
from mailstack.api.errors import Problem
from mailstack.api.models import MailDomain, Secret
from mailstack.commands.problems import EXIT_INVALID, report_problems
from mailstack.dns.check import (
    CheckReport,
    Querier,
    authoritative_servers,
    check_records,
    discover,
    parse_server,
    recursive_txt,
)
from mailstack.dns.errors import DnsError
from mailstack.dns.lint import QueryError
from mailstack.dns.plan_text import format_plan
from mailstack.dns.providers.external_dns import dns_endpoint
from mailstack.dns.reconcile import plan_dns
from mailstack.dns.records import desired_records, render_zone
from mailstack.material.dkim import DkimKey
from mailstack.material.resolve import dkim_secret_name
from mailstack.pipeline import Prepared, prepare, render_all, save_state
from mailstack.statedir import StateDir

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFLICT = 3
EXIT_UNSAFE = 4


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _prepare(args: argparse.Namespace) -> tuple[Prepared | None, StateDir | None, int]:
    state = StateDir(args.state) if args.state else None
    prepared = prepare(args.file, state)
    if prepared.problems:
        return None, state, report_problems(prepared.problems)
    if not prepared.services:
        missing = Problem("input", "", "no MailDomain found in the files")
        return None, state, report_problems([missing])
    return prepared, state, EXIT_OK


def _secrets(args: argparse.Namespace, namespace: str) -> dict[str, Secret]:
    """Provider credentials: the Secret documents of the given files (as the cluster's)."""
    return load_documents(args.file).secrets_in(namespace)


def _header(domain: MailDomain) -> str:
    return (
        f"; MailDomain {domain.namespace}/{domain.name}: {domain.domain} "
        f"(provider {domain.dns.provider.kind})"
    )


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the change set (manual provider: the desired records in zone-file form)."""
    prepared, state, code = _prepare(args)
    if prepared is None:
        return code
    result = EXIT_OK
    for service, material in prepared.services:
        domain = service.domain
        print(_header(domain))
        kind = domain.dns.provider.kind
        records = desired_records(domain, material.dkim)
        if not domain.dns.provider.pushes_records:
            sys.stdout.write(render_zone(records))
            if kind == "externalDNS":
                print(
                    f"; external-dns publishes these from DNSEndpoint {domain.name}-dns "
                    "(mailstack dns apply prints it)",
                )
            continue
        try:
            provider, _, plan = plan_dns(domain, material.dkim, _secrets(args, domain.namespace))
        except DnsError as err:
            result = max(result, _error(str(err), EXIT_FAILED))
            continue
        print(f"; {provider.describe()}")
        sys.stdout.write(format_plan(plan))
        refusal = plan.refusal()
        if refusal:
            print(f"warning: dns apply would refuse this plan: {refusal}", file=sys.stderr)
    if state is None:
        print("note: without --state a new DKIM key was generated for this plan", file=sys.stderr)
    else:
        save_state(state, prepared, render_all(prepared))
    return result


def _dkim_is_kept(args: argparse.Namespace, state: StateDir | None, domain: MailDomain) -> bool:
    if state is not None:
        return True
    given = load_documents(args.file).secrets_in(domain.namespace)
    return dkim_secret_name(domain.name) in given


def cmd_apply(args: argparse.Namespace) -> int:
    """Push the change set to the provider of every MailDomain in the files."""
    prepared, state, code = _prepare(args)
    if prepared is None:
        return code
    for service, _ in prepared.services:
        if not _dkim_is_kept(args, state, service.domain):
            name = dkim_secret_name(service.domain.name)
            return _error(
                "dns apply without --state would publish a newly generated DKIM key that no "
                f"server signs with; give --state DIR (as for render/up) or the Secret {name}",
                EXIT_INVALID,
            )
    if state is not None:
        # Keep the key before publishing it: the stack must sign with what DNS announces.
        save_state(state, prepared, render_all(prepared))
    result = EXIT_OK
    for service, material in prepared.services:
        domain = service.domain
        print(_header(domain))
        result = max(result, _apply_one(args, domain, material.dkim))
    return result


def _apply_one(args: argparse.Namespace, domain: MailDomain, dkim: DkimKey) -> int:
    kind = domain.dns.provider.kind
    records = desired_records(domain, dkim)
    if kind == "manual":
        sys.stdout.write(render_zone(records))
        print("note: provider manual: nothing was pushed; publish these records", file=sys.stderr)
        return EXIT_OK
    if kind == "externalDNS":
        sys.stdout.write(yaml.safe_dump(dns_endpoint(domain, records), sort_keys=False))
        print("note: provider externalDNS: apply this DNSEndpoint to the cluster", file=sys.stderr)
        return EXIT_OK
    secrets: Mapping[str, Secret] = _secrets(args, domain.namespace)
    try:
        provider, _, plan = plan_dns(domain, dkim, secrets)
        print(f"; {provider.describe()}")
        sys.stdout.write(format_plan(plan))
        refusal = plan.refusal()
        if refusal and not args.force:
            return _error(f"refusing to apply: {refusal}", EXIT_UNSAFE)
        provider.apply(plan.changes)
    except DnsError as err:
        return _error(str(err), EXIT_FAILED)
    print(
        f"; applied {len(plan.changes)} change(s) to {provider.describe()} "
        f"in {provider.writes} write request(s)"
    )
    conflicts = plan.conflicts
    if conflicts:
        first = conflicts[0]
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        return _error(
            f"conflict: {first.name} {first.type}: {first.message}{more}; the other records "
            "were applied",
            EXIT_CONFLICT,
        )
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Query the authoritative servers (or --server) and compare with the desired records."""
    domain_name = args.domain.rstrip(".").lower()
    try:
        if args.server:
            servers = [parse_server(s) for s in args.server]
        else:
            servers = authoritative_servers(domain_name, args.timeout)
    except (QueryError, ValueError) as err:
        return _error(f"{err}; give --server ADDR[:PORT]", EXIT_FAILED)
    querier = Querier(servers, args.timeout)
    lookup = None if args.no_follow else recursive_txt(args.timeout)
    report = CheckReport(domain_name, querier.describe())
    if args.file:
        prepared, state, code = _prepare(args)
        if prepared is None:
            return code
        found = [(s, m) for s, m in prepared.services if s.domain.domain == domain_name]
        if not found:
            return _error(f"no MailDomain for {domain_name} in the files", EXIT_INVALID)
        service, material = found[0]
        if state is None and not _dkim_is_kept(args, None, service.domain):
            print("note: without --state the DKIM key compared is a new one", file=sys.stderr)
        records = desired_records(service.domain, material.dkim)
        report.results = check_records(records, querier, domain_name, lookup)
    else:
        report.results = discover(domain_name, querier, args.selector, lookup)
    sys.stdout.write(report.format())
    if report.ok:
        return EXIT_OK
    errors = [r for r in report.results if r.state == "error"]
    if errors and len(errors) == len(report.results):
        return _error(f"no server answered: {errors[0].problems[0]}", EXIT_FAILED)
    bad = sum(1 for r in report.results if not r.ok)
    return _error(f"{bad} record(s) of {domain_name} missing, different or faulty", EXIT_FAILED)


def add_dns_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dns plan|apply|check`` on the top-level ``mailstack`` sub-command parser."""
    dns = subparsers.add_parser("dns", help="DNS records of the MailDomains")
    commands = dns.add_subparsers(dest="dns_command", required=True)

    plan = commands.add_parser(
        "plan", help="print the change set at the provider (manual: the desired records)"
    )
    plan.add_argument("-f", "--file", action="append", required=True, help="YAML file or folder")
    plan.add_argument("--state", help="folder with the keys of earlier runs")
    plan.set_defaults(handler=cmd_plan)

    apply = commands.add_parser("apply", help="push the change set to the provider")
    apply.add_argument("-f", "--file", action="append", required=True, help="YAML file or folder")
    apply.add_argument("--state", help="folder with the keys of earlier runs")
    apply.add_argument(
        "--force", action="store_true", help="apply even a plan deleting much of the zone"
    )
    apply.set_defaults(handler=cmd_apply)

    check = commands.add_parser("check", help="verify the published records")
    check.add_argument("domain", help="the mail domain, e.g. example.com")
    check.add_argument(
        "--server",
        action="append",
        help="ask this server (ADDR[:PORT], repeatable) instead of the authoritative ones",
    )
    check.add_argument(
        "-f", "--file", action="append", help="compare with the desired records of these files"
    )
    check.add_argument("--state", help="folder with the keys of earlier runs")
    check.add_argument("--selector", default="mailstack", help="DKIM selector (without -f)")
    check.add_argument("--timeout", type=float, default=3.0, help="seconds per query")
    check.add_argument(
        "--no-follow",
        action="store_true",
        help="do not resolve SPF include:/redirect= targets (no recursive resolver)",
    )
    check.set_defaults(handler=cmd_check)
