"""Mail path benchmark: messages per second through the running stack, memory, start time.

    sudo .venv/bin/python bench/mailpath.py [-n 2000] [--connections 20] [--write]

Runs, side by side on this machine:
1. the rendered stack (``mailstack up``) with rspamd as milter,
2. the same stack with the milter switched off in Postfix (the rendered main.cf with
   ``smtpd_milters`` emptied, bind-mounted over the ConfigMap's file inside the MTA pod only),
3. a hand-minimal Postfix → LMTP → Dovecot pair (smallest configs that deliver to Maildir),
each fed N messages by Postfix's ``smtp-source`` over N/connections sessions and counted as files
in the Maildir. It also measures the stack's idle memory (PSS of every process in its pods) and
the time ``mailstack up`` takes to be ready with rspamd's cache warm. With ``--write`` the
figures replace the "Mail path" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Run as ``python bench/NAME.py``, Python puts bench/ first on the path: replace it with the
# repository, so ``bench`` and ``tests`` import and nothing in bench/ shadows a standard module.
if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mail.internet import Internet  # noqa: E402

from mailstack.local.network import Network, choose_subnet, run_id_for  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"


# A fresh mailbox for each configuration and round (these names, numbered by round): Dovecot's
# cost per delivery grows with the mailbox (its index and uidlist files grow), so every run
# must start from the same, empty, mailbox.
MAILBOXES = {
    "with_rspamd": "alice",
    "without_rspamd": "bob",
    "minimal": "carol",
    "minimal_pods": "dave",
}


def bench_domain(internet_ip: str) -> dict[str, Any]:
    """The benchmarks' MailDomain: example.com, resolving through the test internet's DNS."""
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {
            "domain": "example.com",
            "resolvers": [internet_ip],
            "dns": {"addresses": {"ipv4": [internet_ip]}},
            # One client sends every message of a run: the per-client rate limits (60 messages a
            # minute by default) would measure the limit, not the mail path. The clients come
            # from the run's own networks (the test internet, the pod bridges), all in 10/8.
            "limits": {"perClient": {"exemptNetworks": ["10.0.0.0/8"]}},
            # Nor postscreen's: its per-client limit of connections being screened (the same 20)
            # has no exceptions, and more --connections would meet it on the first round.
            "postscreen": {"allowNetworks": ["10.0.0.0/8"]},
        },
    }


def domain_documents(internet_ip: str, rounds: int) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = [bench_domain(internet_ip)]
    for user in (f"{name}{n}" for name in MAILBOXES.values() for n in range(1, rounds + 1)):
        documents += [
            {
                "apiVersion": "mailstack.dev/v1alpha1",
                "kind": "Mailbox",
                "metadata": {"name": user, "namespace": "bench"},
                "spec": {"address": f"{user}@example.com", "passwordSecretRef": {"name": user}},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": user,
                    "namespace": "bench",
                    "labels": {"mailstack.dev/usable-by": "mailboxes"},
                },
                "stringData": {"password": "benchmark-password"},
            },
        ]
    return documents


def sender_zone(internet: Internet) -> dict[str, str]:
    """DNS for smtp-source's sender domain, example.net: the stack's inbound checks (the
    sender domain must resolve, SPF) look it up as they would for any sending domain."""
    return {
        "example.net": (
            f"example.net. 300 IN MX 10 sink.example.net.\nsink.example.net. 300 IN A {internet.ip}\n"
            f'example.net. 300 IN TXT "v=spf1 ip4:{internet.ip} ip4:{internet.host_ip} -all"\n'
        )
    }


def count_files(directory: Path) -> int:
    """Messages in a Maildir, every folder included (smtp-source's mail may be filed as Junk)."""
    folders = [directory]
    if directory.is_dir():
        folders += [p for p in directory.iterdir() if p.name.startswith(".") and p.is_dir()]
    total = 0
    for folder in folders:
        for sub in ("new", "cur"):
            path = folder / sub
            if path.is_dir():
                total += sum(1 for _ in os.scandir(path))
    return total


def feed(address: str, port: int, count: int, connections: int, user: str, maildir: Path) -> float:
    """Send ``count`` messages to ``user`` with smtp-source; seconds until all are in the
    Maildir."""
    before = count_files(maildir)
    start = time.monotonic()
    subprocess.run(
        [
            SMTP_SOURCE,
            "-s",
            str(connections),
            "-m",
            str(count),
            "-l",
            "2048",
            "-f",
            "sender@example.net",
            "-t",
            f"{user}@example.com",
            "-M",
            "client.example.net",
            f"{address}:{port}",
        ],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    deadline = time.monotonic() + 600
    while count_files(maildir) - before < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count_files(maildir) - before} of {count} delivered")
        time.sleep(0.05)
    return time.monotonic() - start


def process_info(pid: int) -> tuple[str, str, list[str]] | None:
    """A process's program name, command line and /proc stat fields (after the name), or None.

    The program is the executable's name (smtpd, lmtp, rspamd), except for Python processes,
    named by what they run (``mailstack agent``, ``-m mailstack up``, the container inits).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat.rsplit(")", 1)[1].split()
    if name == "lmtp":  # Postfix's LMTP client and Dovecot's LMTP server have the same name
        try:
            parent = Path(f"/proc/{fields[1]}/comm").read_text().strip()
        except OSError:
            parent = ""
        name = "lmtp (dovecot)" if parent == "dovecot" else "lmtp (postfix)"
    elif name == "rspamd" and command.startswith("rspamd: "):
        # rspamd names its processes in their titles: main, rspamd_proxy, hs_helper
        name = "rspamd " + command.split()[1].removeprefix("rspamd_")
    elif "mailstack agent" in command:
        name = "mailstack agent"
    elif name.startswith("python"):
        name = " ".join(w for w in command.split()[1:4] if not w.startswith("/"))[:40]
    return name, command, fields


def pss_by_program(roots: list[int], skip: tuple[str, ...] = ()) -> dict[str, int]:
    """Proportional set size (bytes) of each program in the trees of ``roots``.

    Processes whose command line contains one of ``skip`` are not counted (their children are).
    """
    result: dict[str, int] = {}
    for pid in tree_pids(roots):
        info = process_info(pid)
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        if info is None or any(part in info[1] for part in skip):
            continue
        match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.M)
        if match:
            result[info[0]] = result.get(info[0], 0) + int(match.group(1)) * 1024
    return result


def tree_pids(roots: list[int]) -> list[int]:
    """The processes ``roots`` and all their descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    result, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        result.append(pid)
        todo += children.get(pid, [])
    return result


def cpu_by_program(roots: list[int]) -> dict[str, float]:
    """CPU seconds used so far by each program in the trees of ``roots``.

    A process's own time plus the time of its children that have exited and been reaped (which
    is how short-lived Postfix and Dovecot workers are counted: their master reaps them).
    """
    tick = os.sysconf("SC_CLK_TCK")
    result: dict[str, float] = {}
    for pid in tree_pids(roots):
        info = process_info(pid)
        if info is None:
            continue
        name, _, fields = info
        seconds = sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
        result[name] = result.get(name, 0.0) + seconds
    return result


def machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (every core), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def profile(roots: list[int], run: Any) -> tuple[float, dict[str, float], float]:
    """``run()``'s result, the CPU seconds per program it cost, and the machine's busy seconds."""
    before, busy = cpu_by_program(roots), machine_cpu()
    result = run()
    after = cpu_by_program(roots)
    costs = {k: v - before.get(k, 0.0) for k, v in after.items()}
    return result, {k: v for k, v in costs.items() if v > 0.005}, machine_cpu() - busy


class Up:
    """A ``mailstack up`` in the background."""

    def __init__(self, workdir: Path, inputs: Path, listen: str, offset: int) -> None:
        self.state = workdir / "state"
        self.inputs, self.listen, self.offset = inputs, listen, offset
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "up.log"
        # Configuration files the bench has bound over the mounted ones: what the daemons read.
        self.shown: dict[str, str] = {}

    def start(self) -> float:
        ready = self.state / "ready"
        ready.unlink(missing_ok=True)
        start = time.monotonic()
        env = {**os.environ, "MAILSTACK_UP_QUIET": "1", "PYTHONPATH": str(ROOT / "operator")}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailstack",
                "up",
                "-f",
                str(self.inputs),
                "--state",
                str(self.state),
                "--listen",
                self.listen,
                "--port-offset",
                str(self.offset),
            ],
            stdout=open(self.log, "ab"),  # noqa: SIM115 (owned by the process)
            stderr=subprocess.STDOUT,
            env=env,
        )
        while not ready.exists():
            if self.process.poll() is not None:
                raise RuntimeError("mailstack up exited: " + self.log.read_text()[-2000:])
            if time.monotonic() - start > 300:
                raise RuntimeError("mailstack up not ready in 300 s")
            time.sleep(0.05)
        return time.monotonic() - start

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)

    def pid_of(self, command: str) -> int:
        """The stack's process whose command line contains ``command`` (not one of the minimal
        pairs running beside it)."""
        assert self.process is not None
        for pid in tree_pids([self.process.pid]):
            info = process_info(pid)
            if info is not None and command in info[1]:
                return pid
        raise RuntimeError(f"no {command!r} in the stack")

    def mail_root(self) -> Path:
        """The domain's folder in the mailbox volume: ``<user>/Maildir`` below it."""
        return self.state / "volumes/bench/mail-bench-mda-0/example.com"

    def override_main_cf(self, overrides: tuple[str, ...] = (), milter: bool = False) -> None:
        """Bind an edited main.cf over the mounted one, in the MTA pod only; the agent reloads.

        ``milter``: keep rspamd as the milter (by default the milters are emptied).
        ``overrides``: ``name = value`` lines replacing the rendered ones (or added), to try a
        setting without rendering it.
        """
        pid = self.pid_of("postfix/sbin/master")
        main_cf = next((self.state / "pods/bench/bench-mta-0/volumes/postfix-config").glob("..2*"))
        # Written where the pod can see it: its postfix-data emptyDir (/var/lib/postfix).
        edited = self.state / "pods/bench/bench-mta-0/empty/postfix-data/main.cf.nomilter"
        text = (main_cf / "main.cf").read_text()
        if not milter:
            text = re.sub(r"^smtpd_milters = .*$", "smtpd_milters =", text, flags=re.M)
            text = re.sub(r"^non_smtpd_milters = .*$", "non_smtpd_milters =", text, flags=re.M)
        for line in overrides:
            # Replaced in place: a repeated name makes every Postfix program warn at start, and
            # a burst of warnings can fill postlogd's socket while postlogd logs to itself.
            name = line.split("=", 1)[0].strip()
            setting = re.compile(rf"^{re.escape(name)} *=.*$", re.M)
            if setting.search(text):
                text = setting.sub(line.replace("\\", "\\\\"), text)
            else:
                text += f"{line}\n"
        if text == self.shown.get("main.cf", (main_cf / "main.cf").read_text()):
            return  # what Postfix already reads: the agent would see no change
        self.shown["main.cf"] = text
        edited.write_text(text)
        os.utime(edited, (time.time() - 10, time.time() - 10))
        enter = ["nsenter", "-t", str(pid), "-m", "-p", "-n"]
        inside = "/var/lib/postfix/main.cf.nomilter"
        with agent_reload(self.state / "logs/bench_bench-mta-0_postfix.log"):
            subprocess.run(
                [*enter, "mount", "--bind", inside, "/etc/mailstack/postfix/main.cf"], check=True
            )

    def override_dovecot(self, lines: tuple[str, ...]) -> None:
        """Bind a dovecot.conf with ``lines`` appended over the mounted one (MDA pod); the
        agent reloads.

        Dovecot takes the last value of a setting, so appended lines override; to try a setting
        without rendering it.
        """
        pid = self.pid_of("dovecot -F -c")
        pod = self.state / "pods/bench/bench-mda-0"
        config = next((pod / "volumes/dovecot-config").glob("..2*")) / "dovecot.conf"
        rendered = config.read_text()
        text = rendered + "".join(f"{x}\n" for x in lines)
        if text == self.shown.get("dovecot.conf", rendered):
            return
        self.shown["dovecot.conf"] = text
        # Written where the pod can see it: under its mail volume's parent (the PVC folder).
        (self.state / "volumes/bench/mail-bench-mda-0/dovecot.conf.bench").write_text(text)
        enter = ["nsenter", "-t", str(pid), "-m", "-p", "-n"]
        inside = "/var/mail/dovecot.conf.bench"
        conf = "/etc/mailstack/dovecot/dovecot.conf"
        with agent_reload(self.state / "logs/bench_bench-mda-0_dovecot.log"):
            subprocess.run([*enter, "mount", "--bind", inside, conf], check=True)


@contextlib.contextmanager
def agent_reload(log: Path, timeout: float = 30) -> Iterator[None]:
    """Around a change of a mounted file: wait until the container's agent has seen it and
    reloaded its daemon, as it does for a changed ConfigMap, and let the daemon settle.

    Reloading here instead would leave the agent's own reload to land in the measured run.
    """
    marker = "mounted configuration changed, reloading"
    before = log.read_text().count(marker)
    yield
    deadline = time.monotonic() + timeout
    while log.read_text().count(marker) == before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the agent did not reload in {timeout:.0f} s (see {log})")
        time.sleep(0.1)
    # The reload itself, then Postfix's cached LMTP connections (2 s) to Dovecot processes
    # that a Dovecot reload has told to finish.
    time.sleep(4)


def minimal_pair(
    workdir: Path, internet: Internet, network: Network | None = None
) -> tuple[list[subprocess.Popen[bytes]], Path, int]:
    """Postfix → LMTP → Dovecot with the smallest configs that work.

    Without ``network``: both on the host, LMTP on a unix socket. With it: laid out as the
    stack's pods are, each in a network namespace on the run's bridge, LMTP over TCP between
    them and the SMTP port published by DNAT, so the comparison is of configurations only.
    """
    name = "minimal" if network is None else "minimal_pods"
    base = workdir / name
    for sub in ("postfix", "spool", "data", "dovecot", "mail", "run", "state"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    os.chmod(base, 0o755)
    shutil.chown(base / "data", "postfix")
    shutil.chown(base / "mail", 5000, 5000)
    port = 2600 if network is None else 2601
    mta_netns: list[str] = []
    mda_netns: list[str] = []
    if network is None:
        smtpd_address, lmtp_listener = f"{internet.host_ip}:{port}", f"{base}/run/lmtp"
        transport = f"lmtp:unix:{lmtp_listener}"
        listener = f"unix_listener {lmtp_listener} {{\n    mode = 0666\n  }}"
    else:
        mta, mda = network.add_pod(f"{name}-mta"), network.add_pod(f"{name}-mda")
        mta_netns, mda_netns = ["ip", "netns", "exec", mta.name], ["ip", "netns", "exec", mda.name]
        smtpd_address, transport = f"{mta.address}:25", f"lmtp:inet:{mda.address}:24"
        listener = f"inet_listener lmtp {{\n    address = {mda.address}\n    port = 24\n  }}"
        network.publish([internet.host_ip], [(port, mta.address, 25)])
    (base / "postfix/main.cf").write_text(
        textwrap.dedent(f"""\
        compatibility_level = 3.6
        queue_directory = {base}/spool
        data_directory = {base}/data
        meta_directory = /etc/postfix
        myhostname = minimal.example.com
        mydestination =
        virtual_mailbox_domains = example.com
        virtual_mailbox_maps = static:OK
        virtual_transport = {transport}
        maillog_file = {base}/postfix.log
        maillog_file_prefixes = {base}
        smtpd_relay_restrictions = reject_unauth_destination
        inet_interfaces = {smtpd_address.rsplit(":", 1)[0]}
        inet_protocols = ipv4
        """)
    )
    (base / "postfix/master.cf").write_text(
        textwrap.dedent(f"""\
        {smtpd_address} inet n - n - - smtpd
        pickup unix n - n 60 1 pickup
        cleanup unix n - n - 0 cleanup
        qmgr unix n - n 300 1 qmgr
        rewrite unix - - n - - trivial-rewrite
        bounce unix - - n - 0 bounce
        defer unix - - n - 0 bounce
        trace unix - - n - 0 bounce
        verify unix - - n - 1 verify
        proxymap unix - - n - - proxymap
        error unix - - n - - error
        retry unix - - n - - error
        discard unix - - n - - discard
        lmtp unix - - n - - lmtp
        anvil unix - - n - 1 anvil
        scache unix - - n - 1 scache
        postlog unix-dgram n - n - 1 postlogd
        smtp unix - - n - - smtp
        showq unix n - n - - showq
        flush unix n - n 1000? 0 flush
        """)
    )
    old = time.time() - 10
    for file in ("main.cf", "master.cf"):
        os.utime(base / "postfix" / file, (old, old))
    (base / "dovecot/dovecot.conf").write_text(
        textwrap.dedent(f"""\
        protocols = lmtp
        base_dir = {base}/run/dovecot
        state_dir = {base}/state
        instance_name = bench-{name}
        log_path = {base}/dovecot.log
        ssl = no
        passdb {{
          driver = static
          args = nopassword=y
        }}
        userdb {{
          driver = static
          args = uid=5000 gid=5000 home={base}/mail/%d/%n
        }}
        mail_location = maildir:~/Maildir
        service lmtp {{
          {listener}
        }}
        """)
    )
    # The same resolver as the stack's pods (client name lookups cost the same on both sides).
    resolv = base / "resolv.conf"
    resolv.write_text(f"nameserver {internet.ip}\n")

    def private_resolver(netns: list[str], *argv: str) -> list[str]:
        command = " ".join(argv)
        return [
            *netns,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount --bind {resolv} /etc/resolv.conf && exec {command}",
        ]

    processes = [
        subprocess.Popen(
            private_resolver(mda_netns, "dovecot", "-F", "-c", str(base / "dovecot/dovecot.conf"))
        ),
    ]
    try:
        subprocess.run(
            [*mta_netns, "postfix", "-c", str(base / "postfix"), "post-install", "create-missing"],
            check=True,
            capture_output=True,
        )
        master = ("/usr/lib/postfix/sbin/master", "-c", str(base / "postfix"), "-s")
        processes.append(subprocess.Popen(private_resolver(mta_netns, *master)))
    except (OSError, subprocess.CalledProcessError):
        stop_all(processes)
        raise
    time.sleep(2)
    return processes, base / "mail/example.com", port


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument(
        "--postconf",
        action="append",
        default=[],
        help="'name = value' replacing or added to main.cf for the stack's runs (to try a setting)",
    )
    parser.add_argument(
        "--doveconf",
        action="append",
        default=[],
        help="a line added to dovecot.conf for the stack's runs (to try a setting)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        help=f"a configuration not to run ({', '.join(MAILBOXES)})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of each configuration, taken in turn; the median rate is reported",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 1
    # A SIGTERM (timeout, kill) still stops the stack and removes the networks: see finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    workdir = Path(tempfile.mkdtemp(prefix="mailstack-bench-"))
    os.chmod(workdir, 0o755)
    internet = Internet(workdir)
    internet.start()
    results: dict[str, Any] = {}
    up: Up | None = None
    minimal: list[subprocess.Popen[bytes]] = []
    network: Network | None = None
    try:
        internet.start_dns(sender_zone(internet))
        inputs = workdir / "inputs.yaml"
        inputs.write_text(yaml.safe_dump_all(domain_documents(internet.ip, args.rounds)))
        up = Up(workdir, inputs, internet.host_ip, 30000)
        results["first_start_s"] = up.start()  # cold: rspamd compiles its regexp cache
        up.stop()
        results["warm_start_s"] = up.start()
        time.sleep(10)  # idle: let rspamd settle after start
        assert up.process is not None
        # What runs in the pods' containers (agents and daemons), as in a cluster ...
        pods = pss_by_program(
            [up.process.pid], skip=("mailstack up", "unshare", "mailstack.local.container")
        )
        results["idle_pss_mb"] = sum(pods.values()) / 1e6
        results["idle_pss"] = pods
        # ... and with the local runtime's own processes (the supervisor, one init per container).
        results["idle_pss_local_mb"] = sum(pss_by_program([up.process.pid]).values()) / 1e6
        warm = min(200, args.messages)
        # The stack's processes, and the "internet" (BIND answering the stack's DNS queries).
        stack = [up.process.pid, *(p.pid for p in internet.processes)]
        # The minimal pairs run side by side with the stack (idle while another is measured).
        network = Network(run_id_for(workdir), choose_subnet(run_id_for(workdir)))
        network.setup_bridge()
        places: dict[str, tuple[list[int], int, Path]] = {
            "with_rspamd": (stack, 30025, up.mail_root()),
            "without_rspamd": (stack, 30025, up.mail_root()),
        }
        for name, pods_network in (("minimal", None), ("minimal_pods", network)):
            processes, mail_root, port = minimal_pair(workdir, internet, pods_network)
            minimal += processes
            roots = [*(p.pid for p in processes), *(p.pid for p in internet.processes)]
            places[name] = (roots, port, mail_root)
        if args.doveconf:
            up.override_dovecot(tuple(args.doveconf))
        names = [n for n in MAILBOXES if n not in args.skip]
        rates: dict[str, list[float]] = {n: [] for n in names}
        results["cpu"] = {n: ({}, 0.0) for n in names}
        for round_number in range(1, args.rounds + 1):
            for name in names:
                if name in ("with_rspamd", "without_rspamd"):
                    up.override_main_cf(tuple(args.postconf), milter=name == "with_rspamd")
                roots, port, mail_root = places[name]
                user = f"{MAILBOXES[name]}{round_number}"
                maildir = mail_root / user / "Maildir"
                feed(internet.host_ip, port, warm, args.connections, user, maildir)
                run = functools.partial(
                    feed, internet.host_ip, port, args.messages, args.connections, user, maildir
                )
                seconds, costs, busy = profile(roots, run)
                rates[name].append(args.messages / seconds)
                total, total_busy = results["cpu"][name]
                for program, cost in costs.items():
                    total[program] = total.get(program, 0.0) + cost / args.rounds
                results["cpu"][name] = (total, total_busy + busy / args.rounds)
                print(f"round {round_number} {name}: {rates[name][-1]:.0f} msg/s", flush=True)
        for name, values in rates.items():
            results[name] = statistics.median(values)
        results["rates"] = rates
        results["rounds"] = args.rounds
    finally:
        stop_all(minimal)
        if up is not None:
            up.stop()
        if network is not None:
            network.teardown()
        internet.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for name, (costs, busy) in results["cpu"].items():
        per_message = {k: v * 1000 / args.messages for k, v in costs.items()}
        top = sorted(per_message.items(), key=lambda kv: -kv[1])
        print(
            f"{name}: machine {busy * 1000 / args.messages:.2f} ms/msg; "
            + ", ".join(f"{k} {v:.2f}" for k, v in top[:14]),
            flush=True,
        )
    report = render_report(results, args.messages, args.connections)
    print(report)
    if args.write:
        write_section(ROOT / "docs" / "benchmarks.md", "Mail path", report)
    return 0


def render_report(results: dict[str, Any], messages: int, connections: int) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    minimal, pods = results["minimal"], results.get("minimal_pods")

    def rate(name: str) -> str:
        if name not in results:
            return "not run | | "
        versus_pods = f"{results[name] / pods:.2f}×" if pods else "not run"
        return f"{results[name]:.0f} | {results[name] / minimal:.2f}× | {versus_pods}"

    idle = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sorted(results["idle_pss"].items()))
    rounds = "; ".join(
        f"{name} {', '.join(f'{r:.0f}' for r in values)}"
        for name, values in results["rates"].items()
    )
    return textwrap.dedent(f"""\
        Measured by `bench/mailpath.py` on {time.strftime("%Y-%m-%d")}: {os.cpu_count()} cores
        ({cpu}), Debian {Path("/etc/debian_version").read_text().strip()}, Python
        {platform.python_version()}. {messages} messages of 2 KB from `smtp-source` over
        {connections} connections, counted as files in the Maildir. Each configuration
        delivers into a fresh mailbox in each round, warmed with {min(200, messages)} messages.
        The configurations run side by side and are measured in turn, {results["rounds"]} rounds;
        the rates are the medians (every round's rate is listed below the table).

        The hand-minimal pair runs twice: on the host with LMTP on a unix socket, and laid out
        as the stack's pods are (Postfix and Dovecot each in a network namespace on a bridge,
        LMTP over TCP, port 25 published by DNAT), which is what any two-pod deployment pays.

        | configuration | msg/s | vs minimal on the host | vs minimal as pods | target |
        |---|---|---|---|---|
        | hand-minimal Postfix → LMTP → Dovecot, on the host | {minimal:.0f} | 1.00× | | |
        | the same minimal pair, as pods | {rate("minimal_pods")} | |
        | rendered stack, milter off | {rate("without_rspamd")} | ≥ 0.95× |
        | rendered stack with rspamd | {rate("with_rspamd")} | ≥ 0.5× |

        Every round (msg/s): {rounds}

        | measure | value | target |
        |---|---|---|
        | idle memory of the stack (PSS of the pods' containers: agents + daemons) | {results["idle_pss_mb"]:.0f} MB | ≤ 150 MB |
        | the same plus `mailstack up`'s own processes (supervisor, container inits) | {results["idle_pss_local_mb"]:.0f} MB | |
        | `mailstack up` ready, first start (rspamd compiles its cache) | {results["first_start_s"]:.1f} s | |
        | `mailstack up` ready, rspamd cache warm | {results["warm_start_s"]:.1f} s | ≤ 5 s |

        Where the time goes: CPU milliseconds per message, by program, averaged over the rounds
        (processes counted with the children they reaped, so `master` includes Postfix's
        short-lived workers such as smtpd and cleanup; `named` is the test DNS server answering
        the stack's lookups). "machine" is all busy CPU time on the machine over the run, kernel
        networking and `smtp-source` included; on 2 cores, 2000 / (ms per message) is the ceiling.

        {cpu_table(results["cpu"], messages)}
        idle memory by program (MB of PSS): {idle}
        """)


def cpu_table(cpu: dict[str, tuple[dict[str, float], float]], messages: int) -> str:
    names = ["minimal", "minimal_pods", "without_rspamd", "with_rspamd"]
    present = [n for n in names if n in cpu]
    programs: dict[str, float] = {}
    for name in present:
        for program, seconds in cpu[name][0].items():
            programs[program] = max(programs.get(program, 0.0), seconds)
    shown = [
        p for p, s in sorted(programs.items(), key=lambda kv: -kv[1]) if s * 1000 / messages >= 0.05
    ]
    labels = {
        "minimal": "minimal",
        "minimal_pods": "minimal as pods",
        "without_rspamd": "milter off",
        "with_rspamd": "with rspamd",
    }
    header = " | ".join(labels[n] for n in present)
    lines = [f"| program | {header} |", "|---|" + "---|" * len(present)]
    for program in shown:
        cells = [f"{cpu[n][0].get(program, 0.0) * 1000 / messages:.2f}" for n in present]
        lines.append(f"| {program} | " + " | ".join(cells) + " |")
    cells = [f"{cpu[n][1] * 1000 / messages:.2f}" for n in present]
    lines.append("| **machine** | " + " | ".join(cells) + " |")
    return "\n        ".join(lines) + "\n"


def write_section(path: Path, title: str, body: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"## {title}\n\n{body}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
