"""Owns field ownership and server-side apply (``application/apply-patch+yaml``).

Every write records per-manager field ownership in ``metadata.managedFields`` (FieldsV1). An
apply creates or merges: fields a manager stops applying are removed, fields another manager
changed are a 409 conflict unless ``force=true``, and applying identical content writes nothing.
Lists are atomic here (no associative-list merging).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mailstack.kubedoc import Obj
from tests.component.emulator.resources import ApiStatus, ResourceDef, now_stamp
from tests.component.schema import prune

if TYPE_CHECKING:
    from tests.component.emulator.store import Store

# Server-owned metadata: never part of a manager's fields, never taken from a request body.
SERVER_META = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)

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
                if mkey not in (*SERVER_META, "name", "namespace", "generateName"):
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


def fields_entry(
    manager: str,
    operation: str,
    res: ResourceDef,
    paths: set[Path_],
    subresource: str | None = None,
) -> Obj:
    """The managedFields entry of ``manager`` owning ``paths``."""
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


def managed_fields(
    old: Obj,
    new: Obj,
    res: ResourceDef,
    manager: str,
    subresource: str | None,
    apply_paths: set[Path_] | None,
) -> list[Obj]:
    """The managedFields after a write of ``manager`` changed ``old`` into ``new``.

    An update owns the fields it changed and takes them from the others; an apply
    (``apply_paths``) owns exactly the fields it applied and takes from the others only those
    whose value it changed (equal values are shared).
    """
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
        mine = fields_entry(manager, operation, res, owned, subresource)
        entries.append(mine)
    else:
        if from_fields_v1(mine.get("fieldsV1") or {}) != owned:
            mine["time"] = now_stamp()
        mine["fieldsV1"] = to_fields_v1(owned)
    return [e for e in entries if e.get("fieldsV1")]


def server_side_apply(
    store: Store,
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
        applied = prune(res.schema.schema, copy.deepcopy(applied), root=True)
    paths = field_paths(applied, subresource)
    existing = store.find(res, namespace, name)
    if existing is None:
        if subresource:
            raise ApiStatus(404, "NotFound", f'{res.plural} "{name}" not found')
        return store.create(
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
            if k not in (*SERVER_META, "name", "namespace")
        }
        if subresource == "status":
            body = {"status": applied.get("status")}
        deep_merge(obj, body)
        obj["metadata"].pop("resourceVersion", None)
        return obj

    return store.update(
        res,
        namespace,
        name,
        change,
        subresource=subresource,
        manager=manager,
        verb="apply",
        dry_run=dry_run,
        apply_paths=paths,
    )
