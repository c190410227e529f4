"""A small async Kubernetes API client for the requests the controller makes itself.

kopf brings its own client for watching and for patching the objects it handles; the controller
also needs server-side apply (``application/apply-patch+yaml``, field manager ``mailstack``),
status subresource patches, Events and a few reads. This client does exactly those on aiohttp
(already a kopf dependency), with the credentials kopf logged in with, in kopf's event loop:
no threads, and none of the official client's generated models (which would cost memory and
reject fields they do not know).

Each request is counted by verb and HTTP code (``metrics``). Errors are ``ApiError`` with the
HTTP status; ``transient`` tells retryable failures (network, 5xx, 409, 429) from those that
need a change first (403, 404, 422).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import kopf

from mailstack import __version__
from mailstack.controller.children import FIELD_MANAGER
from mailstack.controller.kinds import STATEFUL_SET, Kind, kind_of
from mailstack.controller.metrics import OperatorMetrics
from mailstack.kubedoc import Obj

logger = logging.getLogger(__name__)


Login = Callable[[], Awaitable[kopf.ConnectionInfo]]

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_CONTENT_TYPE = "application/merge-patch+json"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ApiError(Exception):
    """A failed API request: the HTTP status (0 for a connection failure) and the message."""

    def __init__(self, status: int, reason: str, message: str, what: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.what = what
        super().__init__(f"{what}: {status} {reason}: {message}" if what else message)

    @property
    def transient(self) -> bool:
        return self.status == 0 or self.status >= 500 or self.status in (408, 409, 429)

    def short(self) -> str:
        """For condition messages: what failed and the API server's explanation."""
        return f"{self.what}: {self.message or self.reason}" if self.what else self.message


class Kube:
    """The controller's API client. Create inside the running event loop; ``close()`` at exit."""

    def __init__(
        self,
        login: Login,
        *,
        request_timeout: float = 30.0,
        connections: int = 16,
        metrics: OperatorMetrics | None = None,
    ):
        self._login = login
        # The operator's series: requests by verb and code here, the rest by its other users.
        self.metrics = metrics if metrics is not None else OperatorMetrics()
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._lock = asyncio.Lock()
        # Requests by method, for logs and the benchmark ("writes during a no-op resync").
        self.requests: Counter[str] = Counter()

    async def _connect(self, renew: bool = False) -> aiohttp.ClientSession:
        async with self._lock:
            if self._session is not None and not renew:
                return self._session
            if self._session is not None:
                await self._session.close()
            info = await self._login()
            self._server = info.server.rstrip("/")
            ssl_context: ssl.SSLContext | bool = False
            if self._server.startswith("https:"):
                ssl_context = info.as_ssl_context()
            self._session = aiohttp.ClientSession(
                headers={
                    "Accept": "application/json",
                    "User-Agent": f"mailstack/{__version__}",
                    **info.as_http_headers(),
                },
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=ssl_context),
                timeout=self._timeout,
            )
            return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        what: str = "",
    ) -> Obj:
        """One request; returns the decoded JSON response, raises ``ApiError``."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        for attempt in (1, 2):
            session = await self._connect(renew=attempt == 2)
            self.requests[method] += 1
            try:
                async with session.request(
                    method, self._server + path, params=params, data=data, headers=headers
                ) as response:
                    text = await response.text()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as err:
                self.metrics.api_request(method, None)
                raise ApiError(0, type(err).__name__, str(err) or repr(err), what) from err
            self.metrics.api_request(method, status)
            if status == 401 and attempt == 1:
                continue  # an expired token (bound service account tokens rotate): log in again
            payload = _decode(text)
            if status >= 400:
                raise ApiError(
                    status,
                    str(payload.get("reason") or response.reason or ""),
                    str(payload.get("message") or text[:500]),
                    what,
                )
            return payload
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, kind: Kind, namespace: str | None, name: str) -> Obj | None:
        """The object, or None when it does not exist (or its kind is not served)."""
        try:
            return await self.request(
                "GET", kind.path(namespace, name), what=f"get {kind.kind}/{name}"
            )
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def list(
        self,
        kind: Kind,
        namespace: str | None,
        label_selector: str | None = None,
        *,
        field_selector: str | None = None,
    ) -> list[Obj]:
        params = {"labelSelector": label_selector} if label_selector else {}
        if field_selector:
            params["fieldSelector"] = field_selector
        result = await self.request(
            "GET", kind.path(namespace), params=params or None, what=f"list {kind.plural}"
        )
        items = result.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def list_page(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        limit: int = 500,
        token: str | None = None,
    ) -> Obj:
        """One page of a (chunked) list: ``items`` and ``metadata.continue``/``resourceVersion``."""
        params = {"limit": str(limit)}
        if label_selector:
            params["labelSelector"] = label_selector
        if token:
            params["continue"] = token
        return await self.request(
            "GET", kind.path(namespace), params=params, what=f"list {kind.plural}"
        )

    async def watch(
        self,
        kind: Kind,
        namespace: str | None,
        resource_version: str,
        *,
        label_selector: str | None = None,
        timeout: int = 300,
    ) -> AsyncIterator[Obj]:
        """The events of one watch request, until the server ends it (``timeoutSeconds``)."""
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        session = await self._connect()
        self.requests["WATCH"] += 1
        what = f"watch {kind.plural}"
        answered = False
        try:
            async with session.get(
                self._server + kind.path(namespace),
                params=params,
                # No total timeout: the stream lasts; a silent one (no bookmark in twice the
                # server's interval) is a dead one.
                timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout + 30),
            ) as response:
                answered = True
                self.metrics.api_request("WATCH", response.status)
                if response.status >= 400:
                    payload = _decode(await response.text())
                    raise ApiError(
                        response.status,
                        str(payload.get("reason") or response.reason or ""),
                        str(payload.get("message") or ""),
                        what,
                    )
                # Objects can be larger than aiohttp's line limit: split lines by hand.
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            event = _decode(line.decode())
                            if event:
                                yield event
        except (aiohttp.ClientError, TimeoutError) as err:
            if not answered:  # a stream that breaks later was counted when it was answered
                self.metrics.api_request("WATCH", None)
            raise ApiError(0, type(err).__name__, str(err) or repr(err), what) from err

    async def apply(self, obj: Obj, *, force: bool = True) -> Obj:
        """Server-side apply of a whole object, owned by the ``mailstack`` field manager.

        ``force`` takes the fields back from whoever changed them by hand: the operator is the
        authority over its children (that is the drift correction).
        """
        kind = kind_of(obj)
        meta = obj["metadata"]
        params = {"fieldManager": FIELD_MANAGER}
        if force:
            params["force"] = "true"
        return await self.request(
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]),
            params=params,
            body=obj,  # JSON is YAML: the apply content type accepts it
            content_type=APPLY_CONTENT_TYPE,
            what=f"apply {obj['kind']}/{meta['name']}",
        )

    async def apply_child(self, obj: Obj) -> tuple[Obj, bool]:
        """Server-side apply; a StatefulSet whose immutable fields changed is recreated (True).

        The API server refuses changes to a StatefulSet's selector, serviceName or
        volumeClaimTemplates (a new ``spec.storage`` size or class, say). Deleting it with
        ``propagationPolicy: Orphan`` keeps its pods running and its volume claims in place;
        the new StatefulSet adopts both (same labels, same claim names). Existing volumes keep
        their size: growing them is the StorageClass's business (``allowVolumeExpansion``).
        """
        try:
            return await self.apply(obj), False
        except ApiError as err:
            kind, name = obj["kind"], obj["metadata"]["name"]
            if not (kind == STATEFUL_SET.kind and err.status == 422 and "Forbidden" in err.message):
                raise
            logger.info("recreating StatefulSet %s (immutable fields changed): %s", name, err)
            await self.delete(STATEFUL_SET, obj["metadata"]["namespace"], name, "Orphan")
            return await self.apply(obj), True

    async def patch_status(
        self, kind: Kind, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> Obj:
        """A JSON merge patch of the status subresource (the spec cannot be touched there)."""
        return await self.request(
            "PATCH",
            kind.path(namespace, name, "status"),
            params={"fieldManager": FIELD_MANAGER},
            body={"status": status},
            content_type=MERGE_CONTENT_TYPE,
            what=f"status of {kind.kind}/{name}",
        )

    async def create(self, kind: Kind, namespace: str | None, obj: Obj) -> Obj:
        return await self.request(
            "POST",
            kind.path(namespace),
            params={"fieldManager": FIELD_MANAGER},
            body=obj,
            what=f"create {kind.kind}",
        )

    async def delete(
        self, kind: Kind, namespace: str | None, name: str, propagation: str = "Background"
    ) -> bool:
        """Delete; False when it was already gone. ``Orphan`` keeps the dependents (pods)."""
        try:
            await self.request(
                "DELETE",
                kind.path(namespace, name),
                body={"propagationPolicy": propagation},
                what=f"delete {kind.kind}/{name}",
            )
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True


def _decode(text: str) -> Obj:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
