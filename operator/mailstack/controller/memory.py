"""The controller's in-memory state: what it has to remember between events, and nothing else.

- ``Coalescer``: one "something changed" flag per MailDomain. Events (Mailboxes, Secrets,
  children) only set the flag; the MailDomain's daemon waits for it, lets the burst settle, and
  renders once. Many Mailbox changes therefore cost one render, not one each.
- ``SecretCache``: the user Secrets labelled ``mailstack.dev/usable-by`` (passwords, relay
  credentials and CA, DNS credentials), kept current by the Secret watch, whose label selector
  is the only way a Secret gets here: an unlabelled Secret is never read nor stored. Only the
  data of Secrets a MailDomain or Mailbox refers to is kept (one that may serve its domain, or
  a Mailbox on such a domain: ``Documents.references``); of the others, the resourceVersion
  (a tenant writing many large labelled Secrets grew the operator's memory until it was
  OOM-killed). A Secret's data is read on its first reference (``Reconciler.user_secrets``) and
  dropped when the last reference goes.
- ``Echoes``: the resourceVersion of every object the operator itself just wrote, so the watch
  event of its own write does not trigger another reconcile.
- ``WrittenStatus``: the status the operator last wrote per object. The watch may deliver that
  write a moment later; comparing with what was written avoids writing the same status twice.

All of it is a cache: losing it (a restart) costs reads, never correctness.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from mailstack.api.errors import ValidationError
from mailstack.api.models import Secret
from mailstack.api.parse import parse_secret
from mailstack.controller.documents import namespaced_name
from mailstack.kubedoc import meta_of

DomainKey = tuple[str, str]  # namespace, MailDomain name


def newer(candidate: str | None, current: str | None) -> bool:
    """Whether resourceVersion ``candidate`` is newer than ``current``.

    resourceVersions are opaque by contract; etcd's (and the emulator's) are increasing integers,
    which is what lets a late watch event be told from a fresh one. When they are not integers,
    the candidate wins: at worst one redundant read or write.
    """
    if current is None or candidate is None:
        return True
    if candidate.isdigit() and current.isdigit():
        return int(candidate) >= int(current)
    return True


class Coalescer:
    """Per-MailDomain dirty flags; see the module docstring."""

    def __init__(self) -> None:
        self._flags: dict[DomainKey, asyncio.Event] = {}
        self.marks = 0  # for the logs and tests: how many events were coalesced

    def _flag(self, key: DomainKey) -> asyncio.Event:
        flag = self._flags.get(key)
        if flag is None:
            flag = self._flags[key] = asyncio.Event()
        return flag

    def mark(self, key: DomainKey) -> None:
        self.marks += 1
        self._flag(key).set()

    def clear(self, key: DomainKey) -> None:
        self._flag(key).clear()

    async def wait(self, key: DomainKey, timeout: float) -> bool:
        """True when marked within ``timeout`` seconds, False when the time ran out."""
        try:
            await asyncio.wait_for(self._flag(key).wait(), timeout)
        except TimeoutError:
            return False
        return True

    def forget(self, key: DomainKey) -> None:
        self._flags.pop(key, None)

    def pending(self) -> list[DomainKey]:
        """MailDomains marked and not reconciled yet (for tests and the benchmark)."""
        return [key for key, flag in list(self._flags.items()) if flag.is_set()]


class SecretCache:
    """Labelled user Secrets by (namespace, name): the data of the referenced ones, the
    resourceVersion of all. ``referenced``: whether a MailDomain or Mailbox refers to a Secret
    (None: every Secret is kept whole)."""

    def __init__(self, referenced: Callable[[str, str], bool] | None = None) -> None:
        self._items: dict[tuple[str, str], tuple[str | None, Secret | None]] = {}
        self._unloaded: dict[tuple[str, str], str | None] = {}  # referenced by nothing
        self._referenced = referenced

    def __len__(self) -> int:
        """How many Secrets are kept with their data."""
        return len(self._items)

    def put(self, raw: Mapping[str, Any]) -> bool:
        """Store a Secret as read or watched; True when its content changed."""
        key = namespaced_name(raw)
        version = meta_of(raw).get("resourceVersion")
        version = str(version) if version is not None else None
        old = self._items.get(key)
        known = old[0] if old is not None else self._unloaded.get(key)
        if (old is not None or key in self._unloaded) and not newer(version, known):
            return False
        if self._referenced is not None and not self._referenced(*key):
            self._items.pop(key, None)
            self._unloaded[key] = version  # nothing to read it for
            return old is not None
        try:
            secret: Secret | None = parse_secret(raw, "cluster", key[0])
        except ValidationError:
            secret = None  # unreadable: treated as missing, the Mailbox says so
        self._unloaded.pop(key, None)
        self._items[key] = (version, secret)
        return old is None or old[1] != secret

    def drop(self, namespace: str, name: str) -> bool:
        kept = self._items.pop((namespace, name), None) is not None
        return self._unloaded.pop((namespace, name), None) is not None or kept

    def release(self, namespace: str, name: str) -> None:
        """Nothing refers to the Secret any more: forget its data, keep its version."""
        entry = self._items.pop((namespace, name), None)
        if entry is not None:
            self._unloaded[(namespace, name)] = entry[0]

    def get(self, namespace: str, name: str) -> Secret | None:
        entry = self._items.get((namespace, name))
        return None if entry is None else entry[1]

    def wanted(self, namespace: str, name: str) -> bool:
        """Whether the Secret's data would be kept (something refers to it)."""
        return self._referenced is None or self._referenced(namespace, name)

    def unloaded(self, namespace: str, name: str) -> bool:
        """Whether the Secret exists, labelled, but its data was not kept (not referenced)."""
        return (namespace, name) in self._unloaded


class Echoes:
    """resourceVersions of the operator's own writes (see the module docstring)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._versions: dict[tuple[str, str, str], str] = {}
        self._limit = limit

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
        return (str(obj.get("kind")), *namespaced_name(obj))

    def record(self, obj: Mapping[str, Any]) -> None:
        version = meta_of(obj).get("resourceVersion")
        if version is None:
            return
        if len(self._versions) >= self._limit:
            self._versions.clear()  # a cache: forgetting only costs an extra no-op reconcile
        self._versions[self._key(obj)] = str(version)

    def is_echo(self, obj: Mapping[str, Any]) -> bool:
        version = meta_of(obj).get("resourceVersion")
        return version is not None and self._versions.get(self._key(obj)) == str(version)


class WrittenStatus:
    """What the operator last wrote to each status, per (kind, namespace, name), for one uid.

    Two uses: not writing the same status twice while the watch has not delivered the first
    write yet (a digest), and computing condition transitions from that write rather than from a
    stale copy, which would move ``lastTransitionTime`` and so write again (each condition's
    type, status and transition time). Compact on purpose: ten thousand Mailboxes.
    """

    def __init__(self) -> None:
        self._entries: dict[
            tuple[str, str, str], tuple[str, str, tuple[tuple[str, str, str], ...]]
        ] = {}

    @staticmethod
    def digest(status: Mapping[str, Any]) -> str:
        text = json.dumps(status, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def matches(
        self, kind: str, namespace: str, name: str, uid: str, status: Mapping[str, Any]
    ) -> bool:
        entry = self._entries.get((kind, namespace, name))
        return entry is not None and entry[:2] == (uid, self.digest(status))

    def put(
        self, kind: str, namespace: str, name: str, uid: str, status: Mapping[str, Any]
    ) -> None:
        conditions = tuple(
            (str(c.get("type")), str(c.get("status")), str(c.get("lastTransitionTime")))
            for c in status.get("conditions") or []
            if isinstance(c, Mapping)
        )
        self._entries[(kind, namespace, name)] = (uid, self.digest(status), conditions)

    def previous(self, kind: str, namespace: str, name: str, uid: str, live: Any) -> Any:
        """The status to compute transitions from: the operator's own last write, else ``live``."""
        entry = self._entries.get((kind, namespace, name))
        if entry is None or entry[0] != uid:
            return live
        base = dict(live) if isinstance(live, Mapping) else {}
        base["conditions"] = [
            {"type": t, "status": s, "lastTransitionTime": since} for t, s, since in entry[2]
        ]
        return base

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self._entries.pop((kind, namespace, name), None)


class Peering:
    """Whether this replica is the active one, read from kopf's peering objects.

    kopf pauses its own handlers and daemons when a peer with a higher priority is alive (or one
    with the same priority: then every replica pauses). The informers are the operator's, not
    kopf's, so the few writes they make themselves (the status of a Mailbox no MailDomain serves)
    ask this first. Same rule as kopf's, evaluated at the time of asking, as peers expire.
    """

    def __init__(self, identity: str, priority: int, enabled: bool) -> None:
        self.identity = identity
        self.priority = priority
        self.enabled = enabled
        self._statuses: dict[tuple[str, str], Mapping[str, Any]] = {}

    def update(self, key: tuple[str, str], status: Mapping[str, Any] | None) -> None:
        if status is None:
            self._statuses.pop(key, None)
        else:
            self._statuses[key] = status

    def active(self, now: datetime | None = None) -> bool:
        if not self.enabled:
            return True
        moment = now or datetime.now(UTC)
        for status in self._statuses.values():
            for identity, info in status.items():
                if identity == self.identity or not isinstance(info, Mapping):
                    continue
                try:
                    seen = datetime.fromisoformat(str(info.get("lastseen")))
                    lifetime = float(info.get("lifetime", 60))
                    priority = int(info.get("priority", 0))
                except (TypeError, ValueError):
                    continue
                if seen.tzinfo is None:
                    seen = seen.replace(tzinfo=UTC)
                if (moment - seen).total_seconds() < lifetime and priority >= self.priority:
                    return False
        return True
