"""What to write for the rendered children of a MailDomain, decided without touching the API.

Every rendered object gets an ownerReference to its MailDomain (garbage collection deletes it with
the MailDomain) and an annotation holding a digest of what the operator applied. An object is
applied (server-side apply) only when

- it does not exist (``create``),
- its digest differs from the one to apply: the spec or the mailboxes changed (``update``), or
- it no longer contains what was applied: edited by hand (``restore``).

Digest plus containment is what lets a reconcile with nothing to do send no write at all, while
keeping both "a field we stopped rendering" (only the digest notices) and "a value changed behind
our back" (only containment notices) covered. Containment ignores what the API server adds
(defaults, status, metadata it owns) and treats a missing field like an empty map or list, since
the API server drops those.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mailstack.controller.kinds import MAILDOMAIN, ChildKey, Kind, kind_of
from mailstack.kubedoc import Obj, ObjectRef, meta_of

APPLIED_ANNOTATION = "mailstack.dev/applied"
FIELD_MANAGER = "mailstack"

Action = Literal["create", "update", "restore"]


@dataclass(frozen=True)
class Owner:
    """The MailDomain (or MailServer, ``kind``) that owns the children (its uid is required by
    the API server)."""

    name: str
    namespace: str
    uid: str
    kind: str = MAILDOMAIN.kind

    @classmethod
    def of(cls, ref: ObjectRef) -> Owner:
        return cls(ref.name, ref.namespace, ref.uid)

    def reference(self) -> Obj:
        return {
            "apiVersion": MAILDOMAIN.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Change:
    """One object to apply and why."""

    action: Action
    obj: Obj

    @property
    def key(self) -> ChildKey:
        return child_key(self.obj)

    @property
    def kind(self) -> Kind:
        return kind_of(self.obj)

    def describe(self) -> str:
        return f"{self.obj['kind']}/{self.obj['metadata']['name']}"


def child_key(obj: Mapping[str, Any]) -> ChildKey:
    return ChildKey(str(obj["apiVersion"]), str(obj["kind"]), str(obj["metadata"]["name"]))


def digest(obj: Mapping[str, Any]) -> str:
    """A stable digest of an object as rendered (before the digest annotation is added)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def owned(obj: Obj, owner: Owner) -> Obj:
    """The rendered object as it is applied: ownerReference and digest annotation added."""
    result: Obj = json.loads(json.dumps(obj))  # a deep copy: rendered objects stay untouched
    meta = result.setdefault("metadata", {})
    if meta.get("namespace", owner.namespace) != owner.namespace:
        raise ValueError(f"{obj['kind']}/{meta.get('name')} is not in {owner.namespace}")
    meta["namespace"] = owner.namespace
    meta.setdefault("annotations", {})[APPLIED_ANNOTATION] = digest(obj)
    meta["ownerReferences"] = [owner.reference()]
    return result


def contains(live: Any, desired: Any) -> bool:
    """Whether ``live`` holds everything in ``desired`` (extra fields in ``live`` are fine)."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return live is None and not desired
        for key, value in desired.items():
            if key not in live:
                if value is None or value == {} or value == []:
                    continue  # the API server omits empty and null fields
                return False
            if not contains(live[key], value):
                return False
        return True
    if isinstance(desired, list):
        if not isinstance(live, list):
            return live is None and not desired
        return len(live) == len(desired) and all(
            contains(item, want) for item, want in zip(live, desired, strict=True)
        )
    return bool(live == desired and type(live) is type(desired))


def is_owned_by(live: Mapping[str, Any], owner: Owner) -> bool:
    refs = meta_of(live).get("ownerReferences") or []
    return any(isinstance(ref, Mapping) and ref.get("uid") == owner.uid for ref in refs)


def decide(desired: Obj, live: Mapping[str, Any] | None) -> Action | None:
    """The write needed to make ``live`` hold ``desired`` (an ``owned`` object), or None."""
    if live is None:
        return "create"
    want = desired["metadata"]["annotations"][APPLIED_ANNOTATION]
    have = (meta_of(live).get("annotations") or {}).get(APPLIED_ANNOTATION)
    if have != want:
        return "update"
    body = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
    if not contains(live, body):
        return "restore"
    return None


def plan_changes(desired: list[Obj], live: Mapping[ChildKey, Obj | None]) -> list[Change]:
    """The writes for a whole object set, in render (apply) order."""
    changes = []
    for obj in desired:
        action = decide(obj, live.get(child_key(obj)))
        if action is not None:
            changes.append(Change(action, obj))
    return changes


def stale_children(
    desired: list[Obj],
    candidates: list[ChildKey],
    live: Mapping[ChildKey, Obj | None],
    owner: Owner,
) -> list[ChildKey]:
    """Objects the operator rendered earlier but no longer renders (and still owns).

    Only a fixed candidate list is checked (see ``plan.prune_candidates``): looking for strays by
    listing every kind on every reconcile would cost more than the rare switch that leaves one.
    """
    wanted = {child_key(obj) for obj in desired}
    stale = []
    for key in candidates:
        obj = live.get(key)
        if key not in wanted and obj is not None and is_owned_by(obj, owner):
            stale.append(key)
    return stale
