"""Delivery cost benchmark: what Dovecot spends per delivery as a mailbox fills up.

    sudo .venv/bin/python bench/delivery.py [--sizes 0,2500,5000] [--batch 500] [--write]

Runs the rendered stack (``mailstack up``, milter off so that mailboxes fill quickly) and
delivers into three mailboxes through the real path (``smtp-source`` → Postfix → LMTP →
Dovecot). At each mailbox size it measures the CPU time of Dovecot's processes (the MDA pod's
``dovecot`` and everything below it: lmtp, auth, config, log) over a batch of deliveries, for

1. a mailbox with a quota, as rendered (the Maildir++ quota backend);
2. a mailbox with a quota under Dovecot's ``count`` backend (the rendered dovecot.conf with
   ``quota = count:…`` appended, bound over the mounted file; the agent reloads Dovecot);
3. a mailbox without a quota.

Mail stays in ``new/``, as it does until a client opens the folder. With ``--write`` the table
replaces the "Delivery cost" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

# Run as ``python bench/NAME.py``, Python puts bench/ first on the path: replace it with the
# repository, so ``bench`` and ``tests`` import and nothing in bench/ shadows a standard module.
if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import yaml
from tests.mail.internet import Internet

from bench.mailpath import (
    ROOT,
    Up,
    bench_domain,
    count_files,
    feed,
    profile,
    sender_zone,
    write_section,
)

# Configuration → (mailbox, lines appended to dovecot.conf).
CONFIGURATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "quota, Maildir++ (as rendered)": ("maildirpp", ()),
    # count requires virtual sizes (the rendered Maildir++ quota counts sizes on disk).
    "quota, count backend": (
        "count",
        ("plugin {", "  quota = count:User quota", "  quota_vsizes = yes", "}"),
    ),
    "no quota": ("unlimited", ()),
}
QUOTA = "100Gi"  # a limit the benchmark never reaches: what is measured is keeping count


def documents(internet_ip: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = [
        bench_domain(internet_ip),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "password",
                "namespace": "bench",
                "labels": {"mailstack.dev/usable-by": "mailboxes"},
            },
            "stringData": {"password": "benchmark-password"},
        },
    ]
    for user, _ in CONFIGURATIONS.values():
        spec: dict[str, Any] = {
            "address": f"{user}@example.com",
            "passwordSecretRef": {"name": "password"},
        }
        if user != "unlimited":
            spec["quota"] = QUOTA
        result.append(
            {
                "apiVersion": "mailstack.dev/v1alpha1",
                "kind": "Mailbox",
                "metadata": {"name": user, "namespace": "bench"},
                "spec": spec,
            }
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0,2500,5000", help="mailbox sizes to measure at")
    parser.add_argument("--batch", type=int, default=500, help="deliveries measured per point")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 1
    # A SIGTERM (timeout, kill) still stops the stack and removes the networks: see finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sizes = [int(x) for x in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="mailstack-bench-"))
    os.chmod(workdir, 0o755)
    internet = Internet(workdir)
    internet.start()
    up: Up | None = None
    # configuration → mailbox size → Dovecot's CPU milliseconds per delivery
    costs: dict[str, dict[int, float]] = {name: {} for name in CONFIGURATIONS}
    try:
        internet.start_dns(sender_zone(internet))
        inputs = workdir / "inputs.yaml"
        inputs.write_text(yaml.safe_dump_all(documents(internet.ip)))
        up = Up(workdir, inputs, internet.host_ip, 30000)
        up.start()
        up.override_main_cf()  # milter off: the mailboxes fill at Postfix's pace, not rspamd's
        port = 30025
        for size in sizes:
            for name, (user, lines) in CONFIGURATIONS.items():
                up.override_dovecot(lines)
                maildir = up.mail_root() / user / "Maildir"
                missing = size - count_files(maildir)
                if missing > 0:
                    feed(internet.host_ip, port, missing, args.connections, user, maildir)
                dovecot = [up.pid_of("dovecot -F -c")]
                run = functools.partial(
                    feed, internet.host_ip, port, args.batch, args.connections, user, maildir
                )
                _, spent, _ = profile(dovecot, run)
                costs[name][size] = sum(spent.values()) * 1000 / args.batch
                print(f"{name} at {size}: {costs[name][size]:.2f} ms per delivery", flush=True)
    finally:
        if up is not None:
            up.stop()
        internet.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report = render_report(costs, sizes, args.batch)
    print(report)
    if args.write:
        write_section(ROOT / "docs" / "benchmarks.md", "Delivery cost", report)
    return 0


def render_report(costs: dict[str, dict[int, float]], sizes: list[int], batch: int) -> str:
    header = " | ".join(f"{size:,} messages" for size in sizes)
    lines = [f"| configuration | {header} |", "|---|" + "---|" * len(sizes)]
    for name, by_size in costs.items():
        cells = " | ".join(f"{by_size[size]:.2f}" for size in sizes if size in by_size)
        lines.append(f"| {name} | {cells} |")
    table = "\n".join(lines)
    return (
        textwrap.dedent(f"""\
        Measured by `bench/delivery.py` on {time.strftime("%Y-%m-%d")} ({os.cpu_count()} cores):
        Dovecot's CPU milliseconds per delivery (the MDA pod's `dovecot` and all its processes),
        over {batch} deliveries of 2 KB messages through the rendered stack (milter off), when
        the mailbox already holds the number of messages at the head of the column. The quota
        is {QUOTA}, never reached: what is measured is the cost of keeping count.

        """)
        + table
        + "\n\nReproduce: `sudo .venv/bin/python bench/delivery.py --sizes "
        + ",".join(str(size) for size in sizes)
        + f" --batch {batch} --write`.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
