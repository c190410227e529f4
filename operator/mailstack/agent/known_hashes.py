"""Owns the auth policy's memory across agent restarts: the nonce Dovecot hashes passwords with
and each login's known hashes (``auth_policy.GuessLimits.known``), in one file on the MDA pod's
mail volume (``layout.AUTH_POLICY_STATE``, in a dot-folder beside the domains' folders).

Without it a restarted agent (a crash, an OOM kill, a rollout) forgot every right password, and
guessers behind a user's address locked her out again. The file holds only what memory holds:
the nonce and truncated salted hashes, at most ``KNOWN_PER_LOGIN`` per login and as many logins
as ``GuessLimits.max_buckets``; mode 0600. It is written whole (a temporary file renamed over
it), at most every ``SAVE_INTERVAL`` seconds and only when the known hashes changed: the first
change after a quiet spell is written at once, so a kill right after a login keeps it. A file
that is missing, unreadable, too big or not what this module writes is not used: the service
starts empty (with a new nonce) and says why, as before the file existed.
"""

from __future__ import annotations

import _thread
import json
import os
import sys
import time

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mailstack.agent.auth_policy import GuessLimits

SAVE_INTERVAL = 3.0
# A login is an address (at most 320 characters with the JSON around it); a hash, a few hex
# digits. 100,000 logins of 4 hashes are well below this.
STATE_MAX_BYTES = 64 << 20
LOGIN_MAX = 512
HASH_MAX = 128
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def log(message: str) -> None:
    print(f"mailstack-agent: auth policy: {message}", file=sys.stderr, flush=True)


def _valid_hashes(value: object, per_login: int) -> list[str] | None:
    if not isinstance(value, list) or not value or len(value) > per_login:
        return None
    for pwhash in value:
        if not isinstance(pwhash, str) or not 0 < len(pwhash) <= HASH_MAX:
            return None
        if not HEX_DIGITS.issuperset(pwhash):
            return None
    return list(value)


def parse_state(
    text: bytes, max_logins: int, per_login: int
) -> tuple[str, dict[str, list[str]]] | str:
    """(nonce, known hashes) from the file's bytes, or what is wrong with them."""
    if len(text) > STATE_MAX_BYTES:
        return f"larger than {STATE_MAX_BYTES} bytes"
    try:
        state = json.loads(text)
    except ValueError as err:
        return f"not JSON: {err}"
    if not isinstance(state, dict):
        return "not a JSON object"
    nonce, known = state.get("nonce"), state.get("known")
    if not isinstance(nonce, str) or not 32 <= len(nonce) <= HASH_MAX:
        return "no valid nonce"
    if not HEX_DIGITS.issuperset(nonce):
        return "no valid nonce"
    if not isinstance(known, dict) or len(known) > max_logins:
        return f"no table of at most {max_logins} logins"
    table: dict[str, list[str]] = {}
    for login, hashes in known.items():
        valid = _valid_hashes(hashes, per_login)
        if not 0 < len(login) <= LOGIN_MAX or login != login.lower() or valid is None:
            return f"an invalid entry for {login[:80]!r}"
        table[login] = valid
    return (nonce, table)


def load_state(path: str, max_logins: int, per_login: int) -> tuple[str, dict[str, list[str]]]:
    """The saved nonce and known hashes; ("", {}) when there are none that can be used."""
    try:
        with open(path, "rb") as saved:
            text = saved.read(STATE_MAX_BYTES + 1)
    except FileNotFoundError:
        return ("", {})
    except OSError as err:
        log(f"cannot read {path}, starting with no known passwords: {err}")
        return ("", {})
    parsed = parse_state(text, max_logins, per_login)
    if isinstance(parsed, str):
        log(f"{path} is not usable ({parsed}), starting with no known passwords")
        return ("", {})
    return parsed


def save_state(path: str, nonce: str, known: dict[str, list[str]]) -> None:
    """The file, replaced whole: a reader (the next start) sees the old one or the new one."""
    text = json.dumps({"nonce": nonce, "known": known}, separators=(",", ":")).encode()
    temporary = f"{path}.new"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # a leftover temporary file keeps its own mode
        view = memoryview(text)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)


class KnownHashSaver:
    """Saves ``limits``' known hashes with ``nonce`` after they change, in its own thread."""

    def __init__(self, limits: GuessLimits, path: str, nonce: str) -> None:
        self.limits, self.path, self.nonce = limits, path, nonce
        self.wake = _thread.allocate_lock()
        self.wake.acquire()  # released by ``changed``
        self.saved_version = limits.known_version
        self.saved_at = -SAVE_INTERVAL
        self.saving = _thread.allocate_lock()  # the thread's saves and ``close``'s
        self.closed = False

    def changed(self) -> None:
        """The known hashes changed (called by ``GuessLimits`` under its lock)."""
        try:  # noqa: SIM105 (contextlib: one more import in the agent)
            self.wake.release()
        except RuntimeError:  # already woken
            pass

    def save_if_changed(self) -> None:
        with self.saving:
            with self.limits.lock:
                version = self.limits.known_version
                if version == self.saved_version:
                    return
                known = {login: list(hashes) for login, hashes in self.limits.known.items()}
            try:
                save_state(self.path, self.nonce, known)
            except OSError as err:
                log(f"cannot save the known passwords to {self.path}: {err}")
            self.saved_version, self.saved_at = version, time.monotonic()

    def run(self) -> None:
        while not self.closed:
            self.wake.acquire()
            wait = self.saved_at + SAVE_INTERVAL - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # changes in the meantime are saved together
            self.save_if_changed()

    def close(self) -> None:
        """Saves what changed since the last save, and stops the thread."""
        self.closed = True
        self.save_if_changed()
        self.changed()


def restore_known_hashes(limits: GuessLimits, path: str, nonce: str) -> KnownHashSaver:
    """Loads the saved known hashes into ``limits`` if they were hashed with ``nonce`` (the one
    Dovecot uses now), and starts saving them as they change."""
    saved_nonce, known = load_state(path, limits.max_buckets, limits.KNOWN_PER_LOGIN)
    with limits.lock:
        if saved_nonce and saved_nonce == nonce:
            limits.known = known
        saver = KnownHashSaver(limits, path, nonce)
        limits.on_known_change = saver.changed
    _thread.start_new_thread(saver.run, ())
    return saver
