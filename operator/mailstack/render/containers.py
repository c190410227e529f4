"""The parts of a mail pod's containers: the agent's container, its security context and
probes, volume mounts and volumes. Shared by the StatefulSets (``render.workloads``) and the
optional containers beside them (``render.clamav``).
"""

from __future__ import annotations

from typing import Any

from mailstack.kubedoc import Obj
from mailstack.render import layout
from mailstack.render.objects import RenderOptions

_SECRET_MODE = 0o440
_CONFIG_MODE = 0o444


def security_context(capabilities: list[str], run_as: tuple[int, int] | None) -> Obj:
    """Every capability dropped but ``capabilities``; ``run_as``: (uid, gid) of a container
    that runs as that user rather than root (it then keeps no capability at all)."""
    context: Obj = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], **({"add": capabilities} if capabilities else {})},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as is not None:
        context.update(runAsNonRoot=True, runAsUser=run_as[0], runAsGroup=run_as[1])
    return context


def probes() -> Obj:
    return {
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "health"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 2,
        },
    }


def container(
    daemon: str,
    options: RenderOptions,
    ports: list[Obj],
    mounts: list[Obj],
    resources: Obj,
    capabilities: list[str],
    env: dict[str, str] | None = None,
    run_as: tuple[int, int] | None = None,
) -> Obj:
    health = layout.HEALTH_PORTS[daemon]
    return {
        "name": daemon,
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": ["mailstack"],
        "args": ["agent", daemon, "--health-port", str(health)],
        **({"env": [{"name": k, "value": v} for k, v in env.items()]} if env else {}),
        "ports": [*ports, {"name": "health", "containerPort": health, "protocol": "TCP"}],
        "volumeMounts": mounts,
        **probes(),  # on the named "health" port
        "resources": resources,
        "securityContext": security_context(capabilities, run_as),
    }


def port(entry: layout.Port) -> Obj:
    return {"name": entry.name, "containerPort": entry.number, "protocol": "TCP"}


def mount(name: str, path: str, read_only: bool = True, sub_path: str | None = None) -> Obj:
    result: Obj = {"name": name, "mountPath": path, "readOnly": read_only}
    if sub_path:
        result["subPath"] = sub_path
    return result


def config_map_volume(name: str, config_map: str, keys: list[str] | None = None) -> Obj:
    source: dict[str, Any] = {"name": config_map, "defaultMode": _CONFIG_MODE}
    if keys is not None:
        source["items"] = [{"key": key, "path": key} for key in keys]
    return {"name": name, "configMap": source}


def secret_volume(name: str, secret: str, keys: list[str] | None = None) -> Obj:
    source: dict[str, Any] = {"secretName": secret, "defaultMode": _SECRET_MODE}
    if keys is not None:
        source["items"] = [{"key": key, "path": key} for key in keys]
    return {"name": name, "secret": source}


def empty_dir(name: str, memory: bool = False) -> Obj:
    return {"name": name, "emptyDir": {"medium": "Memory"} if memory else {}}
