"""List + watch of one kind into the operator's memory (client-go's informer, in small).

Why not kopf for these: kopf gives every watched object a worker task and a memory record, and
while any index is being filled at startup every worker of every kind waits on one shared
condition that is notified once per indexed object — quadratic in the object count (measured
with kopf 1.45.2: 2,000 Mailboxes already cost 1.6 million worker wake-ups and ~25 s of CPU).
MailDomains stay with kopf (lifecycle handlers, finalizer, daemon); Mailboxes, Secrets and the
children are watched here, where an event costs a dict update and a callback.

An ``Informer`` lists in pages (bounded memory), reports each object as ADDED/MODIFIED (only
when its resourceVersion changed) and objects gone since the last list as DELETED, sets
``primed``, then watches from the list's resourceVersion. A watch that ends is resumed from the
last resourceVersion seen (bookmarks included); 410 Gone means relist. Errors back off and
relist; the informer never gives up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mailstack.controller.documents import namespaced_name
from mailstack.controller.kinds import SECRET, Kind
from mailstack.controller.kube import ApiError, Kube
from mailstack.kubedoc import Obj, meta_of

SECRET_PAGE = 20

logger = logging.getLogger(__name__)


# (event type, object, primed): the object as the API sent it; for a DELETED found by a relist,
# only apiVersion, kind and metadata (name, namespace) are known.
Callback = Callable[[str, Obj, bool], Awaitable[None]]


class Informer:
    def __init__(
        self,
        kube: Kube,
        kind: Kind,
        namespace: str | None,
        callback: Callback,
        *,
        label_selector: str | None = None,
        page: int | None = None,
        watch_timeout: int = 300,
        optional: bool = False,
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.callback = callback
        self.label_selector = label_selector
        # A Secret may hold 1 MiB: a page of 500 could hold 700 MiB of JSON (a tenant's large
        # labelled Secrets, listed at every start). Other kinds are small.
        self.page = page or (SECRET_PAGE if kind == SECRET else 500)
        self.watch_timeout = watch_timeout
        # A kind that may not be served (cert-manager's Certificate): a 404 counts as primed
        # and empty, and the list is retried every minute without warnings.
        self.optional = optional
        self.primed = asyncio.Event()
        self.versions: dict[tuple[str, str], str] = {}
        self.resource_version = ""
        self.relists = 0

    def __repr__(self) -> str:
        where = self.namespace or "all namespaces"
        return f"Informer({self.kind.plural} in {where})"

    async def run(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self._list()
                self.primed.set()
                backoff = 1.0
                while await self._watch():
                    pass  # the server ended the watch: resume from the last version
            except ApiError as err:
                if self.optional and err.status == 404:
                    if not self.primed.is_set():
                        logger.info("%r: not served by this cluster; checking every 60s", self)
                    self.primed.set()
                    await asyncio.sleep(60)
                    continue
                logger.warning("%r: %s; listing again in %gs", self, err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _list(self) -> None:
        seen: dict[tuple[str, str], str] = {}
        token: str | None = None
        version = ""
        while True:
            page = await self.kube.list_page(
                self.kind,
                self.namespace,
                label_selector=self.label_selector,
                limit=self.page,
                token=token,
            )
            meta = meta_of(page)
            version = version or str(meta.get("resourceVersion") or "")
            for item in page.get("items") or []:
                key = namespaced_name(item)
                item_version = str(meta_of(item).get("resourceVersion", ""))
                seen[key] = item_version
                if self.versions.get(key) != item_version:
                    kind = "MODIFIED" if key in self.versions else "ADDED"
                    item.setdefault("apiVersion", self.kind.api_version)
                    item.setdefault("kind", self.kind.kind)
                    await self.callback(kind, item, self.primed.is_set())
            token = meta.get("continue") or None
            if not token:
                break
        for namespace, name in sorted(set(self.versions) - set(seen)):
            gone = {
                "apiVersion": self.kind.api_version,
                "kind": self.kind.kind,
                "metadata": {"namespace": namespace, "name": name},
            }
            await self.callback("DELETED", gone, self.primed.is_set())
        self.versions = seen
        self.resource_version = version
        self.relists += 1

    async def _watch(self) -> bool:
        """One watch request; True to resume it, False to list again (410 Gone)."""
        async for event in self.kube.watch(
            self.kind,
            self.namespace,
            self.resource_version,
            label_selector=self.label_selector,
            timeout=self.watch_timeout,
        ):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    return False
                raise ApiError(int(obj.get("code") or 0), str(obj.get("reason")),
                               str(obj.get("message")), f"watch {self.kind.plural}")  # fmt: skip
            version = str(meta_of(obj).get("resourceVersion") or "")
            if version:
                self.resource_version = version
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # BOOKMARK: only the version matters
            key = namespaced_name(obj)
            if kind == "DELETED":
                self.versions.pop(key, None)
            else:
                self.versions[key] = version
            await self.callback(str(kind), obj, True)
        return True
