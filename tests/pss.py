"""A checker of the Kubernetes Pod Security Standards: which level a pod (template) meets.

Written from the Kubernetes documentation ("Pod Security Standards", concepts/security), control
by control, for the Pod Security admission of Kubernetes 1.28 and later: where a later release
relaxed a control (more safe sysctls, the ``container_engine_t`` SELinux type) this keeps the
1.28 list, and where a later release added one (no ``host`` in probes and lifecycle hooks,
1.34) it is checked, so that "restricted" here holds on every release from 1.28 on. The
optional "non-root groups" control, which the admission controller does not enforce, is left
out, and so is the relief user namespaces (``hostUsers: false``) give.

``violations(pod, level)`` lists what breaks ``baseline`` or ``restricted`` (restricted includes
baseline), one line per control and container; ``level_of(pod)`` is the strictest level met.
``pod`` is a Pod or a pod template: a mapping with ``metadata`` and ``spec``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

Level = Literal["privileged", "baseline", "restricted"]
Doc = Mapping[str, Any]

# Baseline, "Capabilities": what containers may add.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# Restricted, "Capabilities": drop ALL, add back at most this.
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
# Baseline, "Sysctls": the safe ones of Kubernetes 1.28 (1.29 added the tcp_keepalive_* and
# tcp_fin_timeout ones).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
    }
)
# Baseline, "SELinux": the types that may be set (1.31 added container_engine_t).
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
# Restricted, "Volume Types": a volume must be one of these.
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
HOOKS = ("postStart", "preStop")


def _containers(spec: Doc) -> Iterator[tuple[str, Doc]]:
    for field in CONTAINER_LISTS:
        for container in spec.get(field) or []:
            yield f"{field}[{container.get('name', '?')}]", container


def _context(doc: Doc) -> Doc:
    return doc.get("securityContext") or {}


def baseline_violations(pod: Doc) -> list[str]:
    """What breaks the Baseline policy, one line per control and place."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    found: list[str] = []
    pod_context = _context(spec)
    if _windows(pod_context.get("windowsOptions")):
        found.append("HostProcess: spec.securityContext.windowsOptions.hostProcess")
    found += [
        f"Host Namespaces: spec.{f}" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)
    ]
    found += [
        f"HostPath Volumes: volume {v.get('name')}"
        for v in spec.get("volumes") or []
        if v.get("hostPath") is not None
    ]
    found += _selinux("spec.securityContext", pod_context.get("seLinuxOptions"))
    found += _apparmor("spec.securityContext", pod_context.get("appArmorProfile"))
    if (pod_context.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append("Seccomp: spec.securityContext.seccompProfile.type is Unconfined")
    found += [
        f"Sysctls: {s.get('name')}"
        for s in pod_context.get("sysctls") or []
        if s.get("name") not in SAFE_SYSCTLS
    ]
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            found.append(f"AppArmor: annotation {key}={value}")
    for where, container in _containers(spec):
        context = _context(container)
        if _windows(context.get("windowsOptions")):
            found.append(f"HostProcess: {where}")
        if context.get("privileged"):
            found.append(f"Privileged Containers: {where}")
        added = set((context.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            found.append(f"Capabilities: {where} adds {', '.join(sorted(added))}")
        found += [
            f"Host Ports: {where} port {p.get('containerPort')} on host port {p['hostPort']}"
            for p in container.get("ports") or []
            if p.get("hostPort")
        ]
        found += _host_probes(where, container)
        found += _selinux(where, context.get("seLinuxOptions"))
        found += _apparmor(where, context.get("appArmorProfile"))
        if context.get("procMount") not in (None, "Default"):
            found.append(f"/proc Mount Type: {where} procMount {context['procMount']}")
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"Seccomp: {where} seccompProfile.type is Unconfined")
    return found


def restricted_violations(pod: Doc) -> list[str]:
    """What breaks the Restricted policy beyond Baseline, one line per control and place."""
    spec = pod.get("spec") or {}
    found: list[str] = []
    pod_context = _context(spec)
    linux = (spec.get("os") or {}).get("name") != "windows"
    for volume in spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name" and volume[k] is not None]
        if not set(kinds) & RESTRICTED_VOLUMES:
            found.append(f"Volume Types: volume {volume.get('name')} is {', '.join(kinds)}")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    if linux and pod_seccomp is not None and pod_seccomp not in SECCOMP_TYPES:
        found.append(f"Seccomp: spec.securityContext.seccompProfile.type is {pod_seccomp}")
    if pod_context.get("runAsNonRoot") is False:
        found.append("Running as Non-root: spec.securityContext.runAsNonRoot is false")
    if pod_context.get("runAsUser") == 0:
        found.append("Running as Non-root user: spec.securityContext.runAsUser is 0")
    for where, container in _containers(spec):
        context = _context(container)
        non_root = context.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod_context.get("runAsNonRoot") is not True):
            found.append(f"Running as Non-root: {where} (runAsNonRoot is not true)")
        if context.get("runAsUser") == 0:
            found.append(f"Running as Non-root user: {where} runAsUser is 0")
        if not linux:
            continue
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"Privilege Escalation: {where} (allowPrivilegeEscalation is not false)")
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in SECCOMP_TYPES:
            found.append(f"Seccomp: {where} seccompProfile.type is {seccomp}")
        elif seccomp is None and pod_seccomp not in SECCOMP_TYPES:
            found.append(f"Seccomp: {where} (no profile, none for the pod)")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"Capabilities: {where} does not drop ALL")
        added = set(capabilities.get("add") or []) - RESTRICTED_CAPABILITIES
        if added:
            found.append(f"Capabilities: {where} adds {', '.join(sorted(added))}")
    return found


def violations(pod: Doc, level: Level) -> list[str]:
    """What keeps the pod from meeting ``level`` (nothing for ``privileged``)."""
    if level == "privileged":
        return []
    found = baseline_violations(pod)
    if level == "restricted":
        found += restricted_violations(pod)
    return found


def level_of(pod: Doc) -> Level:
    """The strictest level the pod meets."""
    if violations(pod, "restricted") == []:
        return "restricted"
    if violations(pod, "baseline") == []:
        return "baseline"
    return "privileged"


def _windows(options: Doc | None) -> bool:
    return bool((options or {}).get("hostProcess"))


def _selinux(where: str, options: Doc | None) -> list[str]:
    options = options or {}
    found = []
    if options.get("type", "") not in SELINUX_TYPES:
        found.append(f"SELinux: {where} type {options['type']}")
    found += [f"SELinux: {where} sets {key}" for key in ("user", "role") if options.get(key)]
    return found


def _apparmor(where: str, profile: Doc | None) -> list[str]:
    kind = (profile or {}).get("type")
    return [] if kind in (None, *APPARMOR_TYPES) else [f"AppArmor: {where} profile {kind}"]


def _host_probes(where: str, container: Doc) -> list[str]:
    handlers = [(name, container.get(name) or {}) for name in PROBES]
    handlers += [(f"lifecycle.{h}", (container.get("lifecycle") or {}).get(h) or {}) for h in HOOKS]
    return [
        f"Host Probes / Lifecycle Hooks: {where} {name}.{action}.host"
        for name, handler in handlers
        for action in ("httpGet", "tcpSocket")
        if (handler.get(action) or {}).get("host")
    ]
