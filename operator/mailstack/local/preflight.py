"""What ``mailstack up`` checks before it touches the host: root, packages, one run per state.

Owns the binaries and files the runtime and the daemons need (with the Debian package that ships
each), the root check and the state folder's lock. Every refusal is a ``PreflightError`` whose
message says what to do; nothing here creates a namespace, a link or a rule.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
from pathlib import Path
from typing import IO

from mailstack.render import layout

# Binaries the runtime and the daemons need, with the Debian package that ships each.
REQUIRED = {
    "ip": "iproute2",
    "nft": "nftables",
    "unshare": "util-linux",
    "setpriv": "util-linux",
    "mount": "mount",
    "postfix": "postfix",
    "dovecot": "dovecot-core",
    "doveadm": "dovecot-core",
    "rspamd": "rspamd",
}
# Files of Debian packages that ship no binary on the PATH (Dovecot's protocol servers, Sieve).
REQUIRED_FILES = {
    "/usr/lib/dovecot/imap": "dovecot-imapd",
    "/usr/lib/dovecot/pop3": "dovecot-pop3d",
    "/usr/lib/dovecot/lmtp": "dovecot-lmtpd",
    "/usr/lib/dovecot/managesieve": "dovecot-managesieved",
    "/usr/lib/dovecot/submission": "dovecot-submissiond",
    "/usr/lib/dovecot/modules/lib90_sieve_plugin.so": "dovecot-sieve",
}


class PreflightError(Exception):
    """This host or this state folder cannot run ``mailstack up`` now; the message says why."""


def missing_packages() -> list[str]:
    """The Debian packages whose binaries or files this host lacks, sorted, each once."""
    missing = [
        pkg
        for binary, pkg in REQUIRED.items()
        if not shutil.which(binary) and not os.path.exists(f"/usr/sbin/{binary}")
    ]
    missing += [pkg for path, pkg in REQUIRED_FILES.items() if not os.path.exists(path)]
    return sorted(set(missing))


def check_host() -> None:
    """Refuse to run without root, without a required package or without the vmail user."""
    if os.geteuid() != 0:
        raise PreflightError(
            "mailstack up must run as root (network namespaces, mounts, ports < 1024)"
        )
    missing = missing_packages()
    if missing:
        raise PreflightError(
            "missing Debian packages: "
            + " ".join(missing)
            + f" (apt-get install {' '.join(missing)})"
        )
    try:
        vmail = pwd.getpwnam(layout.VMAIL_USER).pw_uid
    except KeyError:
        vmail = None
    if vmail != layout.VMAIL_UID:
        raise PreflightError(
            f"Dovecot runs as the user {layout.VMAIL_USER} with uid {layout.VMAIL_UID}, as in the"
            " mail image: run scripts/setup.sh (it creates the user)"
        )


def lock_state(state: Path) -> IO[str]:
    """Create the state folder (owner only) and take its lock; the caller keeps the file open.

    Two runs on one state would share keys, queues and the pods' names on the host.
    """
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    lock = open(state / ".lock", "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise PreflightError(f"another mailstack up is running with the state {state}") from None
    return lock
