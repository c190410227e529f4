"""Owns watches: resume from a resourceVersion with history-based replay (410 Gone when too old),
label and field selectors (objects leaving a selector are DELETED for that watch), bookmarks.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp.web
import kmock

from mailstack.kubedoc import Obj
from tests.component.emulator.resources import ApiStatus, ResourceDef
from tests.component.emulator.selectors import parse_field_selector, parse_label_selector

if TYPE_CHECKING:
    from tests.component.emulator.store import Store


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


async def serve_watch(
    store: Store,
    request: kmock.Request,
    res: ResourceDef,
    ns: str | None,
    name: str | None,
    params: Mapping[str, str],
    bookmark_interval: float,
) -> aiohttp.web.StreamResponse:
    """Stream a watch: the initial or replayed events, then every change, bookmarks meanwhile."""
    fields = params.get("fieldSelector", "")
    if name is not None:
        fields = ",".join(filter(None, [fields, f"metadata.name={name}"]))
    watcher = Watcher(
        res.key,
        ns,
        parse_label_selector(params.get("labelSelector", "")),
        parse_field_selector(fields, res.kind),
    )
    since = params.get("resourceVersion") or ""
    # Registration and the initial events happen without an await in between: the store
    # only changes on this loop, so no event can fall between them or come twice.
    store.watchers[res.key].add(watcher)
    initial: list[tuple[int, str, Obj, Obj | None]] = []
    expired: ApiStatus | None = None
    if since in ("", "0"):
        initial = [(store.rv, "ADDED", o, None) for o in store.list(res, ns) if watcher.matches(o)]
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
            await _send(response, watcher, event)
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(watcher.queue.get(), min(left, bookmark_interval))
            except TimeoutError:
                if bookmarks:
                    mark = {
                        "kind": res.kind,
                        "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(store.rv)},
                    }
                    await response.write(_line("BOOKMARK", mark))
                continue
            await _send(response, watcher, event)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        store.watchers[res.key].discard(watcher)
    return response


async def _send(
    response: aiohttp.web.StreamResponse,
    watcher: Watcher,
    event: tuple[int, str, Obj, Obj | None],
) -> None:
    """An event as this watch sees it: objects entering or leaving its selectors are ADDED or
    DELETED for it."""
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
