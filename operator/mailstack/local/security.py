"""A container's security context as a cluster applies it, and the ``setpriv`` line that does so
here: what makes ``mailstack up`` (and so tests/mail) fail where a cluster would.

Owns ``Security`` (decided purely from the pod spec): the capabilities the process keeps (the
container runtime's default set, less ``drop`` (``ALL``: everything), plus ``add``), the user
and group it runs as (``runAsUser``/``runAsGroup``, the container's over the pod's; root when
unset, as the mail image's ``USER root``), its supplementary groups (``fsGroup`` and
``supplementalGroups``, which the kubelet adds) and ``no_new_privs``
(``allowPrivilegeEscalation: false``). As in a cluster, capabilities reach a root process only:
a process of another user starts with none (Kubernetes sets no ambient capabilities), and with
``no_new_privs`` no file capability or set-user-ID bit gives it any.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# containerd's and CRI-O's default capabilities: what a container keeps when it drops nothing.
RUNTIME_DEFAULT_CAPABILITIES = (
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
)


class SecurityError(Exception):
    """The container cannot start as its security context says (the kubelet's refusal)."""


@dataclass(frozen=True)
class Security:
    """How a container's process runs: ``user``/``group`` (image ids; None: root), the
    supplementary ``groups``, the ``capabilities`` a root process keeps, ``no_new_privs``, and
    ``non_root`` (``runAsNonRoot``: refuse to run as uid 0)."""

    user: int | None = None
    group: int | None = None
    groups: tuple[int, ...] = ()
    capabilities: tuple[str, ...] = RUNTIME_DEFAULT_CAPABILITIES
    no_new_privs: bool = False
    non_root: bool = False


def container_security(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> Security:
    """The container's ``Security`` from its and the pod's securityContext."""
    pod = pod_spec.get("securityContext") or {}
    own = container.get("securityContext") or {}

    def setting(key: str) -> Any:
        return own[key] if own.get(key) is not None else pod.get(key)

    capabilities = own.get("capabilities") or {}
    drop = set(capabilities.get("drop") or [])
    kept = set() if "ALL" in drop else set(RUNTIME_DEFAULT_CAPABILITIES) - drop
    kept |= set(capabilities.get("add") or [])
    groups = [pod["fsGroup"]] if pod.get("fsGroup") is not None else []
    groups += [g for g in pod.get("supplementalGroups") or [] if g not in groups]
    return Security(
        user=setting("runAsUser"),
        group=setting("runAsGroup"),
        groups=tuple(groups),
        capabilities=tuple(sorted(kept)),
        no_new_privs=own.get("allowPrivilegeEscalation") is False,
        non_root=bool(setting("runAsNonRoot")),
    )


@dataclass(frozen=True)
class HostIds:
    """This host's ids for the image's: ``uid`` and ``gid`` map an image id (the image pins
    some, a host's packages chose their own), ``primary_gid`` is a host user's group."""

    uid: Callable[[int], int]
    gid: Callable[[int], int]
    primary_gid: Callable[[int], int]


def setpriv_command(security: Security, ids: HostIds) -> list[str]:
    """``setpriv`` (util-linux) options that run a command as ``security`` says; raises
    ``SecurityError`` for a ``runAsNonRoot`` container that would run as root, which the
    kubelet refuses to start. Without ``runAsGroup`` the user's own group, as the runtime."""
    uid = ids.uid(security.user) if security.user is not None else 0
    if security.non_root and uid == 0:
        raise SecurityError("container has runAsNonRoot and would run as root (uid 0)")
    caps = ",".join(["-all", *(f"+{c.lower()}" for c in security.capabilities)])
    argv = ["setpriv", f"--bounding-set={caps}", "--inh-caps=-all"]
    if security.user is not None or security.group is not None:
        gid = ids.gid(security.group) if security.group is not None else ids.primary_gid(uid)
        argv += [f"--reuid={uid}", f"--regid={gid}"]
    groups = [ids.gid(g) for g in security.groups]
    argv += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    if security.no_new_privs:
        argv.append("--no-new-privs")
    return [*argv, "--"]
