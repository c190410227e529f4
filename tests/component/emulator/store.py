"""Owns the objects and every change to them: uid, resourceVersion (one increasing counter),
generation (bumped only when something outside metadata and status changes), creation,
updates and deletion with finalizers, the event history the watches replay, and the write log.

- optimistic concurrency: a stale ``metadata.resourceVersion`` in a patch/update → 409;
- status subresource separation: main-resource writes keep the status, ``/status`` writes keep
  everything else; ``/status`` of a kind without one → 404;
- no-op writes (nothing changed) neither bump the resourceVersion nor emit a watch event;
- the namespace of a namespaced object must exist.

Every write is logged (``Store.writes``) with who made it and whether it changed anything: the
tests count the operator's writes with it.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mailstack.kubedoc import Obj, meta_of
from tests.component.emulator.admission import admit
from tests.component.emulator.apply import (
    SERVER_META,
    Path_,
    field_paths,
    fields_entry,
    managed_fields,
)
from tests.component.emulator.controllers import (
    after_write,
    assign_cluster_ip,
    collect_garbage,
    keep_cluster_ip,
)
from tests.component.emulator.resources import (
    ApiStatus,
    ResourceDef,
    builtin_resources,
    crd_resources,
    now_stamp,
)
from tests.component.emulator.selectors import parse_field_selector, parse_label_selector
from tests.component.emulator.watches import Watcher


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
        pods_rejected: str | None = None,
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
        # The admission message refusing every StatefulSet's pods (None: pods are created).
        self.pods_rejected = pods_rejected
        self.controller_delay = controller_delay
        # uid → (resource, namespace, name) of every live object: owners the GC looks up.
        self.uids: dict[str, tuple[tuple[str, str], str | None, str]] = {}
        self.cluster_ips = itertools.count(10)  # the next Service's address
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
        fields = parse_field_selector(field_selector, res.kind)
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
        meta = meta_of(obj)
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
        for server_field in SERVER_META:
            meta.pop(server_field, None)
        if res.status:
            obj.pop("status", None)  # the status subresource owns it
        paths = field_paths(obj)  # what the request sets; defaults are nobody's
        admit(res, obj, None, cel=self.cel, validate_builtin=self.validate_builtin)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_stamp()
        if res.generation:
            meta["generation"] = 1
        meta["managedFields"] = [fields_entry(manager, operation, res, paths)]
        if res.plural == "services":
            assign_cluster_ip(obj, self.cluster_ips)  # the server's field: no manager owns it
        if dry_run:
            meta["resourceVersion"] = str(self.rv)
            return obj
        meta["resourceVersion"] = self._next_rv()
        self.objects[res.key][key] = obj
        self.uids[meta["uid"]] = (res.key, key[0], key[1])
        self._log(verb, res, obj, None, manager, True, internal)
        self._notify(res, "ADDED", obj, None)
        after_write(self, res, obj, None)
        return obj

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
                if key in (*SERVER_META, "name", "namespace"):
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
            keep_cluster_ip(new, old)
        admit(res, new, old, cel=self.cel, validate_builtin=self.validate_builtin)
        # Field ownership.
        managed = managed_fields(old, new, res, manager, subresource, apply_paths)
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
            after_write(self, res, new, old)
        return new

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
        self.uids.pop(obj["metadata"]["uid"], None)
        self.rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._notify(res, "DELETED", gone, None)
        collect_garbage(self, obj["metadata"]["uid"], propagation)

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
