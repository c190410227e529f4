"""A Kubernetes API server emulator for component tests: kmock 0.8, made realistic.

kmock's ``KubernetesScaffold`` serves discovery (``/api``, ``/apis``, resource lists) and runs
on kmock's aiohttp test server; its ``KubernetesEmulator`` keeps objects as plain dicts, which
is not enough for an operator (measured: no resourceVersion, no uid, no
server-side apply, status subresource writes change the spec, ...). This module replaces the
object handling with a ``Store`` that behaves like kube-apiserver where an operator can tell:

- metadata: uid, resourceVersion (one increasing counter), generation (bumped only when
  something outside metadata and status changes), creationTimestamp, generateName, managedFields;
  the namespace of a namespaced object must exist;
- optimistic concurrency: a stale ``metadata.resourceVersion`` in a patch/update → 409;
- status subresource separation: main-resource writes keep the status, ``/status`` writes keep
  everything else; ``/status`` of a kind without one → 404;
- patches: JSON merge patch, JSON patch (failed ``test`` → 422), strategic merge patch (the
  list merge keys the tests need), PUT;
- server-side apply (``application/apply-patch+yaml``): create-or-merge with per-manager field
  ownership: fields a manager stops applying are removed, fields another manager changed are a
  409 conflict unless ``force=true``; applying identical content writes nothing;
- no-op writes (nothing changed) neither bump the resourceVersion nor emit a watch event;
- admission: CRD structural schemas from ``crds/*.yaml`` (prune, default, validate, CEL rules;
  see ``schema.py``) and the Kubernetes 1.30 schemas (``kubernetes-validate``, strict) for
  built-in kinds, ownerReferences with uid, label syntax, StatefulSet spec immutability → 422;
- deletion with finalizers (deletionTimestamp first), garbage collection through
  ownerReferences (background and orphan propagation, dangling owners);
- watches with resourceVersion resume, history-based replay, 410 Gone when too old, label and
  field selectors (objects leaving a selector are DELETED for that watch), bookmarks;
- a minimal StatefulSet controller (PVCs from volumeClaimTemplates, with ownerReferences when
  ``whenDeleted: Delete``; status with ``readyReplicas``) and ClusterIP assignment for Services.

Every write is logged (``Store.writes``) with who made it and whether it changed anything: the
tests count the operator's writes with it. Not emulated: RBAC, admission webhooks, pods,
strategic-merge directives (``$patch``), associative-list merging inside server-side apply
(lists are atomic here), field selectors beyond metadata.name/namespace.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import functools
import itertools
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonschema
import kmock
import referencing
import yaml
from kubernetes_validate.utils import schema_contents

from tests.component.schema import CustomResourceSchema, load_crd

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
CRD_FILES = (ROOT / "crds" / "maildomain.yaml", ROOT / "crds" / "mailbox.yaml")
KUBE_VERSION = "1.30"

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

# Server-owned metadata: never part of a manager's fields, never taken from a request body.
_SERVER_META = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)
# StatefulSet spec fields that may change after creation (apps/v1 validation).
_STS_MUTABLE = {
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
}
# Strategic merge patch: list merge keys of the fields the tests patch.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "conditions": "type",
    "ownerReferences": "uid",
}


class ApiStatus(Exception):
    """A Kubernetes Status failure: HTTP code, reason, message, optional causes."""

    def __init__(
        self, code: int, reason: str, message: str, causes: list[str] | None = None
    ) -> None:
        self.code, self.reason, self.message, self.causes = code, reason, message, causes or []
        super().__init__(f"{code} {reason}: {message}")

    def body(self) -> Obj:
        details: Obj = {}
        if self.causes:
            details["causes"] = [{"message": c} for c in self.causes]
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
            "details": details,
        }


@dataclass
class ResourceDef:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False  # has a status subresource
    generation: bool = False  # metadata.generation is maintained
    schema: CustomResourceSchema | None = None  # custom resources
    validate: bool = False  # built-in: validate with kubernetes-validate
    singular: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)


def cert_manager_resources() -> list[ResourceDef]:
    """cert-manager's Certificate, for tests of the certManager issuer (no schema checks)."""
    return [
        ResourceDef(
            "cert-manager.io", "v1", "certificates", "Certificate", status=True, generation=True
        )
    ]


def external_dns_resources() -> list[ResourceDef]:
    """external-dns's DNSEndpoint, with its schema (``tests/fixtures/crds``)."""
    return crd_resources(
        [ROOT / "tests" / "fixtures" / "crds" / "dnsendpoints.externaldns.k8s.io.yaml"]
    )


def builtin_resources() -> list[ResourceDef]:
    r = ResourceDef
    return [
        r("", "v1", "namespaces", "Namespace", namespaced=False, status=True),
        r("", "v1", "configmaps", "ConfigMap", validate=True),
        r("", "v1", "secrets", "Secret", validate=True),
        r("", "v1", "services", "Service", status=True, validate=True),
        r("", "v1", "serviceaccounts", "ServiceAccount", validate=True),
        r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", status=True),
        r("", "v1", "events", "Event"),
        r("events.k8s.io", "v1", "events", "Event"),
        r("apps", "v1", "statefulsets", "StatefulSet", status=True, generation=True, validate=True),
        r(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            generation=True,
            validate=True,
        ),
        r(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            status=True,
            generation=True,
            validate=True,
        ),
        r("coordination.k8s.io", "v1", "leases", "Lease"),
        r("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False),
        r("kopf.dev", "v1", "kopfpeerings", "KopfPeering"),
    ]


def crd_resources(paths: Iterable[Path] = CRD_FILES) -> list[ResourceDef]:
    result = []
    for path in paths:
        crd = load_crd(path)
        spec = crd["spec"]
        version = next(v for v in spec["versions"] if v.get("storage"))
        result.append(
            ResourceDef(
                spec["group"],
                version["name"],
                spec["names"]["plural"],
                spec["names"]["kind"],
                namespaced=spec["scope"] == "Namespaced",
                status="status" in (version.get("subresources") or {}),
                generation=True,
                schema=CustomResourceSchema.from_crd(crd),
                singular=spec["names"].get("singular", ""),
            )
        )
    return result


@functools.cache
def builtin_validator(api_version: str, kind: str) -> Any:
    """A strict Kubernetes 1.30 schema validator for one kind (kubernetes-validate's files)."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{KUBE_VERSION}.0-local-strict"
    schema = schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", KUBE_VERSION)
    definitions = schema_contents(f"{folder}/_definitions.json", KUBE_VERSION)
    # The same registry kubernetes_validate.validate builds, once per kind instead of per call.
    registry = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = referencing.Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


# --- selectors --------------------------------------------------------------------------------


def parse_label_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """The equality- and set-based label selector syntax."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for part in re.findall(r"(?:[^,(]|\([^)]*\))+", text or ""):
        part = part.strip()
        if not part:
            continue
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", part):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", part):
            key, op, value = m.groups()
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif part.startswith("!"):
            checks.append(lambda labels, k=part[1:]: k not in labels)
        elif re.fullmatch(r"[^=!\s]+", part):
            checks.append(lambda labels, k=part: k in labels)
        else:
            raise ApiStatus(400, "BadRequest", f"unable to parse requirement: {part!r}")
    return lambda labels: all(check(labels) for check in checks)


def parse_field_selector(text: str) -> Callable[[Obj], bool]:
    checks: list[Callable[[Obj], bool]] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = re.fullmatch(r"\s*(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*(\S*)\s*", part)
        if m is None:
            raise ApiStatus(400, "BadRequest", f"field label not supported: {part!r}")
        path, op, value = m.groups()
        attr = path.split(".")[1]

        def check(obj: Obj, a: str = attr, v: str = value, neg: bool = op == "!=") -> bool:
            return (obj["metadata"].get(a) == v) != neg

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


# --- patches ----------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field_name: str = "") -> Any:
    """Merge patch, except that lists with a known merge key are merged item by item."""
    if isinstance(patch, list) and isinstance(target, list) and field_name in _MERGE_KEYS:
        key = _MERGE_KEYS[field_name]
        result = [copy.deepcopy(item) for item in target]
        index = {item.get(key): i for i, item in enumerate(result) if isinstance(item, dict)}
        for item in patch:
            if isinstance(item, dict) and item.get(key) in index:
                i = index[item[key]]
                result[i] = strategic_merge_patch(result[i], item)
            else:
                result.append(copy.deepcopy(item))
        return result
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value, key)
    return result


# --- field ownership (server-side apply) --------------------------------------------------------

Path_ = tuple[str, ...]


def field_paths(obj: Mapping[str, Any], subresource: str | None = None) -> set[Path_]:
    """Leaf paths of the fields a request sets (maps recurse; lists and scalars are leaves)."""
    paths: set[Path_] = set()

    def walk(value: Any, prefix: Path_) -> None:
        if isinstance(value, dict) and value:
            for key, sub in value.items():
                walk(sub, (*prefix, str(key)))
        else:
            paths.add(prefix)

    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if (key == "status") != (subresource == "status"):
            continue
        if key == "metadata" and isinstance(value, dict):
            for mkey, mvalue in value.items():
                if mkey not in (*_SERVER_META, "name", "namespace", "generateName"):
                    walk(mvalue, ("metadata", mkey))
        else:
            walk(value, (key,))
    return paths


def get_path(obj: Any, path: Path_) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _ABSENT
        obj = obj[key]
    return obj


def remove_path(obj: Obj, path: Path_) -> None:
    parents = []
    node: Any = obj
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        parents.append((node, key))
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    # Drop maps the removal left empty (they were only there to hold the field).
    for parent, key in reversed(parents):
        if parent[key] == {}:
            del parent[key]
        else:
            break


def deep_merge(target: Obj, applied: Mapping[str, Any]) -> Obj:
    for key, value in applied.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and value:
            deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def to_fields_v1(paths: Iterable[Path_]) -> Obj:
    tree: Obj = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def from_fields_v1(tree: Mapping[str, Any], prefix: Path_ = ()) -> set[Path_]:
    paths: set[Path_] = set()
    for key, sub in tree.items():
        if not key.startswith("f:"):
            continue
        path = (*prefix, key[2:])
        if isinstance(sub, dict) and any(k.startswith("f:") for k in sub):
            paths |= from_fields_v1(sub, path)
        else:
            paths.add(path)
    return paths


def _related(a: Path_, b: Path_) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


# --- the store ----------------------------------------------------------------------------------


@dataclass
class Write:
    """One write request, as the tests count them."""

    verb: str  # create, update, patch, apply, delete
    resource: str  # plural
    namespace: str | None
    name: str
    subresource: str | None
    manager: str
    changed: bool
    internal: bool = False  # by an emulated controller, not by an API client


@dataclass(eq=False)
class Watcher:
    resource: tuple[str, str]
    namespace: str | None
    labels: Callable[[Mapping[str, str]], bool]
    fields: Callable[[Obj], bool]
    queue: asyncio.Queue[tuple[int, str, Obj, Obj | None]] = field(default_factory=asyncio.Queue)

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels(meta.get("labels") or {}) and self.fields(obj)


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """The objects and everything that happens to them. Used from the emulator's loop only."""

    def __init__(
        self,
        resources: Iterable[ResourceDef] | None = None,
        *,
        namespaces: Iterable[str] = ("default",),
        history: int = 50_000,
        validate_builtin: bool = True,
        statefulset_ready: bool = True,
        controller_delay: float = 0.05,
        cel: bool = True,
    ) -> None:
        self.resources: dict[tuple[str, str], ResourceDef] = {}
        for res in resources if resources is not None else [*builtin_resources(), *crd_resources()]:
            self.resources[res.key] = res
        self.objects: dict[tuple[str, str], dict[tuple[str | None, str], Obj]] = {
            key: {} for key in self.resources
        }
        self.rv = 1
        self.history: deque[tuple[int, tuple[str, str], str, Obj, Obj | None]] = deque(
            maxlen=history
        )
        self.watchers: dict[tuple[str, str], set[Watcher]] = {k: set() for k in self.resources}
        self.writes: list[Write] = []
        self.validate_builtin = validate_builtin
        self.cel = cel
        self.statefulset_ready = statefulset_ready
        self.controller_delay = controller_delay
        self._uids: dict[str, tuple[tuple[str, str], str | None, str]] = {}
        self._ips = itertools.count(10)
        for ns in namespaces:
            self.create_namespace(ns)

    # lookups

    def resource(self, group: str, plural: str) -> ResourceDef:
        res = self.resources.get((group, plural))
        if res is None:
            raise ApiStatus(404, "NotFound", f"the server could not find the resource {plural}")
        return res

    def by_plural(self, plural: str) -> ResourceDef:
        found = sorted(
            (r for r in self.resources.values() if r.plural == plural), key=lambda r: r.group
        )
        if not found:
            raise KeyError(plural)
        return found[0]  # the core group first (v1 events before events.k8s.io)

    def _key(self, res: ResourceDef, namespace: str | None, name: str) -> tuple[str | None, str]:
        return (namespace if res.namespaced else None, name)

    def get(self, res: ResourceDef, namespace: str | None, name: str) -> Obj:
        obj = self.objects[res.key].get(self._key(res, namespace, name))
        if obj is None:
            what = f"{res.plural}.{res.group}" if res.group else res.plural
            raise ApiStatus(404, "NotFound", f'{what} "{name}" not found')
        return obj

    def find(self, res: ResourceDef, namespace: str | None, name: str) -> Obj | None:
        return self.objects[res.key].get(self._key(res, namespace, name))

    def list(
        self,
        res: ResourceDef,
        namespace: str | None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[Obj]:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        items = []
        for (ns, _), obj in sorted(
            self.objects[res.key].items(), key=lambda kv: (kv[0][0] or "", kv[0][1])
        ):
            if namespace is not None and res.namespaced and ns != namespace:
                continue
            if labels(obj["metadata"].get("labels") or {}) and fields(obj):
                items.append(obj)
        return items

    # commits

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _notify(self, res: ResourceDef, type_: str, obj: Obj, old: Obj | None) -> None:
        self.history.append((self.rv, res.key, type_, obj, old))
        for watcher in self.watchers[res.key]:
            watcher.queue.put_nowait((self.rv, type_, obj, old))

    def _log(
        self,
        verb: str,
        res: ResourceDef,
        obj: Obj,
        sub: str | None,
        manager: str,
        changed: bool,
        internal: bool,
    ) -> None:
        meta = obj.get("metadata") or {}
        self.writes.append(
            Write(
                verb,
                res.plural,
                meta.get("namespace"),
                str(meta.get("name")),
                sub,
                manager,
                changed,
                internal,
            )
        )

    def create_namespace(self, name: str) -> Obj:
        res = self.resources[("", "namespaces")]
        return self.create(res, None, {"metadata": {"name": name}}, manager="test", internal=True)

    # admission

    def _admit(self, res: ResourceDef, obj: Obj, old: Obj | None) -> None:
        if res.plural == "secrets" and "stringData" in obj:
            # stringData is write-only: merged into data (base64), never stored.
            data = obj.setdefault("data", {}) or {}
            for key, value in (obj.pop("stringData") or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
        meta = obj["metadata"]
        name = meta.get("name", "")
        errors: list[str] = []
        pattern = _DNS_LABEL if res.plural in ("services", "namespaces") else _DNS_SUBDOMAIN
        if not name or len(name) > 253 or not pattern.match(name):
            errors.append(f"metadata.name: Invalid value: {name!r}")
        for key, value in (meta.get("labels") or {}).items():
            label_name = key.rpartition("/")[2]
            if not _LABEL_NAME.match(label_name) or len(label_name) > 63:
                errors.append(f"metadata.labels: Invalid value: {key!r}: not a label name")
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                errors.append(f"metadata.labels: Invalid value: {value!r}: not a label value")
        for index, ref in enumerate(meta.get("ownerReferences") or []):
            for req in ("apiVersion", "kind", "name", "uid"):
                if not isinstance(ref, dict) or not ref.get(req):
                    errors.append(f"metadata.ownerReferences[{index}].{req}: Required value")
        controllers = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
        if len(controllers) > 1:
            errors.append("metadata.ownerReferences: Invalid value: only one controller")
        if res.schema is not None:
            errors += res.schema.admit(obj, old, cel=self.cel)
        elif res.validate and self.validate_builtin:
            body = {k: v for k, v in obj.items() if k != "status"}
            validator = builtin_validator(res.api_version, res.kind)
            for error in validator.iter_errors(body):
                errors.append(f"{'.'.join(map(str, error.absolute_path))}: {error.message}")
        if res.plural == "statefulsets" and old is not None:
            spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
            changed = {k for k in set(spec) | set(old_spec) if spec.get(k) != old_spec.get(k)}
            if changed - _STS_MUTABLE:
                errors.append(
                    "spec: Forbidden: updates to statefulset spec for fields other than "
                    "'replicas', 'ordinals', 'template', 'updateStrategy', "
                    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                    f"forbidden (changed: {', '.join(sorted(changed - _STS_MUTABLE))})"
                )
        if res.plural in ("secrets", "configmaps"):
            size = sum(len(json.dumps(obj.get(k) or {})) for k in ("data", "binaryData"))
            if size > 1024 * 1024:
                errors.append(f"data: Too long: must have at most 1048576 bytes ({size})")
        if res.plural == "secrets":
            for key, value in (obj.get("data") or {}).items():
                try:
                    base64.b64decode(value, validate=True)
                except (ValueError, TypeError):
                    errors.append(f"data[{key}]: Invalid value: not base64")
        if errors:
            raise ApiStatus(
                422,
                "Invalid",
                f'{res.kind} "{name}" is invalid: {"; ".join(errors)}',
                errors,
            )

    # writes

    def create(
        self,
        res: ResourceDef,
        namespace: str | None,
        body: Obj,
        *,
        manager: str,
        dry_run: bool = False,
        internal: bool = False,
        verb: str = "create",
        operation: str = "Update",
    ) -> Obj:
        obj = copy.deepcopy(body)
        if not isinstance(obj, dict):
            raise ApiStatus(400, "BadRequest", "the body must be an object")
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if namespace is None:
                namespace = meta.get("namespace")
            if meta.get("namespace") not in (None, namespace):
                raise ApiStatus(
                    400, "BadRequest", "the namespace of the provided object does not match"
                )
            if not namespace:
                raise ApiStatus(400, "BadRequest", "namespace is required")
            if self.find(self.resources[("", "namespaces")], None, namespace) is None:
                raise ApiStatus(404, "NotFound", f'namespaces "{namespace}" not found')
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise ApiStatus(422, "Invalid", "metadata.name: Required value")
        key = self._key(res, namespace, meta["name"])
        if key in self.objects[res.key]:
            raise ApiStatus(409, "AlreadyExists", f'{res.plural} "{meta["name"]}" already exists')
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        for server_field in _SERVER_META:
            meta.pop(server_field, None)
        if res.status:
            obj.pop("status", None)  # the status subresource owns it
        paths = field_paths(obj)  # what the request sets; defaults are nobody's
        self._admit(res, obj, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_stamp()
        if res.generation:
            meta["generation"] = 1
        meta["managedFields"] = [self._fields_entry(manager, operation, res, paths)]
        if res.plural == "services":
            self._assign_ip(obj)  # the server's field: no manager owns it
        if dry_run:
            meta["resourceVersion"] = str(self.rv)
            return obj
        meta["resourceVersion"] = self._next_rv()
        self.objects[res.key][key] = obj
        self._uids[meta["uid"]] = (res.key, key[0], key[1])
        self._log(verb, res, obj, None, manager, True, internal)
        self._notify(res, "ADDED", obj, None)
        self._after_write(res, obj, None)
        return obj

    def _fields_entry(
        self,
        manager: str,
        operation: str,
        res: ResourceDef,
        paths: set[Path_],
        subresource: str | None = None,
    ) -> Obj:
        entry: Obj = {
            "manager": manager,
            "operation": operation,
            "apiVersion": res.api_version,
            "time": now_stamp(),
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(paths),
        }
        if subresource:
            entry["subresource"] = subresource
        return entry

    def _assign_ip(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if spec.get("clusterIP") in (None, ""):
            n = next(self._ips)
            spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
            spec["clusterIPs"] = [spec["clusterIP"]]

    def update(
        self,
        res: ResourceDef,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], Obj],
        *,
        subresource: str | None,
        manager: str,
        verb: str,
        dry_run: bool = False,
        internal: bool = False,
        apply_paths: set[Path_] | None = None,
        force: bool = False,
    ) -> Obj:
        """Every modification: ``change`` gets a copy of the object and returns the new one."""
        old = self.get(res, namespace, name)
        if subresource not in (None, "status") or (subresource == "status" and not res.status):
            raise ApiStatus(404, "NotFound", f"{res.plural}/{subresource} is not served")
        proposed = change(copy.deepcopy(old))
        if not isinstance(proposed, dict):
            raise ApiStatus(400, "BadRequest", "the patched object is not an object")
        meta = proposed.setdefault("metadata", {})
        want_rv = meta.get("resourceVersion")
        if want_rv not in (None, "", old["metadata"]["resourceVersion"]):
            raise ApiStatus(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {res.plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        if meta.get("uid") not in (None, old["metadata"]["uid"]):
            raise ApiStatus(409, "Conflict", "Precondition failed: UID in precondition")
        # What each kind of request may change.
        new = copy.deepcopy(old)
        if subresource == "status":
            if "status" in proposed:
                new["status"] = proposed["status"]
            else:
                new.pop("status", None)
        else:
            for key in set(new) | set(proposed):
                if key in ("apiVersion", "kind", "metadata") or (key == "status" and res.status):
                    continue
                if key in proposed:
                    new[key] = proposed[key]
                else:
                    new.pop(key, None)
            for key in set(new["metadata"]) | set(meta):
                if key in (*_SERVER_META, "name", "namespace"):
                    continue
                if key in meta and meta[key] is not None:
                    new["metadata"][key] = meta[key]
                else:
                    new["metadata"].pop(key, None)
            if old["metadata"].get("deletionTimestamp"):
                added = set(new["metadata"].get("finalizers") or []) - set(
                    old["metadata"].get("finalizers") or []
                )
                if added:
                    raise ApiStatus(
                        422,
                        "Invalid",
                        "no new finalizers can be added if the object is being deleted",
                    )
        for key in ("labels", "annotations", "finalizers", "ownerReferences"):
            if new["metadata"].get(key) in ({}, []):
                del new["metadata"][key]  # the server omits empty ones
        if res.plural == "services":
            spec = new.setdefault("spec", {})
            for sticky in ("clusterIP", "clusterIPs"):
                if sticky in (old.get("spec") or {}) and spec.get(sticky) in (None, ""):
                    spec[sticky] = old["spec"][sticky]
        self._admit(res, new, old)
        # Field ownership.
        managed = self._ownership(old, new, res, manager, subresource, apply_paths, force)
        new["metadata"]["managedFields"] = managed
        content_changed = _content(new) != _content(old)
        if not content_changed and managed == old["metadata"].get("managedFields"):
            self._log(verb, res, old, subresource, manager, False, internal)
            return old
        if res.generation and _spec_part(new) != _spec_part(old):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = self._next_rv()
        key = self._key(res, namespace, name)
        self.objects[res.key][key] = new
        self._log(verb, res, new, subresource, manager, True, internal)
        gone = new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers")
        self._notify(res, "MODIFIED", new, old)
        if gone:
            self._remove(res, key, "Background")
        else:
            self._after_write(res, new, old)
        return new

    def _ownership(
        self,
        old: Obj,
        new: Obj,
        res: ResourceDef,
        manager: str,
        subresource: str | None,
        apply_paths: set[Path_] | None,
        force: bool,
    ) -> list[Obj]:
        entries = [dict(e) for e in old["metadata"].get("managedFields") or []]
        operation = "Apply" if apply_paths is not None else "Update"
        if apply_paths is not None:
            touched = apply_paths
        else:
            before, after = field_paths(old, subresource), field_paths(new, subresource)
            touched = {p for p in after if get_path(new, p) != get_path(old, p)}
            removed = before - after
            for entry in entries:
                paths = from_fields_v1(entry.get("fieldsV1") or {}) - removed
                entry["fieldsV1"] = to_fields_v1(paths)
        mine = None
        for entry in entries:
            same = (
                entry.get("manager") == manager
                and entry.get("operation") == operation
                and entry.get("subresource") == subresource
            )
            if same:
                mine = entry
                continue
            paths = from_fields_v1(entry.get("fieldsV1") or {})
            if apply_paths is not None:
                # Applied values equal to what another manager set are shared, not taken.
                taken = {
                    p
                    for p in paths
                    if any(_related(p, q) for q in touched) and get_path(new, p) != get_path(old, p)
                }
            else:
                taken = {p for p in paths if any(_related(p, q) for q in touched)}
            entry["fieldsV1"] = to_fields_v1(paths - taken)
        if apply_paths is not None:
            owned = set(touched)
        else:
            owned = touched | (from_fields_v1(mine.get("fieldsV1") or {}) if mine else set())
        if mine is None:
            mine = self._fields_entry(manager, operation, res, owned, subresource)
            entries.append(mine)
        else:
            if from_fields_v1(mine.get("fieldsV1") or {}) != owned:
                mine["time"] = now_stamp()
            mine["fieldsV1"] = to_fields_v1(owned)
        return [e for e in entries if e.get("fieldsV1")]

    def apply(
        self,
        res: ResourceDef,
        namespace: str | None,
        name: str,
        applied: Obj,
        *,
        manager: str,
        force: bool,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Server-side apply (see the module docstring for what is and is not emulated)."""
        if not isinstance(applied, dict):
            raise ApiStatus(400, "BadRequest", "the applied configuration must be an object")
        if applied.get("apiVersion") != res.api_version or applied.get("kind") != res.kind:
            raise ApiStatus(
                400,
                "BadRequest",
                f"apiVersion/kind {applied.get('apiVersion')}/{applied.get('kind')} does not "
                f"match {res.api_version}/{res.kind}",
            )
        meta = applied.get("metadata") or {}
        if meta.get("name") != name:
            raise ApiStatus(400, "BadRequest", "the name of the object does not match the URL")
        if res.schema is not None:
            # Pruning happens before ownership is computed: pruned fields are nobody's.
            from tests.component.schema import prune

            applied = prune(res.schema.schema, copy.deepcopy(applied), root=True)
        paths = field_paths(applied, subresource)
        existing = self.find(res, namespace, name)
        if existing is None:
            if subresource:
                raise ApiStatus(404, "NotFound", f'{res.plural} "{name}" not found')
            return self.create(
                res,
                namespace,
                applied,
                manager=manager,
                dry_run=dry_run,
                verb="apply",
                operation="Apply",
            )
        previous: set[Path_] = set()
        others: dict[str, set[Path_]] = {}
        for entry in existing["metadata"].get("managedFields") or []:
            entry_paths = from_fields_v1(entry.get("fieldsV1") or {})
            if entry.get("subresource") != subresource:
                continue
            if entry.get("manager") == manager and entry.get("operation") == "Apply":
                previous = entry_paths
            else:
                others.setdefault(str(entry.get("manager")), set()).update(entry_paths)
        conflicts = []
        for other, other_paths in sorted(others.items()):
            for path in sorted(other_paths):
                for mine in paths:
                    if _related(path, mine) and get_path(existing, path) != get_path(applied, path):
                        conflicts.append(f'conflict with "{other}": .{".".join(path)}')
                        break
        if conflicts and not force:
            raise ApiStatus(
                409,
                "Conflict",
                f"Apply failed with {len(conflicts)} conflict(s): " + "; ".join(conflicts),
                conflicts,
            )
        owned_elsewhere = set().union(*others.values()) if others else set()

        def change(obj: Obj) -> Obj:
            for path in previous - paths:
                if not any(_related(path, p) for p in owned_elsewhere):
                    remove_path(obj, path)
            body = {k: v for k, v in applied.items() if k not in ("apiVersion", "kind")}
            body["metadata"] = {
                k: v
                for k, v in (applied.get("metadata") or {}).items()
                if k not in (*_SERVER_META, "name", "namespace")
            }
            if subresource == "status":
                body = {"status": applied.get("status")}
            deep_merge(obj, body)
            obj["metadata"].pop("resourceVersion", None)
            return obj

        return self.update(
            res,
            namespace,
            name,
            change,
            subresource=subresource,
            manager=manager,
            verb="apply",
            dry_run=dry_run,
            apply_paths=paths,
            force=force,
        )

    def delete(
        self,
        res: ResourceDef,
        namespace: str | None,
        name: str,
        *,
        manager: str,
        propagation: str = "Background",
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        internal: bool = False,
    ) -> Obj:
        obj = self.get(res, namespace, name)
        pre = preconditions or {}
        if pre.get("uid") not in (None, obj["metadata"]["uid"]):
            raise ApiStatus(409, "Conflict", "Precondition failed: UID in precondition")
        if pre.get("resourceVersion") not in (None, obj["metadata"]["resourceVersion"]):
            raise ApiStatus(409, "Conflict", "Precondition failed: resourceVersion")
        if dry_run:
            return obj
        self._log("delete", res, obj, None, manager, True, internal)
        if obj["metadata"].get("finalizers"):
            if obj["metadata"].get("deletionTimestamp"):
                return obj
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now_stamp()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if res.generation:
                new["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1
            new["metadata"]["resourceVersion"] = self._next_rv()
            self.objects[res.key][self._key(res, namespace, name)] = new
            self._notify(res, "MODIFIED", new, obj)
            return new
        self._remove(res, self._key(res, namespace, name), propagation)
        return obj

    def _remove(self, res: ResourceDef, key: tuple[str | None, str], propagation: str) -> None:
        obj = self.objects[res.key].pop(key)
        self._uids.pop(obj["metadata"]["uid"], None)
        self.rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._notify(res, "DELETED", gone, None)
        self._collect(obj["metadata"]["uid"], propagation)

    def _collect(self, uid: str, propagation: str) -> None:
        """The garbage collector: dependents of a removed owner."""
        for res_key, objects in self.objects.items():
            res = self.resources[res_key]
            for (ns, name), obj in list(objects.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") == uid for ref in refs):
                    continue
                remaining = [r for r in refs if r.get("uid") != uid]
                alive = [r for r in remaining if r.get("uid") in self._uids]
                if propagation == "Orphan" or alive:
                    self.update(
                        res,
                        ns,
                        name,
                        lambda o, rs=remaining: _with_refs(o, rs),
                        subresource=None,
                        manager="garbage-collector",
                        verb="patch",
                        internal=True,
                    )
                elif self.find(res, ns, name) is not None:
                    self.delete(res, ns, name, manager="garbage-collector", internal=True)

    # emulated controllers

    def _after_write(self, res: ResourceDef, obj: Obj, old: Obj | None) -> None:
        refs = obj["metadata"].get("ownerReferences") or []
        if refs and not any(r.get("uid") in self._uids for r in refs):
            meta = obj["metadata"]
            self._later(lambda: self._delete_if_exists(res, meta.get("namespace"), meta["name"]))
        if res.plural == "statefulsets":
            generation = obj["metadata"].get("generation")
            observed = (obj.get("status") or {}).get("observedGeneration")
            if generation != observed:
                meta = obj["metadata"]
                self._later(lambda: self._sync_statefulset(meta["namespace"], meta["name"]))

    def _later(self, fn: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_later(self.controller_delay, fn)

    def _delete_if_exists(self, res: ResourceDef, namespace: str | None, name: str) -> None:
        if self.find(res, namespace, name) is not None:
            self.delete(res, namespace, name, manager="garbage-collector", internal=True)

    def _sync_statefulset(self, namespace: str, name: str) -> None:
        sts_res = self.resources[("apps", "statefulsets")]
        sts = self.find(sts_res, namespace, name)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        pvc_res = self.resources[("", "persistentvolumeclaims")]
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        delete_claims = (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get(
            "whenDeleted"
        ) == "Delete"
        for template in spec.get("volumeClaimTemplates") or []:
            for ordinal in range(replicas):
                claim = f"{template['metadata']['name']}-{name}-{ordinal}"
                if self.find(pvc_res, namespace, claim) is not None:
                    continue
                meta: Obj = {
                    "name": claim,
                    "labels": dict(template["metadata"].get("labels") or {}),
                }
                if delete_claims:
                    meta["ownerReferences"] = [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "StatefulSet",
                            "name": name,
                            "uid": sts["metadata"]["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ]
                self.create(
                    pvc_res,
                    namespace,
                    {"metadata": meta, "spec": template.get("spec") or {}},
                    manager="kube-controller-manager",
                    internal=True,
                )
        self.set_statefulset_status(
            namespace, name, replicas if self.statefulset_ready else 0, sts=sts
        )

    def set_statefulset_status(
        self, namespace: str, name: str, ready: int, sts: Obj | None = None
    ) -> None:
        sts_res = self.resources[("apps", "statefulsets")]
        sts = sts or self.get(sts_res, namespace, name)
        replicas = int((sts.get("spec") or {}).get("replicas", 1))
        status = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
            "currentRevision": f"{name}-{sts['metadata'].get('generation', 1)}",
            "updateRevision": f"{name}-{sts['metadata'].get('generation', 1)}",
            "collisionCount": 0,
        }
        self.update(
            sts_res,
            namespace,
            name,
            lambda o: {**o, "status": status},
            subresource="status",
            manager="kube-controller-manager",
            verb="patch",
            internal=True,
        )

    # watching

    def events_since(
        self, watcher: Watcher, since: int
    ) -> Iterator[tuple[int, str, Obj, Obj | None]]:
        if self.history and since < self.history[0][0] - 1:
            raise ApiStatus(410, "Expired", f"too old resource version: {since}")
        for rv, key, type_, obj, old in self.history:
            if rv > since and key == watcher.resource:
                yield rv, type_, obj, old


def _content(obj: Obj) -> Obj:
    result = dict(obj)
    result["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return result


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _with_refs(obj: Obj, refs: list[Obj]) -> Obj:
    obj["metadata"]["ownerReferences"] = refs or None
    return obj


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_path(path: str) -> Target | None:
    """A resource URL, or None for discovery and other paths (kmock's scaffold serves those)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    plural, name = rest[0], rest[1] if len(rest) > 1 else None
    sub = "/".join(rest[2:]) or None
    return Target(group, version, plural, namespace, name, sub)


def _json(obj: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        body=json.dumps(obj, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesScaffold):
    """kmock's scaffold (discovery, HTTP) serving a ``Store``."""

    store: Store = attrs.field(factory=Store)
    bookmark_interval: float = 10.0
    record_requests: bool = False  # kmock keeps every request otherwise (memory, in the bench)
    failures: list[Callable[[kmock.Request], ApiStatus | None]] = attrs.field(factory=list)
    # (user agent, RBAC verb, API group, resource[/subresource]) of every request served,
    # and how many of each.
    verbs: set[tuple[str, str, str, str]] = attrs.field(factory=set)
    counts: collections.Counter[tuple[str, str, str, str]] = attrs.field(
        factory=collections.Counter
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for res in self.store.resources.values():
            verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
            self.resources[kmock.resource(res.group, res.version, res.plural)] = kmock.ResourceInfo(
                kind=res.kind,
                singular=res.singular or res.kind.lower(),
                namespaced=res.namespaced,
                verbs=verbs,
                subresources=["status"] if res.status else [],
            )

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if not self.record_requests:
            # kmock keeps every request for assertions; without that, keep only the current one
            # (its request filters look the request up in that list).
            del self._requests[:-1]
        target = parse_path(request.url.path)
        if target is None or (target.group, target.plural) not in self.store.resources:
            return await super()._handle(request)
        try:
            for failure in self.failures:
                injected = failure(request)
                if injected is not None:
                    raise injected
            return await self._serve(request, target)
        except ApiStatus as status:
            return _json(status.body(), status.code)

    async def _serve(self, request: kmock.Request, t: Target) -> aiohttp.web.StreamResponse:
        store = self.store
        res = store.resource(t.group, t.plural)
        params = dict(request.params)
        method = request.method.value
        headers = {k.lower(): v for k, v in request.headers.items()}
        manager = params.get("fieldManager") or _manager(headers.get("user-agent", ""))
        dry_run = params.get("dryRun") == "All"
        ns = t.namespace if res.namespaced else None
        self._authorize(request, res, t, method, params, manager)
        if method == "GET" and params.get("watch") in ("true", "1"):
            return await self._watch(request, res, ns, t.name, params)
        if method == "GET" and t.name is None:
            items = store.list(
                res, ns, params.get("labelSelector", ""), params.get("fieldSelector", "")
            )
            return _json(self._page(res, items, params))
        if method == "GET":
            obj = store.get(res, ns, t.name)
            if t.subresource not in (None, "status") or (t.subresource and not res.status):
                raise ApiStatus(404, "NotFound", "no such subresource")
            return _json(obj)
        if method == "POST" and t.name is None:
            body = _body(request)
            return _json(store.create(res, ns, body, manager=manager, dry_run=dry_run), 201)
        if t.name is None:
            raise ApiStatus(405, "MethodNotAllowed", f"{method} on a collection")
        if method == "PUT":
            body = _body(request)
            return _json(
                store.update(
                    res,
                    ns,
                    t.name,
                    lambda _old: body,
                    subresource=t.subresource,
                    manager=manager,
                    verb="update",
                    dry_run=dry_run,
                )
            )
        if method == "PATCH":
            content_type = headers.get("content-type", "").split(";")[0].strip()
            if content_type == APPLY:
                if not params.get("fieldManager"):
                    raise ApiStatus(
                        400,
                        "BadRequest",
                        "PATCH, application/apply-patch+yaml requires fieldManager to be set",
                    )
                try:
                    applied = yaml.safe_load(request.body.decode() or "{}")
                except yaml.YAMLError as err:
                    raise ApiStatus(400, "BadRequest", f"invalid YAML: {err}") from err
                return _json(
                    store.apply(
                        res,
                        ns,
                        t.name,
                        applied,
                        manager=manager,
                        force=params.get("force") == "true",
                        subresource=t.subresource,
                        dry_run=dry_run,
                    )
                )
            patch = _body(request)
            if content_type == MERGE:
                change: Callable[[Obj], Obj] = lambda old: merge_patch(old, patch)  # noqa: E731
            elif content_type == STRATEGIC:
                change = lambda old: strategic_merge_patch(old, patch)  # noqa: E731
            elif content_type == JSON_PATCH:
                change = lambda old: _json_patch(old, patch)  # noqa: E731
            else:
                raise ApiStatus(415, "UnsupportedMediaType", f"unsupported: {content_type}")
            return _json(
                store.update(
                    res,
                    ns,
                    t.name,
                    change,
                    subresource=t.subresource,
                    manager=manager,
                    verb="patch",
                    dry_run=dry_run,
                )
            )
        if method == "DELETE":
            options = _body(request) if request.body else {}
            propagation = params.get("propagationPolicy") or options.get("propagationPolicy")
            return _json(
                store.delete(
                    res,
                    ns,
                    t.name,
                    manager=manager,
                    propagation=propagation or "Background",
                    preconditions=options.get("preconditions"),
                    dry_run=dry_run,
                )
            )
        raise ApiStatus(405, "MethodNotAllowed", method)

    def _authorize(
        self,
        request: kmock.Request,
        res: ResourceDef,
        t: Target,
        method: str,
        params: Mapping[str, str],
        manager: str,
    ) -> None:
        """Record the RBAC verb of every request (who needs which permission; no denials)."""
        if method == "GET":
            verb = "watch" if params.get("watch") in ("true", "1") else "get" if t.name else "list"
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
                method, method.lower()
            )
        resource = f"{res.plural}/{t.subresource}" if t.subresource else res.plural
        headers = {k.lower(): v for k, v in request.headers.items()}
        agent = headers.get("user-agent", "")
        self.verbs.add((_manager(agent), verb, res.group, resource))
        self.counts[(_manager(agent), verb, res.group, resource)] += 1
        if verb == "patch" and "apply-patch" in headers.get("content-type", ""):
            exists = self.store.find(res, t.namespace if res.namespaced else None, t.name or "")
            if exists is None:  # an apply that creates needs create as well
                self.verbs.add((_manager(agent), "create", res.group, resource))

    def _page(self, res: ResourceDef, items: list[Obj], params: Mapping[str, str]) -> Obj:
        start = int(base64.b64decode(params["continue"]).decode()) if params.get("continue") else 0
        limit = int(params.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        more = bool(limit) and start + limit < len(items)
        meta: Obj = {"resourceVersion": str(self.store.rv)}
        if more:
            meta["continue"] = base64.b64encode(str(start + limit).encode()).decode()
        return {
            "apiVersion": res.api_version,
            "kind": f"{res.kind}List",
            "metadata": meta,
            "items": page,
        }

    async def _watch(
        self,
        request: kmock.Request,
        res: ResourceDef,
        ns: str | None,
        name: str | None,
        params: Mapping[str, str],
    ) -> aiohttp.web.StreamResponse:
        store = self.store
        fields = params.get("fieldSelector", "")
        if name is not None:
            fields = ",".join(filter(None, [fields, f"metadata.name={name}"]))
        watcher = Watcher(
            res.key,
            ns,
            parse_label_selector(params.get("labelSelector", "")),
            parse_field_selector(fields),
        )
        since = params.get("resourceVersion") or ""
        # Registration and the initial events happen without an await in between: the store
        # only changes on this loop, so no event can fall between them or come twice.
        store.watchers[res.key].add(watcher)
        initial: list[tuple[int, str, Obj, Obj | None]] = []
        expired: ApiStatus | None = None
        if since in ("", "0"):
            initial = [
                (store.rv, "ADDED", o, None) for o in store.list(res, ns) if watcher.matches(o)
            ]
        else:
            try:
                initial = list(store.events_since(watcher, int(since)))
            except ApiStatus as status:
                expired = status
        raw = request._raw_request
        assert raw is not None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        deadline = time.monotonic() + float(params.get("timeoutSeconds") or 1800)
        bookmarks = params.get("allowWatchBookmarks") == "true"
        try:
            await response.prepare(raw)
            if expired is not None:
                await response.write(_line("ERROR", expired.body()))
                await response.write_eof()
                return response
            for event in initial:
                await self._send(response, watcher, event)
            while (left := deadline - time.monotonic()) > 0:
                try:
                    event = await asyncio.wait_for(
                        watcher.queue.get(), min(left, self.bookmark_interval)
                    )
                except TimeoutError:
                    if bookmarks:
                        mark = {
                            "kind": res.kind,
                            "apiVersion": res.api_version,
                            "metadata": {"resourceVersion": str(store.rv)},
                        }
                        await response.write(_line("BOOKMARK", mark))
                    continue
                await self._send(response, watcher, event)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            store.watchers[res.key].discard(watcher)
        return response

    async def _send(
        self,
        response: aiohttp.web.StreamResponse,
        watcher: Watcher,
        event: tuple[int, str, Obj, Obj | None],
    ) -> None:
        _, type_, obj, old = event
        now, before = watcher.matches(obj), watcher.matches(old)
        if type_ == "MODIFIED" and now and not before:
            type_ = "ADDED"
        elif type_ == "MODIFIED" and before and not now:
            type_ = "DELETED"
        elif not now:
            return
        await response.write(_line(type_, obj))


def _line(type_: str, obj: Obj) -> bytes:
    return json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _manager(user_agent: str) -> str:
    """The default field manager: the user agent's product name (as the API server does)."""
    return (user_agent.split("/")[0] or "unknown").strip()


def _body(request: kmock.Request) -> Any:
    try:
        return json.loads(request.body.decode() or "null")
    except ValueError as err:
        raise ApiStatus(400, "BadRequest", f"invalid JSON: {err}") from err


def _json_patch(old: Obj, patch: Any) -> Obj:
    try:
        result: Obj = jsonpatch.apply_patch(old, patch)
    except jsonpatch.JsonPatchTestFailed as err:
        raise ApiStatus(422, "Invalid", f"the server rejected our request: {err}") from err
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
        raise ApiStatus(422, "Invalid", str(err)) from err
    return result


# --- running it ---------------------------------------------------------------------------------


class ApiServer:
    """The emulator on its own thread and event loop, with a synchronous API for tests.

    The test's helpers (``create``, ``patch``, ...) act on the store directly, as another
    client of the API server would: their writes reach the operator through its watches.
    """

    def __init__(self, **options: Any) -> None:
        bookmark_interval = options.pop("bookmark_interval", 10.0)
        self._options = options
        self._bookmark_interval = bookmark_interval
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="apiserver", daemon=True)
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self.url = ""
        self.emulator: Emulator | None = None

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the API server emulator did not start")
        return self.url

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        store = Store(**self._options)
        emulator = Emulator(store=store, bookmark_interval=self._bookmark_interval)
        async with emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._started.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    @property
    def store(self) -> Store:
        assert self.emulator is not None
        return self.emulator.store

    def call(self, fn: Callable[[], Any], timeout: float = 30) -> Any:
        """Run ``fn`` on the emulator's loop (where the store lives) and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    # conveniences for tests

    def res(self, plural: str) -> ResourceDef:
        return self.store.by_plural(plural)

    def create(self, obj: Obj, namespace: str | None = "default", manager: str = "kubectl") -> Obj:
        res = next(
            r
            for r in self.store.resources.values()
            if r.api_version == obj["apiVersion"] and r.kind == obj["kind"]
        )
        ns = obj.get("metadata", {}).get("namespace", namespace)
        return self.call(
            lambda: self.store.create(
                res, ns if res.namespaced else None, copy.deepcopy(obj), manager=manager
            )
        )

    def get(self, plural: str, name: str, namespace: str | None = "default") -> Obj | None:
        res = self.res(plural)
        found = self.call(lambda: self.store.find(res, namespace, name))
        return copy.deepcopy(found)

    def list(self, plural: str, namespace: str | None = "default", labels: str = "") -> list[Obj]:
        res = self.res(plural)
        return copy.deepcopy(self.call(lambda: self.store.list(res, namespace, labels)))

    def patch(
        self,
        plural: str,
        name: str,
        patch: Obj,
        namespace: str | None = "default",
        subresource: str | None = None,
        manager: str = "kubectl-patch",
    ) -> Obj:
        res = self.res(plural)
        return self.call(
            lambda: self.store.update(
                res,
                namespace,
                name,
                lambda old: merge_patch(old, patch),
                subresource=subresource,
                manager=manager,
                verb="patch",
            )
        )

    def delete(self, plural: str, name: str, namespace: str | None = "default", **kw: Any) -> Obj:
        res = self.res(plural)
        return self.call(
            lambda: self.store.delete(
                res, namespace, name, manager=kw.pop("manager", "kubectl"), **kw
            )
        )

    def writes(self, since: int = 0) -> list[Write]:
        return list(self.call(lambda: self.store.writes[since:]))

    def write_count(self) -> int:
        return int(self.call(lambda: len(self.store.writes)))

    def set_ready(self, name: str, ready: int, namespace: str = "default") -> None:
        self.call(lambda: self.store.set_statefulset_status(namespace, name, ready))

    def fail(self, rule: Callable[[kmock.Request], ApiStatus | None]) -> None:
        """Inject failures: ``rule`` sees every resource request and may return an error."""
        assert self.emulator is not None
        self.emulator.failures.append(rule)

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
                    "users": [{"name": "test", "user": {"token": "test"}}],
                    "contexts": [
                        {"name": "emulator", "context": {"cluster": "emulator", "user": "test"}}
                    ],
                    "current-context": "emulator",
                }
            )
        )
        return path


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02) -> Any:
    """Poll until ``predicate`` returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s; last value: {last!r}")
