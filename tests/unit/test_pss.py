"""The Pod Security Standards checker (tests/pss.py) on pods built to meet or break each control.

A pod that meets Restricted is changed one control at a time: each change must land it at the
level the Kubernetes documentation gives for that control, and name the control.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.pss import Level, level_of, violations

Pod = dict[str, Any]


def restricted_pod() -> Pod:
    """Meets Restricted: non-root, no privilege escalation, ALL dropped, RuntimeDefault."""
    return {
        "metadata": {"name": "p", "annotations": {}},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "initContainers": [{"name": "init", "securityContext": _tight()}],
            "containers": [
                {
                    "name": "app",
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                    "securityContext": {
                        **_tight(),
                        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                    },
                }
            ],
            "volumes": [
                {"name": "c", "configMap": {"name": "c"}},
                {"name": "s", "secret": {"secretName": "s"}},
                {"name": "e", "emptyDir": {}},
                {"name": "v", "persistentVolumeClaim": {"claimName": "v"}},
                {"name": "p", "projected": {"sources": []}},
            ],
        },
    }


def _tight() -> Pod:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def app(pod: Pod) -> Pod:
    container: Pod = pod["spec"]["containers"][0]
    return container


def context(pod: Pod) -> Pod:
    result: Pod = app(pod)["securityContext"]
    return result


def pod_context(pod: Pod) -> Pod:
    result: Pod = pod["spec"]["securityContext"]
    return result


def every_context(pod: Pod) -> list[Pod]:
    """The securityContext of each container, init containers included."""
    return [c["securityContext"] for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]]


Change = Callable[[Pod], None]

# (what, change, the level the pod then meets, the controls named: "A|B" for two)
CASES: list[tuple[str, Change, Level, str]] = [
    ("hostNetwork", lambda p: p["spec"].update(hostNetwork=True), "privileged", "Host Namespaces"),
    ("hostPID", lambda p: p["spec"].update(hostPID=True), "privileged", "Host Namespaces"),
    ("hostIPC", lambda p: p["spec"].update(hostIPC=True), "privileged", "Host Namespaces"),
    (
        "privileged",
        lambda p: context(p).update(privileged=True),
        "privileged",
        "Privileged Containers",
    ),
    (
        "hostProcess",
        lambda p: context(p).update(windowsOptions={"hostProcess": True}),
        "privileged",
        "HostProcess",
    ),
    (
        "SYS_ADMIN added",
        lambda p: context(p)["capabilities"].update(add=["SYS_ADMIN"]),
        "privileged",
        "Capabilities",
    ),
    (
        "NET_RAW added (in Docker's default set, not in the allowed list)",
        lambda p: context(p)["capabilities"].update(add=["NET_RAW"]),
        "privileged",
        "Capabilities",
    ),
    (
        "CHOWN added",
        lambda p: context(p)["capabilities"].update(add=["CHOWN"]),
        "baseline",
        "Capabilities",
    ),
    (
        "an init container adds SETUID",
        lambda p: p["spec"]["initContainers"][0]["securityContext"]["capabilities"].update(
            add=["SETUID"]
        ),
        "baseline",
        "Capabilities",
    ),
    (
        "ALL not dropped",
        lambda p: context(p)["capabilities"].update(drop=["NET_RAW"]),
        "baseline",
        "Capabilities",
    ),
    (
        "no securityContext on a container",
        lambda p: app(p).pop("securityContext"),
        "baseline",
        "Privilege Escalation|Capabilities",
    ),
    (
        "hostPath",
        lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "privileged",
        "HostPath Volumes",
    ),
    (
        "nfs volume",
        lambda p: p["spec"]["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
        "baseline",
        "Volume Types",
    ),
    (
        "hostPort",
        lambda p: app(p)["ports"][0].update(hostPort=80),
        "privileged",
        "Host Ports",
    ),
    (
        "custom SELinux type",
        lambda p: pod_context(p).update(seLinuxOptions={"type": "spc_t"}),
        "privileged",
        "SELinux",
    ),
    (
        "SELinux user",
        lambda p: context(p).update(seLinuxOptions={"user": "system_u"}),
        "privileged",
        "SELinux",
    ),
    (
        "unmasked /proc",
        lambda p: context(p).update(procMount="Unmasked"),
        "privileged",
        "/proc Mount Type",
    ),
    (
        "seccomp Unconfined on the pod",
        lambda p: pod_context(p).update(seccompProfile={"type": "Unconfined"}),
        "privileged",
        "Seccomp",
    ),
    (
        "seccomp Unconfined on a container",
        lambda p: context(p).update(seccompProfile={"type": "Unconfined"}),
        "privileged",
        "Seccomp",
    ),
    (
        "no seccomp profile anywhere",
        lambda p: pod_context(p).pop("seccompProfile"),
        "baseline",
        "Seccomp",
    ),
    (
        "unsafe sysctl",
        lambda p: pod_context(p).update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "privileged",
        "Sysctls",
    ),
    (
        "a sysctl only 1.29 made safe",
        lambda p: pod_context(p).update(
            sysctls=[{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]
        ),
        "privileged",
        "Sysctls",
    ),
    (
        "AppArmor Unconfined (field)",
        lambda p: context(p).update(appArmorProfile={"type": "Unconfined"}),
        "privileged",
        "AppArmor",
    ),
    (
        "AppArmor unconfined (annotation)",
        lambda p: p["metadata"]["annotations"].update(
            {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
        ),
        "privileged",
        "AppArmor",
    ),
    (
        "probe with a host",
        lambda p: app(p)["readinessProbe"]["httpGet"].update(host="10.0.0.1"),
        "privileged",
        "Host Probes / Lifecycle Hooks",
    ),
    (
        "allowPrivilegeEscalation unset",
        lambda p: context(p).pop("allowPrivilegeEscalation"),
        "baseline",
        "Privilege Escalation",
    ),
    (
        "runAsNonRoot unset",
        lambda p: pod_context(p).pop("runAsNonRoot"),
        "baseline",
        "Running as Non-root",
    ),
    (
        "runAsNonRoot false on a container",
        lambda p: context(p).update(runAsNonRoot=False),
        "baseline",
        "Running as Non-root",
    ),
    (
        "runAsUser 0 on the pod",
        lambda p: pod_context(p).update(runAsUser=0),
        "baseline",
        "Running as Non-root user",
    ),
    (
        "runAsUser 0 on a container",
        lambda p: context(p).update(runAsUser=0),
        "baseline",
        "Running as Non-root user",
    ),
]


def test_the_base_pod_meets_restricted() -> None:
    pod = restricted_pod()
    assert violations(pod, "restricted") == []
    assert level_of(pod) == "restricted"


@pytest.mark.parametrize(("what", "change", "level", "control"), CASES, ids=[c[0] for c in CASES])
def test_each_control(what: str, change: Change, level: Level, control: str) -> None:
    pod = restricted_pod()
    change(pod)
    assert level_of(pod) == level, violations(pod, "restricted")
    named = violations(pod, "restricted" if level == "baseline" else "baseline")
    assert {v.split(":")[0] for v in named} == set(control.split("|")), named


def test_allowed_values_are_allowed() -> None:
    pod = restricted_pod()
    pod_context(pod).update(
        seLinuxOptions={"type": "container_t", "level": "s0:c1,c2"},
        sysctls=[{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
        appArmorProfile={"type": "RuntimeDefault"},
    )
    pod["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/app"] = (
        "localhost/mine"
    )
    context(pod).update(procMount="Default", seccompProfile={"type": "Localhost"})
    app(pod)["ports"][0]["hostPort"] = 0
    assert violations(pod, "restricted") == []


def test_container_settings_can_stand_in_for_the_pod() -> None:
    """runAsNonRoot and seccomp on every container instead of the pod."""
    pod = restricted_pod()
    del pod_context(pod)["runAsNonRoot"], pod_context(pod)["seccompProfile"]
    for context in every_context(pod):
        context.update(runAsNonRoot=True, seccompProfile={"type": "RuntimeDefault"})
    assert level_of(pod) == "restricted"


def test_the_pod_setting_cannot_be_undone_by_none() -> None:
    """A pod-level runAsNonRoot: false is a violation even if every container says true."""
    pod = restricted_pod()
    pod_context(pod)["runAsNonRoot"] = False
    for context in every_context(pod):
        context["runAsNonRoot"] = True
    assert level_of(pod) == "baseline"


def test_windows_pods_skip_the_linux_only_controls() -> None:
    pod = restricted_pod()
    pod["spec"]["os"] = {"name": "windows"}
    del pod_context(pod)["seccompProfile"]
    context(pod).pop("allowPrivilegeEscalation")
    context(pod).pop("capabilities")
    assert level_of(pod) == "restricted"


def test_a_default_pod_meets_baseline() -> None:
    """The documentation: Baseline "allows the default (minimally specified) Pod"."""
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert level_of(copy.deepcopy(pod)) == "baseline"
