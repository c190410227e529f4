"""Owns the HTTP face: kmock's ``KubernetesScaffold`` (discovery, the aiohttp server) with the
resource URLs routed to a ``Store``: GET, list (paged), watch, POST, PUT, PATCH (merge,
strategic, JSON patch, apply) and DELETE, injected failures, and the RBAC verb of every request.
"""

from __future__ import annotations

import base64
import collections
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from mailstack.kubedoc import Obj
from tests.component.emulator.apply import server_side_apply
from tests.component.emulator.patches import json_patch, merge_patch, strategic_merge_patch
from tests.component.emulator.resources import ApiStatus, ResourceDef
from tests.component.emulator.store import Store
from tests.component.emulator.watches import serve_watch

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


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
    # (user agent, verb, resource, name or labelSelector) of every get, list and watch: what
    # was read, and through which selector.
    reads: set[tuple[str, str, str, str]] = attrs.field(factory=set)

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
            return await serve_watch(
                store, request, res, ns, t.name, params, self.bookmark_interval
            )
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
                    server_side_apply(
                        store,
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
                change = lambda old: json_patch(old, patch)  # noqa: E731
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
        if verb in ("get", "list", "watch"):
            which = t.name if verb == "get" else params.get("labelSelector", "")
            self.reads.add((_manager(agent), verb, resource, which or ""))
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


def _manager(user_agent: str) -> str:
    """The default field manager: the user agent's product name (as the API server does)."""
    return (user_agent.split("/")[0] or "unknown").strip()


def _body(request: kmock.Request) -> Any:
    try:
        return json.loads(request.body.decode() or "null")
    except ValueError as err:
        raise ApiStatus(400, "BadRequest", f"invalid JSON: {err}") from err
