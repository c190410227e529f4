"""Password hashes for Dovecot's passwd-file: bcrypt hashing, verification and reuse.

Plain passwords from Mailbox Secrets become ``{BLF-CRYPT}`` (bcrypt) hashes, which Dovecot 2.3
verifies natively. A hash is computed once and then carried over from the previously rendered
users Secret for as long as it still matches the password, so a re-render neither changes the
Secret (no needless rollout or reload) nor pays for a new bcrypt run per mailbox.
"""

from __future__ import annotations

import base64
import functools
import os
import re
from collections.abc import Callable

import bcrypt

from mailstack.api.validate import is_hashed_password
from mailstack.material.errors import MaterialError

RandomBytes = Callable[[int], bytes]

DEFAULT_ROUNDS = 10
BCRYPT_SCHEME = "{BLF-CRYPT}"
# bcrypt ignores everything after the 72nd byte. Pre-hashing longer passwords would avoid that,
# but Dovecot would then compare against a different value: such passwords are refused instead.
BCRYPT_MAX_BYTES = 72

# bcrypt's base64 uses its own alphabet with the same bit order as RFC 4648 base64.
_STD_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_ALPHABET = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = bytes.maketrans(_STD_ALPHABET, _BCRYPT_ALPHABET)
# 22 characters of salt, 31 of hash, in bcrypt's alphabet.
_SALT_AND_HASH = re.compile(r"[./A-Za-z0-9]{53}")
# "$2b$NN$" and the 53 characters above: a longer text is no bcrypt hash, and is not kept as a key
# of ``_bcrypt_matches``'s cache (it may come from a Secret the tenant writes).
_BCRYPT_HASH_LEN = 60


def hash_password(
    plain: str, random_bytes: RandomBytes = os.urandom, rounds: int = DEFAULT_ROUNDS
) -> str:
    """``{BLF-CRYPT}$2b$<rounds>$<salt><hash>``, deterministic given ``random_bytes``."""
    if not 4 <= rounds <= 31:
        raise MaterialError(f"bcrypt rounds must be between 4 and 31, got {rounds}")
    secret = _bcrypt_input(plain)
    salt_bytes = random_bytes(16)
    if len(salt_bytes) != 16:
        raise MaterialError("the random source returned the wrong number of bytes")
    # 16 bytes encode to 22 characters plus '==' padding, which bcrypt's format drops.
    salt = base64.b64encode(salt_bytes).rstrip(b"=").translate(_TO_BCRYPT)
    hashed = bcrypt.hashpw(secret, b"$2b$%02d$" % rounds + salt)
    return BCRYPT_SCHEME + hashed.decode("ascii")


def verify_password(plain: str, hashed: str) -> bool:
    """Whether ``plain`` matches the ``{SCHEME}hash``.

    Only ``{BLF-CRYPT}`` is checked. ``{SHA512-CRYPT}``/``{SHA256-CRYPT}`` and the other schemes
    Dovecot knows return False: the stdlib's ``crypt`` is deprecated (and gone in Python 3.13),
    and the only caller, ``password_hash``, then simply computes a new bcrypt hash.
    """
    if not hashed.startswith(BCRYPT_SCHEME) or len(hashed) > len(BCRYPT_SCHEME) + _BCRYPT_HASH_LEN:
        return False
    try:
        secret = _bcrypt_input(plain)
    except MaterialError:
        return False
    return _bcrypt_matches(secret, hashed[len(BCRYPT_SCHEME) :].encode("ascii", errors="replace"))


def password_hash(
    value: str,
    existing: str | None,
    random_bytes: RandomBytes = os.urandom,
    rounds: int = DEFAULT_ROUNDS,
) -> str:
    """The hash to render for a Secret's password ``value``.

    A value that already is a ``{SCHEME}hash`` is used as given; else the ``existing`` hash (from
    the previous render) if it still matches; else a new bcrypt hash. The existing hash comes
    from the users Secret in the tenant's namespace, which the tenant may edit: it is checked
    only when it has exactly the form and cost ``hash_password`` gives (``is_own_hash``), so
    checking it costs what hashing anew does. A planted ``$2b$31$`` hash (2^31 rounds, days of
    one core) is never run, only replaced.
    """
    if is_hashed_password(value):
        return value
    if existing is not None and is_own_hash(existing, rounds) and verify_password(value, existing):
        return existing
    return hash_password(value, random_bytes, rounds)


def is_own_hash(hashed: str, rounds: int = DEFAULT_ROUNDS) -> bool:
    """Whether ``hashed`` has the form ``hash_password(..., rounds=rounds)`` gives."""
    prefix = f"{BCRYPT_SCHEME}$2b${rounds:02d}$"
    return hashed.startswith(prefix) and _SALT_AND_HASH.fullmatch(hashed[len(prefix) :]) is not None


def parse_passwd_file(text: str) -> dict[str, str]:
    """Address -> ``{SCHEME}hash`` from a Dovecot passwd-file (``user:password:uid:gid:...``).

    Lines without a recognised hash (comments, blanks, other schemes) are skipped: the result
    only feeds reuse, and anything skipped is simply hashed again.
    """
    result: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 2:
            continue
        user, hashed = fields[0], fields[1]
        if user and is_hashed_password(hashed):
            result[user] = hashed
    return result


def _bcrypt_input(plain: str) -> bytes:
    secret = plain.encode("utf-8")
    if len(secret) > BCRYPT_MAX_BYTES:
        raise MaterialError(
            f"the password is {len(secret)} bytes long in UTF-8; bcrypt (the scheme Dovecot "
            f"verifies) uses at most {BCRYPT_MAX_BYTES}: use a shorter password or give a "
            "{SHA512-CRYPT} hash instead"
        )
    if b"\x00" in secret:
        # C implementations (Dovecot's included) stop at NUL: the hash would not match there.
        raise MaterialError("the password contains a NUL character")
    return secret


# Every render checks each mailbox's password against its previous hash: at 10 rounds that is
# ~60 ms per mailbox, minutes for a large domain on every reconcile. The check is a pure function
# of its arguments, so remembering recent answers changes nothing but the time. (The operator
# holds the plain passwords in memory anyway, read from the Secrets.)
@functools.lru_cache(maxsize=4096)
def _bcrypt_matches(secret: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(secret, hashed)
    except ValueError:  # not a bcrypt hash ("Invalid salt")
        return False
