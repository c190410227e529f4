"""The host side of ``mailstack up`` that runs without root: preflight refusals, the restart
back-off, and a render whose pod refers to an object it does not hold."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mailstack.local import preflight, processes, runtime, up
from mailstack.local.container import overlay_options
from mailstack.local.pods import ContainerPlan, PodPlan, plan_pods
from mailstack.local.preflight import PreflightError
from mailstack.local.processes import RunningContainer
from mailstack.local.runtime import LocalRuntime, RuntimeConfigError
from tests.support import EXAMPLES, FIXTURE_STATE


def _pod_missing_its_config(objects: list[dict[str, Any]]) -> tuple[PodPlan, str]:
    """The first pod with a ConfigMap/Secret volume, that volume's object taken away."""
    for pod in plan_pods(objects):
        for volume in pod.volumes.values():
            if volume.kind in ("configMap", "secret"):
                broken = dataclasses.replace(volume, source=None)
                return dataclasses.replace(pod, volumes={volume.name: broken}), volume.name
    raise AssertionError("no pod of the example mounts a ConfigMap or Secret")


@pytest.fixture
def no_host_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A LocalRuntime that does not look at this host's addresses for a subnet."""
    monkeypatch.setattr(
        runtime, "choose_subnet", lambda run_id: ipaddress.IPv4Network("10.250.0.0/24")
    )


@pytest.mark.usefixtures("no_host_network")
def test_a_volume_of_a_missing_object_is_a_config_error(
    example_render: list[dict[str, Any]], tmp_path: Path
) -> None:
    pod, volume = _pod_missing_its_config(example_render)
    local = LocalRuntime(tmp_path, ["127.0.0.1"], 0)
    message = f"^{pod.key}: volume {volume} refers to a missing object$"
    with pytest.raises(RuntimeConfigError, match=message):
        local.sync_volumes(pod)


@pytest.mark.usefixtures("no_host_network")
def test_up_reports_the_missing_object_and_stops(
    example_render: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pod, volume = _pod_missing_its_config(example_render)
    monkeypatch.setattr(up, "check_host", lambda: None)
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)
    monkeypatch.setattr(LocalRuntime, "start", lambda self, objects: self.sync_volumes(pod))
    state = tmp_path / "state"
    shutil.copytree(FIXTURE_STATE, state)
    assert up.run_up([str(EXAMPLES)], str(state), ["127.0.0.1"], 0) == 1
    err = capsys.readouterr().err
    assert f"error: {pod.key}: volume {volume} refers to a missing object\n" in err
    assert "mailstack up: stopped" in err
    assert not (state / "ready").exists()


def test_a_second_run_on_one_state_is_refused(tmp_path: Path) -> None:
    with (
        preflight.lock_state(tmp_path / "state"),
        pytest.raises(PreflightError, match="another mailstack up is running"),
    ):
        preflight.lock_state(tmp_path / "state")
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    preflight.lock_state(tmp_path / "state").close()  # free again once the first run ends


def test_up_refuses_to_run_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PreflightError, match="must run as root"):
        preflight.check_host()


def test_up_refuses_to_run_without_the_vmail_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dovecot runs as vmail (uid 5000), a name it looks up, as in the mail image."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(preflight, "missing_packages", lambda: [])

    def no_such_user(name: str) -> None:
        raise KeyError(name)

    monkeypatch.setattr(preflight.pwd, "getpwnam", no_such_user)
    with pytest.raises(PreflightError, match=r"vmail with uid 5000.*scripts/setup\.sh"):
        preflight.check_host()


def test_missing_packages_name_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(preflight, "REQUIRED", {"ip": "iproute2", "no-such-tool": "tools"})
    monkeypatch.setattr(
        preflight, "REQUIRED_FILES", {"/no/such/a": "dovecot-x", "/no/such/b": "dovecot-x"}
    )
    assert preflight.missing_packages() == ["dovecot-x", "tools"]
    with pytest.raises(PreflightError) as refusal:
        preflight.check_host()
    assert str(refusal.value) == (
        "missing Debian packages: dovecot-x tools (apt-get install dovecot-x tools)"
    )


def test_an_exited_container_restarts_with_back_off() -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    running = RunningContainer(
        ContainerPlan("c", ["true"], [], None), process, started=time.monotonic()
    )
    now = time.monotonic()
    assert not processes.restart_due(running, "ns/pod/c", now)  # scheduled: 1 s
    assert running.next_start == now + 1
    assert not processes.restart_due(running, "ns/pod/c", now + 0.5)
    assert processes.restart_due(running, "ns/pod/c", now + 1)
    assert (running.restarts, running.next_start) == (1, 0.0)
    running.restarts = 10
    assert not processes.restart_due(running, "ns/pod/c", now)
    assert running.next_start == now + processes.MAX_RESTART_DELAY
    # Ten good minutes reset the back-off, as the kubelet does.
    running.next_start = 0.0
    later = running.started + processes.BACKOFF_RESET_SECONDS + 1
    assert not processes.restart_due(running, "ns/pod/c", later)
    assert (running.restarts, running.next_start) == (0, later + 1)


def test_a_replaced_hosts_file_of_the_host_does_not_reach_the_container(tmp_path: Path) -> None:
    """The container's /etc is the host's (here a folder standing for it) under a layer of its
    own: a host tool renaming a new hosts file over the host's leaves the pod's in place."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("run as root with util-linux (./scripts/setup.sh)")
    host_etc = tmp_path / "etc"
    host_etc.mkdir()
    (host_etc / "hosts").write_text("127.0.0.1 host-only\n")
    (host_etc / "marker").write_text("the host's /etc\n")
    pod_hosts, pod_resolv = tmp_path / "pod-hosts", tmp_path / "pod-resolv"
    pod_hosts.write_text("10.0.0.3 example-com-mda\n")
    pod_resolv.write_text("nameserver 192.0.2.1\n")
    spec = {
        "command": ["sh", "-c", "sleep 1; cat /etc/hosts /etc/marker /etc/resolv.conf"],
        "mounts": [],
        "hosts": str(pod_hosts),
        "resolv": str(pod_resolv),
        "etc": str(host_etc),
        "env": {},
        "keep": runtime.image_paths(),
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    command = [
        *("unshare", "--mount", "--pid", "--fork", sys.executable, "-m"),
        *("mailstack.local.container", str(tmp_path / "spec.json")),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "operator")}
    container = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(0.5)
    fresh = host_etc / ".hosts.new"
    fresh.write_text("127.0.0.1 rewritten-by-a-host-tool\n")
    os.replace(fresh, host_etc / "hosts")
    output, _ = container.communicate(timeout=30)
    assert container.returncode == 0
    assert output == ("10.0.0.3 example-com-mda\nthe host's /etc\nnameserver 192.0.2.1\n")
    assert not (host_etc / "mailstack").exists()  # the container's mount point is its own


def test_the_overlay_refuses_a_host_etc_its_options_cannot_carry() -> None:
    assert overlay_options("/etc", "/run/x") == (
        "lowerdir=/etc,upperdir=/run/x/upper,workdir=/run/x/work"
    )
    for bad in ("/tmp/a,b", "/tmp/a:b", "etc"):
        with pytest.raises(ValueError, match="absolute path without"):
            overlay_options(bad, "/run/x")
