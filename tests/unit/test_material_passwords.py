"""Password hashes: bcrypt values Dovecot accepts, deterministic salts, reuse of existing hashes."""

from __future__ import annotations

import base64
import random
import re
import shutil
import subprocess
from pathlib import Path

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstack.material import passwords
from mailstack.material.errors import MaterialError
from mailstack.material.passwords import (
    hash_password,
    parse_passwd_file,
    password_hash,
    verify_password,
)

_BCRYPT = re.compile(r"^\{BLF-CRYPT\}\$2b\$(\d\d)\$([./A-Za-z0-9]{22})([./A-Za-z0-9]{31})$")
_FROM_BCRYPT = bytes.maketrans(
    b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
)


def _fixed(seed: int = 7) -> random.Random:
    return random.Random(seed)


def _no_randomness(n: int) -> bytes:
    raise AssertionError("no new hash expected")


def test_hash_format_and_bcrypt_checks_it() -> None:
    hashed = hash_password("correct horse", _fixed().randbytes, rounds=4)
    match = _BCRYPT.match(hashed)
    assert match, hashed
    assert match.group(1) == "04"
    assert bcrypt.checkpw(b"correct horse", hashed.removeprefix("{BLF-CRYPT}").encode())
    assert not bcrypt.checkpw(b"correct horsE", hashed.removeprefix("{BLF-CRYPT}").encode())


def test_default_cost_is_10() -> None:
    assert hash_password("correct horse").startswith("{BLF-CRYPT}$2b$10$")


def test_hashing_is_deterministic_given_the_random_source() -> None:
    one = hash_password("correct horse", _fixed(1).randbytes, rounds=4)
    assert one == hash_password("correct horse", _fixed(1).randbytes, rounds=4)
    assert one != hash_password("correct horse", _fixed(2).randbytes, rounds=4)


@settings(max_examples=40, deadline=None)
@given(salt=st.binary(min_size=16, max_size=16))
def test_the_salt_is_the_random_bytes_in_bcrypt_base64(salt: bytes) -> None:
    hashed = hash_password("password", lambda n: salt, rounds=4)
    match = _BCRYPT.match(hashed)
    assert match
    encoded = match.group(2).encode().translate(_FROM_BCRYPT)
    # 22 characters carry 132 bits: the last 4 are padding and must be zero (canonical form).
    assert base64.b64decode(encoded + b"==") == salt
    assert verify_password("password", hashed)


@pytest.mark.skipif(shutil.which("doveadm") is None, reason="dovecot is not installed")
@pytest.mark.parametrize("plain", ["correct horse", "pässwörd ünïcode ✓", "with:colon and space"])
def test_dovecot_accepts_the_hash(plain: str, tmp_path: Path) -> None:
    config = tmp_path / "dovecot.conf"
    config.write_text(f"base_dir = {tmp_path}/run\n")
    hashed = hash_password(plain, _fixed().randbytes, rounds=4)

    def doveadm(candidate: str) -> int:
        return subprocess.run(
            ["doveadm", "-c", str(config), "pw", "-t", hashed, "-p", candidate],
            capture_output=True,
            check=False,
        ).returncode

    assert doveadm(plain) == 0
    assert doveadm(plain + "x") != 0


def test_passwords_longer_than_72_bytes_are_refused() -> None:
    assert verify_password("a" * 72, hash_password("a" * 72, _fixed().randbytes, rounds=4))
    with pytest.raises(MaterialError, match=r"73 bytes long in UTF-8.*at most 72"):
        hash_password("a" * 73, rounds=4)
    # 37 characters, but 74 bytes: the limit is in bytes.
    with pytest.raises(MaterialError, match="74 bytes"):
        hash_password("é" * 37, rounds=4)


def test_a_hash_longer_than_bcrypts_is_not_checked_nor_kept() -> None:
    """#13 check H6's question for the other cache over Secret contents: a "hash" the tenant
    pads to 600 KB is refused before ``_bcrypt_matches``, whose cache would keep it."""
    hashed = hash_password("password", _fixed().randbytes, rounds=4)
    before = passwords._bcrypt_matches.cache_info()
    assert not verify_password("password", hashed + "." * 600_000)
    after = passwords._bcrypt_matches.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)
    assert verify_password("password", hashed)


def test_nul_and_bad_rounds_are_refused() -> None:
    with pytest.raises(MaterialError, match="NUL"):
        hash_password("abc\x00defgh", rounds=4)
    with pytest.raises(MaterialError, match="rounds"):
        hash_password("password", rounds=3)
    with pytest.raises(MaterialError, match="rounds"):
        hash_password("password", rounds=32)


def test_verify_password() -> None:
    hashed = hash_password("correct horse", _fixed().randbytes, rounds=4)
    assert verify_password("correct horse", hashed)
    assert not verify_password("correct horse ", hashed)
    # Dovecot's own `doveadm pw -s BLF-CRYPT` writes $2y$: the same algorithm.
    assert verify_password("correct horse", hashed.replace("$2b$", "$2y$"))
    assert not verify_password("correct horse", "{BLF-CRYPT}not-a-hash")
    assert not verify_password("correct horse", hashed.removeprefix("{BLF-CRYPT}"))
    # Other schemes are not checked here (see verify_password): the caller rehashes.
    assert not verify_password("password", "{SHA512-CRYPT}$6$salt$abc")
    assert not verify_password("a" * 73, hashed)


def test_password_hash_keeps_given_hashes() -> None:
    given_hash = "{SHA512-CRYPT}$6$rounds=5000$salt$abcdef"
    assert password_hash(given_hash, None, _no_randomness) == given_hash
    assert password_hash(given_hash, "{BLF-CRYPT}$2b$04$other", _no_randomness) == given_hash


def test_password_hash_reuses_a_matching_existing_hash() -> None:
    existing = hash_password("correct horse", _fixed().randbytes, rounds=4)
    assert password_hash("correct horse", existing, _no_randomness, rounds=4) == existing


def test_a_previous_hash_of_another_cost_or_form_is_never_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The previous hash comes from the users Secret in the tenant's namespace, which the tenant
    # may edit: a planted $2b$31$ hash would cost 2^31 rounds to check (days). Only a hash of
    # the form and cost the operator gives is checked; any other is replaced.
    from mailstack.material import passwords

    costs: list[int] = []
    real_checkpw = bcrypt.checkpw

    def checkpw(secret: bytes, hashed: bytes) -> bool:
        costs.append(int(hashed.split(b"$")[2]))
        return hashed.startswith(b"$2b$04$") and real_checkpw(secret, hashed)  # never 2^31

    monkeypatch.setattr(passwords.bcrypt, "checkpw", checkpw)
    passwords._bcrypt_matches.cache_clear()  # an answer remembered from another test
    own = hash_password("correct horse", _fixed(3).randbytes, rounds=4)
    body = own.removeprefix("{BLF-CRYPT}$2b$04$")
    planted = [
        "{BLF-CRYPT}$2b$31$" + body,
        "{BLF-CRYPT}$2b$05$" + body,
        "{BLF-CRYPT}$2a$04$" + body,
        "{BLF-CRYPT}$2y$04$" + body,
        "{BLF-CRYPT}$2b$04$" + body + "x",
        "{BLF-CRYPT}$2b$4$" + body,
    ]
    for hashed in planted:
        fresh = password_hash("correct horse", hashed, _fixed(4).randbytes, rounds=4)
        assert fresh == hash_password("correct horse", _fixed(4).randbytes, rounds=4), hashed
    assert costs == [], f"bcrypt ran at cost {costs}"
    assert password_hash("correct horse", own, _no_randomness, rounds=4) == own
    assert costs == [4]


def test_password_hash_rehashes_a_changed_password() -> None:
    existing = hash_password("correct horse", _fixed(1).randbytes, rounds=4)
    new = password_hash("battery staple", existing, _fixed(2).randbytes, rounds=4)
    assert new != existing and verify_password("battery staple", new)
    fresh = password_hash("battery staple", None, _fixed(2).randbytes, rounds=4)
    assert fresh == new
    # A previous hash of a scheme we cannot check is replaced by bcrypt.
    replaced = password_hash("battery staple", "{SHA512-CRYPT}$6$x$y", _fixed(2).randbytes, 4)
    assert replaced == new


def test_parse_passwd_file() -> None:
    text = (
        "# generated by mailstack\n"
        "\n"
        "alice@example.com:{BLF-CRYPT}$2b$10$abc:5000:5000::/var/mail/alice::userdb_quota_rule=*:storage=1G\n"
        "bob@example.com:{SHA512-CRYPT}$6$salt$hash::::::\n"
        "carol@example.com:{PLAIN}secret:5000:5000::/var/mail/carol::\n"
        "dave@example.com\n"
        ":{BLF-CRYPT}$2b$10$nouser::::\n"
    )
    assert parse_passwd_file(text) == {
        "alice@example.com": "{BLF-CRYPT}$2b$10$abc",
        "bob@example.com": "{SHA512-CRYPT}$6$salt$hash",
    }
    assert parse_passwd_file("") == {}
