"""The agent's parts without a daemon: child processes, the health endpoint, change detection,
and the supervisor loop (start, reload on a mounted change, stop on SIGTERM) around ``sleep``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mailstack.agent import daemons
from mailstack.agent.health import HealthState, serve_health
from mailstack.agent.housekeeping import Housekeeping
from mailstack.agent.processes import Child, ProcessError, run, which
from mailstack.agent.watch import fingerprint
from mailstack.render import layout

ROOT = Path(__file__).resolve().parents[2]


def test_run_returns_the_exit_code_and_the_output_of_both_streams() -> None:
    code, output = run(["sh", "-c", "echo out; echo err >&2; exit 3"], capture=True)
    assert code == 3
    assert output.splitlines() == ["out", "err"]


def test_run_with_check_raises_with_the_programs_output() -> None:
    with pytest.raises(ProcessError, match=r"exited with status 4: broken config"):
        run(["sh", "-c", "echo broken config >&2; exit 4"], capture=True, check=True)
    assert run(["true"], check=True) == (0, "")


def test_a_missing_program_is_a_clear_error() -> None:
    with pytest.raises(ProcessError, match="cannot run no-such-program-here"):
        run(["no-such-program-here"])
    with pytest.raises(ProcessError, match="cannot run"):
        Child(["no-such-program-here"])


def test_which_searches_path_and_checks_absolute_paths(tmp_path: Path) -> None:
    sh = which("sh")
    assert sh is not None and os.access(sh, os.X_OK)
    assert which(sh) == sh
    assert which("no-such-program-here") is None
    plain = tmp_path / "plain"
    plain.write_text("")
    plain.chmod(0o644)
    assert which(str(plain)) is None  # exists, not executable


def test_child_wait_times_out_then_sees_a_signal_as_a_negative_code() -> None:
    child = Child(["sleep", "30"])
    start = time.monotonic()
    assert child.wait(0.2) is None
    assert 0.15 < time.monotonic() - start < 5
    assert child.poll() is None
    child.send_signal(signal.SIGTERM)
    assert child.wait(5) == -signal.SIGTERM
    child.send_signal(signal.SIGTERM)  # already gone: nothing happens
    assert child.returncode == -signal.SIGTERM


def test_child_exit_code() -> None:
    child = Child(["sh", "-c", "exit 7"])
    assert child.wait(5) == 7


def test_child_without_pidfd_still_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where pidfd_open is refused (an old kernel, a seccomp profile), waiting polls instead."""

    def refused(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", refused)
    child = Child(["sleep", "30"])
    assert child.wait(0.2) is None
    child.send_signal(signal.SIGKILL)
    assert child.wait(5) == -signal.SIGKILL
    assert Child(["sh", "-c", "exit 3"]).wait(5) == 3


def _get(port: int, path: str) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    assert f"Content-Length: {len(body.encode())}" in head
    return int(head.split()[1]), body


def test_health_endpoint_answers_with_the_probes_verdict() -> None:
    problems: list[str] = []
    state = HealthState([lambda: problems[0] if problems else None])
    server = serve_health(state, 0, host="127.0.0.1")
    try:
        assert _get(server.port, "/healthz") == (503, "the daemon is not running\n")
        state.running = True
        assert _get(server.port, "/healthz") == (200, "ok\n")
        assert _get(server.port, "/readyz") == (200, "ok\n")
        problems.append("port 25: connection refused")
        assert _get(server.port, "/readyz") == (503, "port 25: connection refused\n")
        assert _get(server.port, "/metrics")[0] == 404
    finally:
        server.shutdown()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_a_slow_probe_does_not_hold_up_other_requests() -> None:
    """A client that connects and sends nothing must not block the next probe."""
    state = HealthState([])
    state.running = True
    server = serve_health(state, 0, host="127.0.0.1")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            assert _get(server.port, "/healthz") == (200, "ok\n")
    finally:
        server.shutdown()


def test_a_request_head_in_pieces_is_read_to_its_blank_line() -> None:
    """The head may arrive in several segments; the answer comes once the blank line is in."""
    state = HealthState([])
    state.running = True
    server = serve_health(state, 0, host="127.0.0.1")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            conn.sendall(b"GET /rea")  # cut inside the request line
            time.sleep(0.3)
            conn.sendall(b"dyz HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.3)
            conn.sendall(b"User-Agent: kube-probe\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
        assert data.startswith(b"HTTP/1.0 200 OK\r\n") and data.endswith(b"\r\n\r\nok\n")
    finally:
        server.shutdown()


def test_fingerprint_follows_contents_through_kubelet_style_symlinks(tmp_path: Path) -> None:
    mount = tmp_path / "config"
    first, second = tmp_path / "config/..2026_01", tmp_path / "config/..2026_02"
    first.mkdir(parents=True)
    (first / "main.cf").write_text("a = 1\n")
    (mount / "..data").symlink_to(first.name)
    (mount / "main.cf").symlink_to("..data/main.cf")
    before = fingerprint([str(mount)])
    assert fingerprint([str(mount)]) == before
    second.mkdir()
    (second / "main.cf").write_text("a = 2\n")
    (mount / "..data_tmp").symlink_to(second.name)
    os.replace(mount / "..data_tmp", mount / "..data")  # the kubelet's atomic swap
    changed = fingerprint([str(mount)])
    assert changed != before
    (mount / "new.cf").symlink_to("..data/main.cf")
    assert fingerprint([str(mount)]) != changed
    assert fingerprint([str(tmp_path / "missing")]) != fingerprint([str(tmp_path)])


SUPERVISED = textwrap.dedent("""\
    import sys
    from mailstack.agent.daemons import Daemon
    from mailstack.agent.supervisor import run_daemon

    watched, marker = sys.argv[1], sys.argv[2]

    def reload(pid):
        with open(marker, "a") as out:
            out.write(f"reload {pid}\\n")

    daemon = Daemon(
        name="sleeper",
        command=["sleep", "60"],
        watched=[watched],
        prepare=lambda: None,
        reload=reload,
    )
    sys.exit(run_daemon(daemon, None, poll=0.1))
    """)


def test_supervisor_reloads_on_a_change_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    watched, marker = tmp_path / "config", tmp_path / "reloads"
    watched.mkdir()
    (watched / "a.conf").write_text("one\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    agent = subprocess.Popen(
        [sys.executable, "-c", SUPERVISED, str(watched), str(marker)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(0.5)
        assert not marker.exists()  # nothing changed: no reload
        (watched / "a.conf").write_text("two\n")
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        reloads = marker.read_text().splitlines()
        assert len(reloads) == 1
        sleeper = int(reloads[0].split()[1])
        assert Path(f"/proc/{sleeper}/cmdline").read_bytes().startswith(b"sleep\0")
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=10)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, err
    assert "sleeper started" in err and "sleeper exited with status -15" in err
    assert not Path(f"/proc/{sleeper}").exists()


def test_supervisor_passes_on_a_daemons_failure(tmp_path: Path) -> None:
    script = SUPERVISED.replace('["sleep", "60"]', '["sh", "-c", "exit 5"]')
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(tmp_path / "marker")],
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
    )
    assert result.returncode == 5
    assert "sleeper exited with status 5" in result.stderr


# --- housekeeping -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tick_until_idle(chores: Housekeeping, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    chores.tick()
    while chores.running is not None or chores.queue:
        assert time.monotonic() < deadline, "housekeeping did not finish"
        time.sleep(0.02)
        chores.tick()


def test_housekeeping_runs_its_commands_in_order_after_the_delay_then_every_interval(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    commands = [["sh", "-c", f"echo first >> {out}"], ["sh", "-c", f"echo second >> {out}"]]
    clock, logged = FakeClock(), []
    chores = Housekeeping(commands, delay=600, interval=86400, log=logged.append, clock=clock)
    _tick_until_idle(chores)
    assert not out.exists()  # not before the delay
    clock.now += 600
    _tick_until_idle(chores)
    assert out.read_text() == "first\nsecond\n"  # one round
    clock.now += 86399
    _tick_until_idle(chores)
    assert out.read_text() == "first\nsecond\n"  # the interval counts from the round's start
    clock.now += 1
    _tick_until_idle(chores)
    assert out.read_text() == "first\nsecond\n" * 2
    assert logged == [f"housekeeping: {' '.join(c)}" for c in commands] * 2


def test_housekeeping_logs_a_failed_command_and_goes_on_with_the_round(tmp_path: Path) -> None:
    out = tmp_path / "out"
    commands = [["sh", "-c", "exit 3"], ["no-such-program-here"], ["sh", "-c", f"echo ok > {out}"]]
    logged: list[str] = []
    chores = Housekeeping(commands, delay=0, interval=86400, log=logged.append)
    _tick_until_idle(chores)
    assert out.read_text() == "ok\n"
    problems = [line for line in logged if "status" in line or "cannot" in line]
    assert problems[0] == "housekeeping: sh -c exit 3 exited with status 3"
    assert problems[1].startswith("housekeeping: cannot run no-such-program-here")
    assert len(problems) == 2


def test_housekeeping_never_blocks_and_stop_ends_a_running_command() -> None:
    chores = Housekeeping([["sleep", "60"]], delay=0, interval=86400, log=lambda _: None)
    started = time.monotonic()
    chores.tick()
    chores.tick()
    assert time.monotonic() - started < 1
    running = chores.running
    assert running is not None and running.poll() is None
    chores.stop()
    assert chores.running is None and running.returncode == -signal.SIGTERM


def test_the_dovecot_agent_sweeps_the_folders_the_config_expunges() -> None:
    """The agent's sweep and the rendered autoexpunge come from the same table."""
    commands = daemons.dovecot().housekeeping
    assert [c[c.index("mailbox") + 1 :] for c in commands] == [
        [folder, "savedbefore", f"{days}d"] for folder, days in layout.EXPUNGE_AFTER_DAYS
    ]
    assert all(c[:5] == ["doveadm", "-c", daemons.DOVECOT_CONF, "expunge", "-A"] for c in commands)


def test_postfix_is_probed_on_its_loopback_listener_not_on_port_25() -> None:
    """Sessions holding every smtpd of port 25 make Postfix busy, not dead: its probes greet
    on the probe listener, which has its own process limit."""
    probe = daemons.postfix().probes[0]
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", layout.POSTFIX_PROBE_PORT))
        except OSError:
            pytest.skip(f"port {layout.POSTFIX_PROBE_PORT} is taken on this machine")
        listener.listen(1)
        threading.Thread(
            target=lambda: listener.accept()[0].sendall(b"220 probe ESMTP\r\n"), daemon=True
        ).start()
        assert probe() is None
    assert daemons.postfix().probes[0]() is not None  # nothing listens any more
