"""Turn rendered objects into local pods: which containers, which mounts, which names resolve.

Pure: from the objects of a render to ``PodPlan`` values. The runtime then makes them real. A
StatefulSet ``<sts>`` becomes pod ``<sts>-0``; its PVCs are ``<claim>-<sts>-0`` as in a cluster.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mailstack.kubedoc import Obj, ObjectRef, meta_of
from mailstack.local.security import Security, container_security
from mailstack.render.network import EXPOSURE_ANNOTATION


@dataclass
class VolumePlan:
    """A pod volume: a ConfigMap/Secret projection (``source`` is the object, None when the
    render has none of that name; ``items`` and ``mode`` as in the volume source), an emptyDir,
    or a PVC of the StatefulSet (``claim``: the PVC's name)."""

    name: str
    kind: str  # configMap | secret | emptyDir | claim
    source: Obj | None = None  # the ConfigMap/Secret object
    items: list[Obj] | None = None
    mode: int = 0o644
    claim: str = ""


# Volume sources that project an object's keys as files: the object's kind, and the field of the
# volume source that names it.
_OBJECT_VOLUMES = {"configMap": ("ConfigMap", "name"), "secret": ("Secret", "secretName")}


@dataclass
class ContainerPlan:
    """A container: the command to run on this host, its volume mounts, the port of its agent's
    ``/readyz`` (None: nothing to wait for), its literal env values and how it runs
    (``local.security``)."""

    name: str
    command: list[str]
    mounts: list[Obj]  # {"volume", "target", "readOnly"}
    health_port: int | None
    env: dict[str, str] = field(default_factory=dict)  # the container's literal env values
    security: Security = field(default_factory=Security)  # user, groups, capabilities


@dataclass
class PodPlan:
    """Pod ``<sts>-0`` of a StatefulSet: labels, fsGroup, volumes, containers, named container
    ports, the template as JSON (a change restarts the pod), the grace period to stop it and
    the pod's sysctls."""

    namespace: str
    name: str
    statefulset: str
    labels: dict[str, str]
    fs_group: int | None
    volumes: dict[str, VolumePlan]
    containers: list[ContainerPlan]
    ports: dict[str, int]  # named container ports of the pod
    template_digest: str
    grace_seconds: int = 30
    services: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)  # set in the pod's network namespace

    @property
    def key(self) -> str:
        """``namespace/name``: the pod's key in the runtime's tables."""
        return f"{self.namespace}/{self.name}"


def _image_command(container: Obj) -> list[str]:
    command = list(container.get("command", [])) + list(container.get("args", []))
    if command and command[0] == "mailstack":
        # The mail image's entry point is this very package.
        command = [sys.executable, "-m", "mailstack", *command[1:]]
    return command


def plan_pods(objects: list[Obj]) -> list[PodPlan]:
    """One pod for each StatefulSet of the render (the local runtime runs one replica)."""
    by_ref: dict[tuple[str, str, str], Obj] = {}  # (kind, namespace, name) -> object
    for obj in objects:
        obj_ref = ObjectRef.of(obj)
        by_ref[obj["kind"], obj_ref.namespace, obj_ref.name] = obj
    pods = []
    for sts in (o for o in objects if o["kind"] == "StatefulSet"):
        sts_ref = ObjectRef.of(sts)
        namespace = sts_ref.namespace
        template = sts["spec"]["template"]
        spec = template["spec"]
        pod_name = f"{sts_ref.name}-0"
        volumes: dict[str, VolumePlan] = {}
        for volume in spec.get("volumes", []):
            source = next((s for s in _OBJECT_VOLUMES if s in volume), None)
            if source is not None:
                kind, name_field = _OBJECT_VOLUMES[source]
                ref = volume[source]
                volumes[volume["name"]] = VolumePlan(
                    volume["name"],
                    source,
                    by_ref.get((kind, namespace, ref[name_field])),
                    ref.get("items"),
                    ref.get("defaultMode", 0o644),
                )
            elif "emptyDir" in volume:
                volumes[volume["name"]] = VolumePlan(volume["name"], "emptyDir")
        for claim in sts["spec"].get("volumeClaimTemplates", []):
            name = claim["metadata"]["name"]
            volumes[name] = VolumePlan(name, "claim", claim=f"{name}-{pod_name}")
        containers = []
        ports: dict[str, int] = {}
        for container in spec["containers"]:
            health = None
            for port in container.get("ports", []):
                ports[port["name"]] = port["containerPort"]
                if port["name"] == "health":
                    health = port["containerPort"]
            containers.append(
                ContainerPlan(
                    container["name"],
                    _image_command(container),
                    [
                        {
                            "volume": m["name"],
                            "target": m["mountPath"],
                            "readOnly": m.get("readOnly", False),
                            **({"subPath": m["subPath"]} if m.get("subPath") else {}),
                        }
                        for m in container.get("volumeMounts", [])
                    ],
                    health,
                    {e["name"]: e["value"] for e in container.get("env", [])},
                    container_security(spec, container),
                )
            )
        pods.append(
            PodPlan(
                namespace=namespace,
                name=pod_name,
                statefulset=sts_ref.name,
                labels=dict(template["metadata"].get("labels", {})),
                fs_group=spec.get("securityContext", {}).get("fsGroup"),
                volumes=volumes,
                containers=containers,
                ports=ports,
                template_digest=json.dumps(template, sort_keys=True),
                grace_seconds=min(int(spec.get("terminationGracePeriodSeconds", 30)), 30),
                sysctls={
                    s["name"]: str(s["value"])
                    for s in (spec.get("securityContext") or {}).get("sysctls") or []
                },
            )
        )
    return pods


def service_addresses(
    objects: list[Obj], pods: list[PodPlan], address: dict[str, str]
) -> list[tuple[str, str]]:
    """(host name, address) pairs for /etc/hosts: every Service and pod name of the render."""
    entries: list[tuple[str, str]] = []
    for service in (o for o in objects if o["kind"] == "Service"):
        service_ref = ObjectRef.of(service)
        ns, name = service_ref.namespace, service_ref.name
        selector = service["spec"].get("selector", {})
        targets = {p.get("targetPort") for p in service["spec"].get("ports", [])}
        chosen = [
            p
            for p in pods
            if p.namespace == ns and selector.items() <= p.labels.items() and targets & set(p.ports)
        ]
        if not chosen:
            continue
        ip = address[chosen[0].key]
        entries.append((f"{name} {name}.{ns} {name}.{ns}.svc {name}.{ns}.svc.cluster.local", ip))
    for pod in pods:
        entries.append((pod.name, address[pod.key]))
    return entries


# Each further MailDomain of one ``up`` is published this many ports higher: a host has one set
# of standard ports per address, as a cluster has one load-balancer address per Service.
DOMAIN_PORT_STEP = 1000


@dataclass(frozen=True)
class Forward:
    """A published port of a MailDomain (``domain``): the Service port's ``name``, the
    ``port`` published, the ``pod`` (key) and the container port (``target``) it reaches."""

    domain: str
    port: int  # the published port, before --port-offset
    pod: str
    name: str
    target: int
    proxied: bool = False  # behind the run's HAProxy (exposure ProxyProtocol), not DNAT


def _published(service: Obj) -> bool:
    """Whether a Service is published on this host: one of a type a cluster exposes, or one
    whose exposure annotation says how its pods are reached (HostPort, ProxyProtocol)."""
    exposure = meta_of(service).get("annotations", {}).get(EXPOSURE_ANNOTATION)
    return service["spec"].get("type", "ClusterIP") != "ClusterIP" or exposure is not None


def public_forwards(objects: list[Obj], pods: list[PodPlan]) -> list[Forward]:
    """Every public Service port and the pod port it reaches.

    The MailDomains are ranked by domain name: the first gets the standard ports, the next ones
    the standard ports + ``DOMAIN_PORT_STEP`` × rank.
    """
    services = [o for o in objects if o["kind"] == "Service" and _published(o)]

    def domain_of(service: Obj) -> str:
        meta = meta_of(service)
        return str(meta.get("annotations", {}).get("mailstack.dev/domain", meta["name"]))

    result = []
    for rank, service in enumerate(sorted(services, key=domain_of)):
        namespace = ObjectRef.of(service).namespace
        exposure = meta_of(service).get("annotations", {}).get(EXPOSURE_ANNOTATION)
        selector = service["spec"].get("selector", {})
        for port in service["spec"]["ports"]:
            for pod in pods:
                if (
                    pod.namespace == namespace
                    and selector.items() <= pod.labels.items()
                    and port["targetPort"] in pod.ports
                ):
                    result.append(
                        Forward(
                            domain_of(service),
                            port["port"] + DOMAIN_PORT_STEP * rank,
                            pod.key,
                            port["name"],
                            pod.ports[port["targetPort"]],
                            proxied=exposure == "ProxyProtocol",
                        )
                    )
                    break
    return result


def volume_root(state: Path, pod: PodPlan) -> Path:
    """The pod's folder in the state: its ConfigMap/Secret volumes, emptyDirs, hosts,
    resolv.conf and container specs. Its PVCs are not here but in ``volumes/<namespace>/``."""
    return state / "pods" / pod.namespace / pod.name
