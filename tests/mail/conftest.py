"""The mail path end to end: ``mailstack up`` with real Postfix, Dovecot and rspamd.

One stack per test session (it takes ~10-20 s to come up): a MailDomain for example.com with
Mailboxes covering the features under test, DNS served by BIND in the test's "internet" network
namespace, and an SMTP sink there standing for remote servers and the smarthost. The smarthost is
``smtp.example.net`` with credentials and a CA of the test's own (``relay_pki``): all outbound
mail goes over TLS that Postfix verifies, with a login.
"""

from __future__ import annotations

import email
import functools
import imaplib
import json
import os
import poplib
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import dns.resolver
import pytest
import yaml

from mailstack.local.network import ports_in_use
from mailstack.material.pki import (
    CertificateAuthority,
    ServerCertificate,
    generate_ca,
    issue_server_certificate,
)
from tests.mail.internet import ROOT, Internet, client_addresses, client_network
from tests.mail.messages import MDA, SENDER

HOSTNAME = "mail.example.com"
PASSWORDS = {
    "alice": "alice-secret-password",
    "bob": "bob-secret-password",
    "carol": "carol-secret-password",
    "dave": "dave-secret-password",
    "erin": "erin-secret-password",
    "grace": "grace-secret-password",
}
# The smarthost: a name in the test internet's DNS, a certificate for it from the test's own CA
# (standing for a public one), and the login it takes.
RELAY_HOST = "smtp.example.net"
RELAY_USER = "example-com"
RELAY_PASSWORD = "relay-secret-password"
# Where `mailstack up` puts the pod bridge, so where the host's clients come from (the internet
# namespace is outside it).
BRIDGE_NETWORK = "10.192.0.0/10"
# The DNS list the test stack's postscreen asks (served by the internet's BIND), and the roles
# of the internet's further client addresses (tests/mail/test_postscreen.py): each is a new
# client once, and postscreen remembers the ones that pass.
DNSBL_ZONE = "dnsbl.test"
DNSBL_ANSWER = "127.0.0.2"


@dataclass(frozen=True)
class PostscreenClients:
    allowed: str  # in spec.postscreen.allowNetworks
    listed: str  # in the DNS list
    clean: str
    pregreeting: str

    @classmethod
    def of(cls, internet_ip: str) -> PostscreenClients:
        return cls(*client_addresses(internet_ip))


def dnsbl_zone(internet_ip: str) -> str:
    """The DNS list's records: the listed client's reversed address (and the test entry that
    lists conventionally carry, 127.0.0.2)."""
    reversed_listed = ".".join(reversed(PostscreenClients.of(internet_ip).listed.split(".")))
    return (
        f"{reversed_listed}.{DNSBL_ZONE}. 300 IN A {DNSBL_ANSWER}\n"
        f"2.0.0.127.{DNSBL_ZONE}. 300 IN A {DNSBL_ANSWER}\n"
    )


ERIN_SIEVE = """require ["fileinto", "mailbox"];
if header :contains "Subject" "[proj]" {
  fileinto :create "Projects";
}
"""


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the mail path tests need root (network namespaces)")


@dataclass(frozen=True)
class RelayPki:
    ca: CertificateAuthority
    server: ServerCertificate  # for RELAY_HOST
    other: ServerCertificate  # from the same CA, for another name
    impostor: ServerCertificate  # for RELAY_HOST, from a CA the MailDomain does not name


@functools.cache
def relay_pki() -> RelayPki:
    """The smarthost's CA and certificates, the same for the whole session."""
    now = datetime.now(UTC)
    ca = generate_ca("mailstack test relay CA", now)
    return RelayPki(
        ca=ca,
        server=issue_server_certificate(ca, [RELAY_HOST], now),
        other=issue_server_certificate(ca, ["other.example.net"], now),
        impostor=issue_server_certificate(generate_ca("impostor CA", now), [RELAY_HOST], now),
    )


def serve_relay_certificate(folder: Path, certificate: ServerCertificate) -> None:
    """The certificate the sink presents from its next STARTTLS on (see tests.mail.sink)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("key.pem", certificate.key_pem), ("cert.pem", certificate.cert_pem)):
        tmp = folder / f"{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, folder / name)


def stack_documents(
    internet_ip: str, extra_domain_spec: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {
        "domain": "example.com",
        "hostname": HOSTNAME,
        "aliases": {"sales": ["alice", "bob"]},
        "postmaster": "alice@example.com",
        # The host's clients (every test but those in the internet namespace) come from the
        # pod bridge, in 10.192.0.0/10: exempt from the per-client SMTP limits, as a cluster's
        # own network would be, so that the many sessions of the tests are not throttled. The
        # internet namespace is held to the limits (tests/mail/test_hostile.py).
        "limits": {"messageSize": "10Mi", "perClient": {"exemptNetworks": [BRIDGE_NETWORK]}},
        "protocols": {"managesieve": True},
        "relay": {
            "host": RELAY_HOST,
            "port": 2525,
            "credentialsSecretRef": {"name": "relay-credentials"},
            "caSecretRef": {"name": "relay-ca"},
        },
        "resolvers": [internet_ip],
        # postscreen asks the test internet's DNS list; one client address skips its tests.
        "postscreen": {
            "dnsbl": {"sites": [{"name": DNSBL_ZONE, "filter": DNSBL_ANSWER}]},
            "allowNetworks": [PostscreenClients.of(internet_ip).allowed],
        },
        "dkim": {"selector": "test"},
        "dns": {"addresses": {"ipv4": [internet_ip]}},
    }
    spec.update(extra_domain_spec or {})
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "mailstack.dev/v1alpha1",
            "kind": "MailDomain",
            "metadata": {"name": "example-com", "namespace": "mail"},
            "spec": spec,
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "relay-credentials",
                "namespace": "mail",
                "labels": {"mailstack.dev/usable-by": "maildomains"},
            },
            "stringData": {"username": RELAY_USER, "password": RELAY_PASSWORD},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "relay-ca",
                "namespace": "mail",
                "labels": {"mailstack.dev/usable-by": "maildomains"},
            },
            "stringData": {"ca.crt": relay_pki().ca.cert_pem},
        },
    ]
    boxes: dict[str, dict[str, Any]] = {
        "alice": {},
        "bob": {"forwardTo": ["bob@example.net"], "keepCopy": True},
        "carol": {"forwardTo": ["carol@example.net"]},
        "dave": {"quota": "1Mi"},
        "erin": {"sieve": ERIN_SIEVE},
        "grace": {"quota": "50Mi"},
    }
    for name, extra in boxes.items():
        docs.append(
            {
                "apiVersion": "mailstack.dev/v1alpha1",
                "kind": "Mailbox",
                "metadata": {"name": name, "namespace": "mail"},
                "spec": {
                    "address": f"{name}@example.com",
                    "passwordSecretRef": {"name": f"{name}-password"},
                    **extra,
                },
            }
        )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": f"{name}-password",
                    "namespace": "mail",
                    "labels": {"mailstack.dev/usable-by": "mailboxes"},
                },
                "stringData": {"password": PASSWORDS[name]},
            }
        )
    return docs


@dataclass
class Stack:
    workdir: Path
    state: Path
    inputs: Path
    internet: Internet
    offset: int
    process: subprocess.Popen[bytes] | None = None
    masked_ip: str = ""  # the internet's address in the stack's cluster pod range

    # --- connections ------------------------------------------------------------------------

    def port(self, name: str) -> int:
        standard = {
            "smtp": 25,
            "submission": 587,
            "submissions": 465,
            "imap": 143,
            "imaps": 993,
            "pop3": 110,
            "pop3s": 995,
            "sieve": 4190,
        }
        return standard[name] + self.offset

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.state / "ca.crt"))
        return context

    def smtp(self, name: str = "smtp", starttls: bool = True) -> smtplib.SMTP:
        if name == "submissions":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                "127.0.0.1", self.port(name), context=self._named_context(), timeout=30
            )
            conn._host = HOSTNAME  # type: ignore[attr-defined]
        else:
            conn = smtplib.SMTP("127.0.0.1", self.port(name), timeout=30)
            conn._host = HOSTNAME  # type: ignore[attr-defined]
        conn.ehlo("client.example.net")
        if starttls and name != "submissions":
            conn.starttls(context=self.tls_context())
            conn.ehlo("client.example.net")
        return conn

    def imap(self, user: str, tls: str = "imaps") -> imaplib.IMAP4:
        if tls == "imaps":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                "127.0.0.1", self.port("imaps"), ssl_context=self._named_context(), timeout=30
            )
        else:
            conn = imaplib.IMAP4("127.0.0.1", self.port("imap"), timeout=30)
            conn.starttls(ssl_context=self._named_context())
        conn.login(f"{user}@example.com", PASSWORDS[user])
        return conn

    def pop3(self, user: str, implicit: bool = True) -> poplib.POP3:
        if implicit:
            conn: poplib.POP3 = poplib.POP3_SSL(
                "127.0.0.1", self.port("pop3s"), context=self._named_context(), timeout=30
            )
        else:
            conn = poplib.POP3("127.0.0.1", self.port("pop3"), timeout=30)
            conn.stls(context=self._named_context())
        conn.user(f"{user}@example.com")
        conn.pass_(PASSWORDS[user])
        return conn

    def _named_context(self) -> ssl.SSLContext:
        # Clients connect to 127.0.0.1 but must check the certificate against the mail hostname.
        context = self.tls_context()
        original = context.wrap_socket

        def wrap(sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
            kwargs["server_hostname"] = HOSTNAME
            return original(sock, *args, **kwargs)

        context.wrap_socket = wrap  # type: ignore[method-assign]
        return context

    # --- what the mailbox and the world see ---------------------------------------------------

    def maildir(self, user: str, folder: str = "") -> Path:
        base = self.state / "volumes" / "mail" / f"mail-{MDA}" / "example.com" / user
        base = base / "Maildir"
        return base / f".{folder}" if folder else base

    def messages(self, user: str, folder: str = "") -> list[Message]:
        root = self.maildir(user, folder)
        found = []
        for sub in ("new", "cur"):
            directory = root / sub
            if directory.is_dir():
                for path in sorted(directory.iterdir()):
                    found.append(email.message_from_bytes(path.read_bytes()))
        return found

    def raw_messages(self, user: str, folder: str = "") -> list[bytes]:
        root = self.maildir(user, folder)
        return [
            path.read_bytes()
            for sub in ("new", "cur")
            if (root / sub).is_dir()
            for path in sorted((root / sub).iterdir())
        ]

    def sink_messages(self) -> list[Message]:
        return [
            email.message_from_bytes(path.read_bytes())
            for path in sorted(self.internet.sink_dir.glob("*.eml"))
        ]

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_for_subject(
        self, user: str, subject: str, folder: str = "", timeout: float = 30
    ) -> Message:
        def find() -> Message | None:
            return next((m for m in self.messages(user, folder) if m["Subject"] == subject), None)

        return self.wait_for(f"{subject!r} in {user}/{folder or 'INBOX'}", find, timeout)  # type: ignore[no-any-return]

    def wait_for_sink(self, predicate: Callable[[Message], bool], timeout: float = 30) -> Message:
        def find() -> Message | None:
            return next((m for m in self.sink_messages() if predicate(m)), None)

        return self.wait_for("a message at the remote server", find, timeout)  # type: ignore[no-any-return]

    def log(self, pod: str, container: str) -> str:
        path = self.state / "logs" / f"mail_{pod}_{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- changing the running stack ------------------------------------------------------------

    def write_inputs(self, documents: list[dict[str, Any]]) -> None:
        text = yaml.safe_dump_all(documents, sort_keys=False)
        tmp = self.inputs.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.inputs)

    def rerender(self, timeout: float = 60) -> None:
        """Ask ``up`` to re-render now and wait until it did."""
        marker = self.state / "rendered"
        before = marker.stat().st_mtime if marker.exists() else 0.0
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)
        self.wait_for(
            "re-render", lambda: marker.exists() and marker.stat().st_mtime > before, timeout
        )

    def daemon_pids(self) -> dict[str, set[int]]:
        """Host PIDs of this stack's daemons' main processes, by name."""
        return self.own_daemon_pids()

    # --- SMTP/TLS test helpers ------------------------------------------------------------------

    def sink_raw_messages(self) -> list[bytes]:
        """The messages at the remote server as stored bytes (``X-Sink-*`` envelope lines first)."""
        return [path.read_bytes() for path in sorted(self.internet.sink_dir.glob("*.eml"))]

    def wait_for_log(self, pod: str, container: str, *needles: str, timeout: float = 30) -> str:
        """The first line of a container's log that contains every one of ``needles``."""

        def find() -> str | None:
            lines = self.log(pod, container).splitlines()
            return next((ln for ln in lines if all(n in ln for n in needles)), None)

        return self.wait_for(f"{needles!r} in the {pod}/{container} log", find, timeout)  # type: ignore[no-any-return]

    def run_in_internet(self, script: str, *args: str, timeout: float = 60) -> str:
        """Run a Python script in the internet namespace (a genuinely remote client); its stdout."""
        result = self.internet.run(sys.executable, "-c", script, *args, timeout=timeout)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    # --- this stack's processes (other stacks may run on the same host) -------------------------

    def own_processes(self) -> dict[int, str]:
        """PID -> command line of every process below this stack's ``mailstack up``."""
        return {pid: cmd for pid, (_, cmd) in self.own_process_tree().items()}

    def own_process_tree(self) -> dict[int, tuple[int, str]]:
        """PID -> (parent PID, command line) of every process below this stack's ``up``."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        assert self.process is not None
        found: dict[int, tuple[int, str]] = {}
        todo = [self.process.pid]
        while todo:
            parent = todo.pop()
            for child in children.get(parent, []):
                try:
                    raw = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                found[child] = (parent, raw.replace(b"\0", b" ").decode(errors="replace").strip())
                todo.append(child)
        return found

    def own_daemon_pids(self) -> dict[str, set[int]]:
        """Like ``daemon_pids``, limited to this stack's daemons."""
        # rspamd retitles its main process ("rspamd: main process; ..."): "rspamd -f" is gone.
        patterns = {
            "postfix": ("postfix/sbin/master",),
            "dovecot": ("dovecot -F",),
            "rspamd": ("rspamd -f", "rspamd: main process"),
        }
        own = self.own_process_tree()
        found = {
            name: {pid for pid, (_, cmd) in own.items() if any(p in cmd for p in options)}
            for name, options in patterns.items()
        }
        # A daemon's child between fork and exec still carries its parent's command line (the
        # Postfix master spawning an lmtp client, say): only the topmost match is the daemon.
        return {name: {p for p in pids if own[p][0] not in pids} for name, pids in found.items()}

    def in_container(
        self, daemon: str, *argv: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the mount and network namespaces of this stack's ``daemon``."""
        pids = self.own_daemon_pids()[daemon]
        assert len(pids) == 1, f"expected one {daemon} main process, found {pids}"
        return subprocess.run(
            ["nsenter", "-t", str(pids.pop()), "-m", "-n", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def postfix_queue(self) -> list[dict[str, Any]]:
        """The Postfix queue as ``postqueue -j`` reports it (one dict per message)."""
        result = self.in_container("postfix", "postqueue", "-c", "/etc/mailstack/postfix", "-j")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def flush_queue(self) -> None:
        """``postqueue -f``: retry every deferred message now (and forget dead destinations)."""
        result = self.in_container("postfix", "postqueue", "-c", "/etc/mailstack/postfix", "-f")
        assert result.returncode == 0, result.stderr

    def send_from_internet(self, to: str, raw: bytes, sender: str = SENDER) -> str:
        """Deliver as example.net's MTA would (its SPF-authorised address, a HELO that resolves,
        STARTTLS): inbound mail that is not spam by its origin. Returns the Postfix queue id."""
        result = subprocess.run(
            [
                *("ip", "netns", "exec", self.internet.netns, sys.executable, "-c"),
                *(_INTERNET_CLIENT, self.internet.host_ip, str(self.port("smtp")), sender, to),
            ],
            input=raw,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
        return result.stdout.decode().strip()


_INTERNET_CLIENT = r"""
import re, smtplib, ssl, sys
host, port, sender, rcpt = sys.argv[1:5]
raw = sys.stdin.buffer.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
with smtplib.SMTP(host, int(port), local_hostname="sink.example.net", timeout=30) as smtp:
    smtp.starttls(context=ssl._create_unverified_context())
    smtp.ehlo("sink.example.net")
    smtp.mail(sender)
    code, text = smtp.rcpt(rcpt)
    assert code == 250, (code, text)
    code, text = smtp.data(raw)
    assert code == 250, (code, text)
print(re.search(rb"queued as ([0-9A-Za-z]+)", text).group(1).decode())
"""


def txt_lookup(server: str) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc``: TXT records from the given DNS server (names arrive as bytes)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server]

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(next(iter(answer)).strings)

    return lookup


def without_sink_envelope(raw: bytes) -> bytes:
    """The message as sent over the wire: without the sink's ``X-Sink-*`` envelope lines."""
    lines = raw.split(b"\n")
    while lines and lines[0].startswith(b"X-Sink-"):
        lines.pop(0)
    return b"\n".join(lines)


# Python source for probes run in a pod's namespaces: ``client_context(cert, key)``, a TLS
# client context that verifies nothing and shows the certificate and key given as PEM (none
# when ``cert`` is empty).
CLIENT_CONTEXT_SOURCE = """
import os, ssl, tempfile
def client_context(cert, key):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert:
        folder = tempfile.mkdtemp()
        paths = [os.path.join(folder, n) for n in ("c.pem", "k.pem")]
        for path, pem in zip(paths, (cert, key)):
            open(path, "w").write(pem)
        context.load_cert_chain(*paths)
    return context
"""

# Python source for SMTP scripts run in the internet namespace: ``reply()`` reads one (multi-line)
# reply from the global ``stream`` (a list of lines; empty when the server closed), ``command``
# sends a line on the global ``sock`` and reads the reply.
SMTP_REPLY_SOURCE = r"""
def reply():
    lines = []
    while True:
        line = stream.readline()
        if not line:
            return lines
        lines.append(line.decode(errors="replace").rstrip())
        if line[3:4] != b"-":
            return lines

def command(text):
    sock.sendall(text.encode() + b"\r\n")
    return reply()
"""

# The GTUBE test string: every spam filter must reject it (rspamd: reject action).
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def free_port_offset() -> int:
    """A port offset whose published ports no other stack on this host DNATs already and no
    socket holds (an outgoing connection's local port, which `mailstack up` would refuse)."""
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    taken = {int(port) for port in re.findall(r"tcp dport (\d+)", ruleset)}
    standard = (25, 465, 587, 143, 993, 110, 995, 4190)
    for _ in range(200):
        offset = 20000 + secrets.randbelow(400) * 100
        ports = [port + offset for port in standard]
        if not set(ports) & taken and not ports_in_use(["127.0.0.1"], ports):
            return offset
    raise RuntimeError("no free port offset")


def _zone_for(domain: str, zone_text: str) -> str:
    lines = []
    for line in zone_text.splitlines():
        if not line or line.startswith(";"):
            continue
        owner = line.split("\t", 1)[0]
        if owner == f"{domain}." or owner.endswith(f".{domain}."):
            lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from start_stack(tmp_path_factory)


def start_stack(
    tmp_path_factory: pytest.TempPathFactory,
    extra_domain_spec: dict[str, Any] | None = None,
    name: str = "mailpath",
) -> Iterator[Stack]:
    """A running stack (``stack_documents`` with ``extra_domain_spec``) until the generator is
    closed: the body of the ``stack`` fixture, for fixtures of stacks set up otherwise."""
    _needs_root()
    for tool in ("postfix", "dovecot", "rspamd", "named", "nft"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.fail(f"{tool} is not installed: run ./scripts/setup.sh")
    workdir = tmp_path_factory.mktemp(name)
    os.chmod(workdir, 0o755)
    # The pods' /etc shows a copy of the host's, which tests may change as host tools change
    # /etc (test_isolation.py); the real /etc is never touched.
    host_etc = workdir / "host-etc"
    subprocess.run(["cp", "-a", "/etc", str(host_etc)], check=True)
    internet = Internet(workdir)
    internet.start()
    offset = free_port_offset()
    state = workdir / "state"
    inputs = workdir / "inputs.yaml"
    result = Stack(workdir, state, inputs, internet, offset)
    try:
        result.write_inputs(stack_documents(internet.ip, extra_domain_spec))
        # The cluster's pod range, for the tripwire (test_tripwire.py): one address of the
        # internet namespace, which its other clients do not use.
        result.masked_ip = internet.add_masked_address()
        networks = json.dumps({"pods": [f"{result.masked_ip}/32"]})
        env = {
            **os.environ,
            "MAILSTACK_UP_QUIET": "1",
            "MAILSTACK_UP_HOST_ETC": str(host_etc),
            "PYTHONPATH": str(ROOT / "operator"),
        }
        render = subprocess.run(
            [sys.executable, "-m", "mailstack", "render", "-f", str(inputs), "--state", str(state)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert render.returncode == 0, render.stderr
        zone = (state / "records.zone").read_text()
        internet.start_dns(
            {
                "example.com": _zone_for("example.com", zone),
                "example.net": (
                    "example.net. 300 IN MX 10 sink.example.net.\n"
                    f"sink.example.net. 300 IN A {internet.ip}\n"
                    f"{RELAY_HOST}. 300 IN A {internet.ip}\n"
                    # The host's clients reach the pods from a bridge in BRIDGE_NETWORK; the
                    # internet's further client addresses send as example.net too.
                    f'example.net. 300 IN TXT "v=spf1 ip4:{internet.ip} ip4:{BRIDGE_NETWORK}'
                    f' ip4:{client_network(internet.ip)} -all"\n'
                ),
                DNSBL_ZONE: dnsbl_zone(internet.ip),
                # A domain that asks receivers to refuse mail failing DMARC, and sends none.
                "strict.example": (
                    'strict.example. 300 IN TXT "v=spf1 -all"\n'
                    '_dmarc.strict.example. 300 IN TXT "v=DMARC1; p=reject"\n'
                ),
            }
        )
        serve_relay_certificate(workdir / "relay-tls", relay_pki().server)
        internet.start_sink(2525, tls=workdir / "relay-tls", login=f"{RELAY_USER}:{RELAY_PASSWORD}")
        log = open(workdir / "up.log", "ab")  # noqa: SIM115
        result.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailstack",
                "up",
                "-f",
                str(inputs),
                "--state",
                str(state),
                "--listen",
                "127.0.0.1",
                "--listen",
                internet.host_ip,
                "--port-offset",
                str(offset),
                "--cluster-networks",
                networks,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 240
        while not (state / "ready").exists():
            if result.process.poll() is not None:
                raise AssertionError(
                    "mailstack up exited:\n" + (workdir / "up.log").read_text()[-3000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    "mailstack up not ready:\n" + (workdir / "up.log").read_text()[-3000:]
                )
            time.sleep(0.3)
        assert (state / "ready").read_text() == "ready\n", (workdir / "up.log").read_text()[-3000:]
        yield result
    finally:
        if result.process is not None:
            stop_up(result.process)
        internet.stop()


def stop_up(process: subprocess.Popen[bytes]) -> None:
    """Stop a ``mailstack up`` (SIGTERM, then SIGKILL after 120 s) and wait for it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LineSocket:
    """A protocol client on a raw socket (for IDLE and ManageSieve, which the stdlib lacks)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\r\n")

    def readline(self, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete line within {timeout} s: {self.buffer!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError(f"connection closed; pending {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def until(self, prefix: bytes, timeout: float = 15) -> list[bytes]:
        """Lines up to and including the first that starts with ``prefix``."""
        lines = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(deadline - time.monotonic(), 0.01))
            lines.append(line)
            if line.startswith(prefix):
                return lines

    def close(self) -> None:
        self.sock.close()


# Tests that restart or reload Dovecot run last: Postfix's smtpd processes keep their connection
# to Dovecot's auth service between sessions, and the first AUTH after Dovecot restarted gets a
# 454 (temporary failure, as a real client would see once). Running them last keeps the other
# tests' expectations exact.
_DISRUPTIVE = (
    "test_antivirus.py",
    "test_reload.py",
    "test_mail_waits_in_the_queue_while_dovecot_is_down",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        # The Dovecot restart comes after the reloads, which log in again.
        return next((i + 1 for i, m in enumerate(_DISRUPTIVE) if m in item.nodeid), 0)

    items.sort(key=rank)  # stable: the rest keep their order
