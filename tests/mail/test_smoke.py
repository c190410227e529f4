"""First contact: the stack comes up and one message goes in and is read back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.mail.conftest import ROOT, Stack, free_port_offset
from tests.mail.messages import raw_text_message


def test_inbound_message_reaches_the_mailbox(stack: Stack) -> None:
    stack.send_from_internet(
        "alice@example.com", raw_text_message("smoke test", "alice@example.com")
    )
    received = stack.wait_for_subject("alice", "smoke test")
    assert received.get_payload().strip() == "hello"
    # rspamd checked the sender's SPF against the internet namespace's DNS.
    assert "spf=pass" in str(received["Authentication-Results"])


def run_up(inputs: Path, state: Path, offset: int) -> subprocess.CompletedProcess[str]:
    """``mailstack up`` expected to refuse to start: its exit, with its output."""
    command = [sys.executable, "-m", "mailstack", "up", "-f", str(inputs)]
    command += ["--state", str(state), "--port-offset", str(offset)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, check=False
    )


def container_logs(state: Path) -> list[str]:
    """The containers that ``up`` started with this state: one log file each."""
    logs = state / "logs"
    return sorted(p.name for p in logs.iterdir()) if logs.exists() else []


def test_a_second_up_on_the_same_ports_is_refused_before_it_starts_anything(
    stack: Stack, tmp_path: Path
) -> None:
    # Another state, the session stack's ports: refused at once, not after every daemon of
    # the second stack was started (and stopped again).
    result = run_up(stack.inputs, tmp_path / "state", stack.offset)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "already published by another mailstack up" in result.stderr, result.stderr
    assert container_logs(tmp_path / "state") == []


def test_up_refuses_a_port_another_program_listens_on(tmp_path: Path) -> None:
    # The DNAT rules would silently take that program's connections.
    offset = free_port_offset()
    with socket.socket() as other:
        other.bind(("127.0.0.1", offset + 25))
        other.listen()
        result = run_up(ROOT / "examples", tmp_path / "state", offset)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"127.0.0.1:{offset + 25} already in use by another program" in result.stderr
    assert container_logs(tmp_path / "state") == []
