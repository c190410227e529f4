"""What the agent knows about each daemon: how to prepare, start, reload and probe it.

Paths come from ``render.layout``, the same module the renderer uses for the mounts, so the agent
and the rendered pod specs cannot disagree. Each ``Daemon`` is plain data plus small functions;
the supervisor loop in ``agent.supervisor`` is daemon-agnostic.
"""

from __future__ import annotations

import _socket  # not socket: see mailstack.agent.health
import grp
import os
import pwd
import sys
import time

from mailstack.agent.milter_probe import probe_milter_progress
from mailstack.agent.next_hops import probe_next_hops
from mailstack.agent.processes import run, which
from mailstack.render import layout

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"
DOVECOT_CONF = f"{layout.DOVECOT_CONFIG_DIR}/dovecot.conf"
# How long a probe request waits for the probe scan's verdict: under the kubelet's probe timeout
# (5 s, render.containers), far above the few milliseconds a small message takes when idle.
MILTER_PROBE_SECONDS = 3.0
# How long the probe scan may wait for its verdict before rspamd counts as wedged: a busy proxy
# takes the probe's session after the heavy messages it is parsing, each bounded near the scan
# timeout (render.rspamd.SCAN_TIMEOUT_SECONDS, 8 s), so several of them in a row still pass.
MILTER_PROBE_DEADLINE = 60.0
# Postfix ignores a main.cf younger than this; a freshly mounted ConfigMap must age first.
POSTFIX_CONFIG_MIN_AGE = 2.1


class AgentError(Exception):
    """The daemon cannot be prepared or started; the message says what is missing."""


class Daemon:
    """How to prepare, run, reload and probe one daemon. (No dataclasses and no pathlib in the
    agent's modules: the agent runs beside every daemon, and they would cost each agent process
    about 2 MB for nothing it needs.)"""

    def __init__(
        self,
        *,
        name: str,
        command: list[str],
        watched: list[str],
        prepare: Callable[[], None],
        reload: Callable[[int], None],  # called with the daemon's pid
        probes: list[Callable[[], str | None]] | None = None,  # a probe returns None = healthy
        readiness: list[Callable[[], str | None]] | None = None,  # /readyz only (agent.health)
        stop_signal: int = 15,
        housekeeping: list[list[str]] | None = None,  # run daily, in order (agent.housekeeping)
        tunnels: bool = False,  # agent.tunnel.open_tunnels(name), after prepare
        tripwire: bool = False,  # agent.tripwire's policy service, with the tunnels
        auth_policy: bool = False,  # agent.auth_policy's service for Dovecot, with the tunnels
    ) -> None:
        self.name = name
        self.command = command
        self.watched = watched
        self.prepare = prepare
        self.reload = reload
        self.probes = probes or []
        self.readiness = readiness or []
        self.stop_signal = stop_signal
        self.housekeeping = housekeeping or []
        self.tunnels = tunnels
        self.tripwire = tripwire
        self.auth_policy = auth_policy


def _require(binary: str, package: str) -> str:
    path = which(binary)
    if path is None:
        raise AgentError(f"{binary} not found: install the Debian package {package}")
    return path


def _ids(user: str, group: str | None = None) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise AgentError(f"user {user} does not exist (is its Debian package installed?)") from None
    gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    return entry.pw_uid, gid


def _directory(path: str, uid: int = 0, gid: int = 0, mode: int = 0o755) -> None:
    """The folder, with owner and mode when the agent runs as root. Not as root, a
    folder it does not own must be writable as the volume gave it: an emptyDir, or a subPath
    the kubelet made with the volume's mode and fsGroup."""
    os.makedirs(path, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    elif os.stat(path).st_uid == os.geteuid():
        os.chmod(path, mode)
    elif not os.access(path, os.W_OK | os.X_OK):
        raise AgentError(f"{path} is not writable for uid {os.geteuid()}: check the volume")


def probe_banner(
    port: int | str, prefix: bytes, host: str = "127.0.0.1"
) -> Callable[[], str | None]:
    """Healthy when something on the port (or the unix socket at that path) greets with the
    given prefix within 3 s."""

    def probe() -> str | None:
        # A numeric address and a plain connect: socket.create_connection would resolve it
        # with getaddrinfo, which loads glibc's NSS machinery into the agent (~0.5 MB).
        family = _socket.AF_UNIX if isinstance(port, str) else _socket.AF_INET
        conn = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            conn.settimeout(3)
            conn.connect(port if isinstance(port, str) else (host, port))
            greeting = conn.recv(512)
        except OSError as err:
            return f"port {port}: {err}"
        finally:
            conn.close()
        if not greeting.startswith(prefix):
            return f"port {port}: unexpected greeting {greeting[:40]!r}"
        return None

    return probe


def wait_for_config_age(directory: str, minimum: float = POSTFIX_CONFIG_MIN_AGE) -> None:
    """Sleep until every file in the directory is at least ``minimum`` seconds old."""
    with os.scandir(directory) as entries:
        newest = max((e.stat().st_mtime for e in entries if e.is_file()), default=0.0)
    delay = newest + minimum - time.time()
    if delay > 0:
        time.sleep(min(delay, minimum))


# --- Postfix ------------------------------------------------------------------------------------


def _prepare_postfix() -> None:
    postfix = _require("postfix", "postfix")
    _require(POSTFIX_MASTER, "postfix")
    uid, gid = _ids("postfix")
    _directory(layout.QUEUE_DIR, 0, 0, 0o755)
    _directory(layout.POSTFIX_DATA_DIR, uid, gid, 0o700)
    _directory(layout.POSTSCREEN_DIR, uid, gid, 0o700)
    _directory(layout.POLICY_SOCKET_DIR, 0, 0, 0o755)
    wait_for_config_age(layout.POSTFIX_CONFIG_DIR)
    run([postfix, "-c", layout.POSTFIX_CONFIG_DIR, "post-install", "create-missing"], check=True)


def _reload_postfix(pid: int) -> None:
    wait_for_config_age(layout.POSTFIX_CONFIG_DIR)
    run(["postfix", "-c", layout.POSTFIX_CONFIG_DIR, "reload"])


def postfix() -> Daemon:
    # The loopback probe listener, not port 25: 100 sessions held on port 25 (its process
    # limit) make Postfix busy, not dead, and must neither restart it nor take the pod (587 and
    # 465 with it) out of its Services.
    alive = [probe_banner(layout.POSTFIX_PROBE_PORT, b"220 ")]
    return Daemon(
        name="postfix",
        command=[POSTFIX_MASTER, "-c", layout.POSTFIX_CONFIG_DIR, "-s"],
        watched=[
            layout.POSTFIX_CONFIG_DIR,
            layout.USERS_DIR,
            layout.TLS_DIR,
            layout.MDA_CLIENT_DIR,
            layout.MTA_CLIENT_DIR,
        ],
        prepare=_prepare_postfix,
        reload=_reload_postfix,
        probes=alive,
        # Ready only when the Service Postfix hands mail to resolves and answers.
        readiness=[probe_next_hops(f"{layout.POSTFIX_CONFIG_DIR}/main.cf")],
        tripwire=True,
    )


# --- Dovecot ------------------------------------------------------------------------------------


def _prepare_dovecot() -> None:
    """Dovecot runs as the vmail user (the container's runAsUser): its folders are emptyDirs
    and the mail volume, whose root the kubelet gives to the fsGroup."""
    _require("dovecot", "dovecot-core")
    uid, _ = _ids(layout.VMAIL_USER)
    if uid != layout.VMAIL_UID:
        raise AgentError(f"user {layout.VMAIL_USER} has uid {uid}, not {layout.VMAIL_UID}")
    _directory(layout.DOVECOT_RUN_DIR, 0, 0, 0o755)
    _directory(layout.DOVECOT_STATE_DIR, 0, 0, 0o750)
    # The volume root belongs to the kubelet (fsGroup); the Maildirs live one level down.
    _directory(f"{layout.MAIL_DIR}", 0, os.stat(layout.MAIL_DIR).st_gid, 0o2775)
    if os.geteuid() == 0:  # a pod spec of before 0.2.0 (root): the Maildirs are vmail's
        with os.scandir(layout.MAIL_DIR) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and entry.stat().st_uid != layout.VMAIL_UID:
                    os.chown(entry.path, layout.VMAIL_UID, layout.VMAIL_GID)
    from mailstack.agent.auth_policy import prepare_dovecot_auth  # only this agent: json

    _directory(layout.AUTH_POLICY_STATE_DIR, 0, 0, 0o700)  # see agent.known_hashes
    prepare_dovecot_auth()  # before doveconf: dovecot.conf reads the nonce
    code, output = run(["doveconf", "-c", DOVECOT_CONF, "-n"], capture=True)
    if code != 0:
        raise AgentError(f"dovecot.conf is not valid: {output.strip()}")
    _ensure_domain_dir()


def _ensure_domain_dir() -> None:
    """Create <mail>/<domain> for the vmail user: Dovecot creates the homes below it itself."""
    domains = set()
    if os.path.exists(layout.PASSWD_FILE):
        with open(layout.PASSWD_FILE, encoding="utf-8") as passwd:
            lines = passwd.read().splitlines()
        for line in lines:
            user = line.split(":", 1)[0]
            if "@" in user:
                domains.add(user.split("@", 1)[1])
    for name in domains:
        _directory(f"{layout.MAIL_DIR}/{name}", layout.VMAIL_UID, layout.VMAIL_GID, 0o700)


def _reload_dovecot(pid: int) -> None:
    _ensure_domain_dir()
    run(["doveadm", "-c", DOVECOT_CONF, "reload"])


def expunge_commands() -> list[list[str]]:
    """``doveadm expunge`` for every user's folders with a retention (``EXPUNGE_AFTER_DAYS``): the
    same rule as the folders' autoexpunge, which LMTP deliveries do not apply."""
    sweep = ["doveadm", "-c", DOVECOT_CONF, "expunge", "-A"]
    return [
        [*sweep, "mailbox", folder, "savedbefore", f"{days}d"]
        for folder, days in layout.EXPUNGE_AFTER_DAYS
    ]


def dovecot() -> Daemon:
    return Daemon(
        name="dovecot",
        command=["dovecot", "-F", "-c", DOVECOT_CONF],
        # Not the passwd-file nor the users' Sieve scripts: Dovecot reads them on use. A reload
        # restarts the auth service and drops Postfix's connections to it (one 454 each).
        watched=[layout.DOVECOT_CONFIG_DIR, layout.TLS_DIR, layout.MDA_CLIENT_DIR],
        prepare=_prepare_dovecot,
        reload=_reload_dovecot,
        # LMTP's socket behind the tunnel; the tunnels report themselves.
        probes=[probe_banner(layout.DOVECOT_LMTP_SOCKET, b"220 ")],
        housekeeping=expunge_commands(),
        tunnels=True,
        auth_policy=True,
    )


# --- rspamd -------------------------------------------------------------------------------------


def _prepare_rspamd() -> None:
    """rspamd runs as _rspamd (the container's runAsUser): its folders are its own or given."""
    _require("rspamd", "rspamd")
    uid, gid = os.getuid(), os.getgid()
    _directory(layout.RSPAMD_DB_DIR, uid, gid, 0o750)
    _directory(layout.RSPAMD_RUN_DIR, uid, gid, 0o750)
    # The milter socket directory is shared with Postfix, whose cleanup must reach the socket.
    _directory(layout.MILTER_DIR, uid, gid, 0o755)


def _reload_rspamd(pid: int) -> None:
    os.kill(pid, 1)  # SIGHUP: rspamd re-reads its configuration and keys


def rspamd() -> Daemon:
    return Daemon(
        name="rspamd",
        command=[
            "rspamd",
            "-f",
            "-c",
            "/etc/rspamd/rspamd.conf",
            f"--var=LOCAL_CONFDIR={layout.RSPAMD_CONFIG_DIR}",
            f"--var=DBDIR={layout.RSPAMD_DB_DIR}",
            f"--var=RUNDIR={layout.RSPAMD_RUN_DIR}",
        ],
        watched=[f"{layout.RSPAMD_CONFIG_DIR}/local.d", layout.DKIM_DIR],
        prepare=_prepare_rspamd,
        reload=_reload_rspamd,
        # What Postfix needs: a verdict through the milter socket; late (busy) is not wedged.
        # rspamd's controller (HTTP, /ping) is not run, and its /ping would not say that the
        # proxies scan. Readiness is the same: rspamd is in the MTA pod, and a busy scanner
        # taking the pod out of its Services would stop 25, 587 and 465 for everyone.
        probes=[
            probe_milter_progress(layout.MILTER_SOCKET, MILTER_PROBE_DEADLINE, MILTER_PROBE_SECONDS)
        ],
    )


# --- ClamAV (spec.spam.antivirus) ---------------------------------------------------------------

CLAMD_CONF = f"{layout.CLAMAV_CONFIG_DIR}/clamd.conf"
FRESHCLAM_CONF = f"{layout.CLAMAV_CONFIG_DIR}/freshclam.conf"
# What clamd loads from its database folder: the official (signed) databases and the kinds a
# signature URL may give (hashes, body and logical signatures, ...).
CLAMAV_DATABASES = (".cvd", ".cld", ".cud", ".hdb", ".hsb", ".mdb", ".msb", ".ndb", ".ldb", ".cdb")


def has_clamav_database(folder: str = layout.CLAMAV_DB_DIR) -> bool:
    with os.scandir(folder) as entries:
        return any(e.name.endswith(CLAMAV_DATABASES) and e.is_file() for e in entries)


def _prepare_freshclam() -> None:
    """freshclam runs as clamav (the container's runAsUser) and writes the database folder."""
    _require("freshclam", "clamav-freshclam")
    uid, gid = os.getuid(), os.getgid()
    _directory(layout.CLAMAV_RUN_DIR, uid, gid, 0o755)
    _directory(layout.CLAMAV_DB_DIR, uid, gid, 0o755)


def _prepare_clamd(wait: float = 2.0) -> None:
    """clamd cannot start without a database: wait for freshclam's first download."""
    _require("clamd", "clamav-daemon")
    _directory(layout.CLAMAV_RUN_DIR, os.getuid(), os.getgid(), 0o755)
    waited = 0.0
    while not has_clamav_database():
        if waited % 60 == 0:
            print(
                f"mailstack-agent: clamd: waiting for freshclam to fill {layout.CLAMAV_DB_DIR}",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(wait)
        waited += wait


def probe_clamd(port: int = layout.CLAMD_PORT) -> Callable[[], str | None]:
    """Healthy when clamd answers PING with PONG within 3 s."""

    def probe() -> str | None:
        conn = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        try:
            conn.settimeout(3)
            conn.connect(("127.0.0.1", port))
            conn.sendall(b"zPING\0")
            answer = conn.recv(16)
        except OSError as err:
            return f"clamd on port {port}: {err}"
        finally:
            conn.close()
        return None if answer == b"PONG\0" else f"clamd on port {port}: answered {answer!r}"

    return probe


def _reload_clamd(pid: int) -> None:
    os.kill(pid, 12)  # SIGUSR2: clamd reloads its databases


def clamd() -> Daemon:
    return Daemon(
        name="clamd",
        command=["clamd", "--foreground", f"--config-file={CLAMD_CONF}"],
        # Its settings roll the pod (ConfigMap checksum); new databases it checks itself.
        watched=[],
        prepare=_prepare_clamd,
        reload=_reload_clamd,
        probes=[probe_clamd()],
    )


def _reload_freshclam(pid: int) -> None:
    os.kill(pid, 14)  # SIGALRM: freshclam checks for updates now


def freshclam() -> Daemon:
    return Daemon(
        name="freshclam",
        command=["freshclam", "--daemon", "--foreground", f"--config-file={FRESHCLAM_CONF}"],
        watched=[],
        prepare=_prepare_freshclam,
        reload=_reload_freshclam,
    )


DAEMONS: dict[str, Callable[[], Daemon]] = {
    "postfix": postfix,
    "dovecot": dovecot,
    "rspamd": rspamd,
    "clamd": clamd,
    "freshclam": freshclam,
}
