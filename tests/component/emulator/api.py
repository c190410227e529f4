"""Owns running the emulator: ``ApiServer`` serves it on its own thread and event loop and gives
the tests a synchronous client (create, get, list, patch, delete, the write log, failure
injection, a kubeconfig); ``wait_for`` polls for a condition.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kmock
import yaml

from mailstack.kubedoc import Obj
from tests.component.emulator.controllers import reject_pods, set_statefulset_status
from tests.component.emulator.http import Emulator
from tests.component.emulator.patches import merge_patch
from tests.component.emulator.resources import ApiStatus, ResourceDef
from tests.component.emulator.store import Store, Write


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
        self.call(lambda: set_statefulset_status(self.store, namespace, name, ready))

    def reject_pods(self, name: str, message: str, namespace: str = "default") -> None:
        """The StatefulSet's pods refused at admission (its status and FailedCreate Event)."""
        self.call(lambda: reject_pods(self.store, namespace, name, message))

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
