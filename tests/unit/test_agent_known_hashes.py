"""The auth policy's known hashes and nonce on the mail volume (agent.known_hashes): kept across
an agent restart, written whole and bounded, and a bad file starts the service empty."""

from __future__ import annotations

import itertools
import json
import os
import stat
import time
from pathlib import Path

import pytest

from mailstack.agent import known_hashes
from mailstack.agent.auth_policy import GuessLimits, open_auth_policy, prepare_dovecot_auth
from mailstack.agent.known_hashes import (
    STATE_MAX_BYTES,
    KnownHashSaver,
    load_state,
    parse_state,
    restore_known_hashes,
    save_state,
)

NONCE = "ab" * 24


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spend_and_log_in(policy: GuessLimits, address: str, login: str, pwhash: str) -> bool:
    """Guessers spend the address's budget, then the user logs in with ``pwhash``."""
    for i in range(40):
        if policy.allow(address, f"nobody{i}", f"{i:06x}"):
            policy.report(address, f"nobody{i}", f"{i:06x}", success=False, refused=False)
    return policy.allow(address, login, pwhash)


def started(tmp_path: Path, limits: GuessLimits) -> tuple[str, KnownHashSaver]:
    """As the agent starts: the nonce written from the state file, then the hashes restored."""
    state, nonce_path = str(tmp_path / "known-hashes.json"), str(tmp_path / "nonce")
    prepare_dovecot_auth(str(tmp_path / "auth"), nonce_path, state)
    nonce = Path(nonce_path).read_text()
    return nonce, restore_known_hashes(limits, state, nonce)


def test_a_known_password_survives_a_restart(tmp_path: Path) -> None:
    before = GuessLimits(clock=Clock())
    nonce, saver = started(tmp_path, before)
    assert before.allow("192.0.2.1", "grace", "a1b2c3")
    before.report("192.0.2.1", "grace", "a1b2c3", success=True, refused=False)
    deadline = time.monotonic() + 5  # the first change after a quiet spell is saved at once
    while load_state(saver.path, 10, 4)[1] != {"grace": ["a1b2c3"]} and time.monotonic() < deadline:
        time.sleep(0.01)
    saver.closed = True  # a kill: no saving on the way out
    after = GuessLimits(clock=Clock())
    nonce_again, _ = started(tmp_path, after)
    assert nonce_again == nonce  # Dovecot hashes the password as before the restart
    assert spend_and_log_in(after, "192.0.2.1", "grace", "a1b2c3")
    assert not spend_and_log_in(GuessLimits(clock=Clock()), "192.0.2.1", "grace", "a1b2c3")
    mode = os.stat(saver.path).st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_the_first_start_makes_a_nonce_and_no_file(tmp_path: Path) -> None:
    nonce, saver = started(tmp_path, GuessLimits())
    assert len(nonce) == 48 and int(nonce, 16) >= 0
    saver.close()
    assert not os.path.exists(saver.path)  # nothing known, nothing written
    again, _ = started(tmp_path, GuessLimits())
    assert again != nonce  # still no file: a new one


def test_saves_are_spaced_and_shutdown_saves_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = GuessLimits()
    path = str(tmp_path / "state")
    writes: list[float] = []

    def counted(path: str, nonce: str, known: dict[str, list[str]]) -> None:
        writes.append(time.monotonic())
        save_state(path, nonce, known)

    monkeypatch.setattr(known_hashes, "save_state", counted)
    monkeypatch.setattr(known_hashes, "SAVE_INTERVAL", 0.5)
    saver = restore_known_hashes(policy, path, NONCE)
    start = time.monotonic()
    for i in range(20):
        policy.report("192.0.2.1", f"user{i}", f"{i:06x}", success=True, refused=False)
        time.sleep(0.1)
    saver.close()
    # 2 s of changes: the first saved at once, then every 0.5 s, and the rest at shutdown.
    assert writes[0] - start < 0.3 and 3 <= len(writes) <= 6
    spaced = writes[:-1]
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(spaced))
    nonce, known = load_state(path, 100, 4)
    assert nonce == NONCE and len(known) == 20  # the last ones saved on shutdown


def test_the_server_restores_and_saves_on_shutdown(tmp_path: Path) -> None:
    state, nonce_path = str(tmp_path / "state"), str(tmp_path / "nonce")
    save_state(state, NONCE, {"grace": ["a1b2c3"]})
    prepare_dovecot_auth(str(tmp_path / "auth"), nonce_path, state)
    server = open_auth_policy(GuessLimits(), port=0, nonce_path=nonce_path, state_path=state)
    try:
        assert server.limits.known == {"grace": ["a1b2c3"]}
        server.limits.report("192.0.2.1", "henry", "d4e5f6", success=True, refused=False)
    finally:
        server.shutdown()
    assert load_state(state, 10, 4) == (NONCE, {"grace": ["a1b2c3"], "henry": ["d4e5f6"]})


def test_hashes_of_another_nonce_are_not_used(tmp_path: Path) -> None:
    path = str(tmp_path / "state")
    save_state(path, NONCE, {"grace": ["a1b2c3"]})
    policy = GuessLimits()
    restore_known_hashes(policy, path, "cd" * 24).close()
    assert policy.known == {}


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[1]",
        b'{"nonce": "short", "known": {}}',
        b'{"nonce": "' + b"zz" * 24 + b'", "known": {}}',
        b'{"nonce": "' + NONCE.encode() + b'", "known": []}',
        b'{"nonce": "' + NONCE.encode() + b'", "known": {"grace": "a1b2c3"}}',
        b'{"nonce": "' + NONCE.encode() + b'", "known": {"grace": ["not hex"]}}',
        b'{"nonce": "' + NONCE.encode() + b'", "known": {"Grace": ["a1"]}}',
        b'{"nonce": "' + NONCE.encode() + b'", "known": {"grace": []}}',
        b'{"nonce": "' + NONCE.encode() + b'", "known": {"grace": ["a1","a2","a3","a4","a5"]}}',
        b"\xff\xfe garbage",
    ],
)
def test_a_corrupt_file_starts_empty_and_says_so(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state"
    path.write_bytes(content)
    policy = GuessLimits()
    nonce_path = str(tmp_path / "nonce")
    prepare_dovecot_auth(str(tmp_path / "auth"), nonce_path, str(path))
    assert Path(nonce_path).read_text() != NONCE  # a new nonce
    restore_known_hashes(policy, str(path), Path(nonce_path).read_text()).close()
    assert policy.known == {}
    assert "is not usable" in capsys.readouterr().err


def test_an_unreadable_file_starts_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state"
    path.mkdir()  # reading a folder fails (as root too, unlike a mode)
    assert load_state(str(path), 10, 4) == ("", {})
    assert "cannot read" in capsys.readouterr().err


def test_a_file_over_the_bounds_is_not_used() -> None:
    table = {f"user{i}@example.com": ["a1b2c3"] for i in range(11)}
    text = json.dumps({"nonce": NONCE, "known": table}).encode()
    assert isinstance(parse_state(text, 10, 4), str)  # more logins than memory holds
    assert parse_state(text, 11, 4) == (NONCE, table)
    assert isinstance(parse_state(b" " * (STATE_MAX_BYTES + 1), 10, 4), str)


def test_known_logins_are_bounded_in_memory_and_so_on_disk(tmp_path: Path) -> None:
    policy = GuessLimits(max_buckets=10)
    path = str(tmp_path / "state")
    saver = restore_known_hashes(policy, path, NONCE)
    for i in range(30):
        policy.report("192.0.2.1", f"user{i}", f"{i:06x}", success=True, refused=False)
    for i in range(6):  # a fifth hash of one login pushes its oldest out
        policy.report("192.0.2.1", "user29", f"{i + 100:06x}", success=True, refused=False)
    saver.close()
    nonce, known = load_state(path, 10, GuessLimits.KNOWN_PER_LOGIN)
    assert nonce == NONCE and list(known) == [f"user{i}" for i in range(20, 30)]
    assert known["user29"] == ["000069", "000068", "000067", "000066"]


def test_a_failed_save_is_logged_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = GuessLimits()
    saver = restore_known_hashes(policy, str(tmp_path / "missing" / "state"), NONCE)
    policy.report("192.0.2.1", "grace", "a1b2c3", success=True, refused=False)
    saver.close()
    assert "cannot save" in capsys.readouterr().err
