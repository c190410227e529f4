"""Running the real operator (``controller.serve.serve``) in a thread against the emulator.

kopf gets its own thread and event loop; the emulator has another (``emulator.ApiServer``). The
operator is stopped before the emulator, so that kopf's watch streams end cleanly instead of
reconnecting to a server that is going away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from typing import Any

import kopf

from mailstack.controller.config import OperatorConfig
from mailstack.controller.handlers import Operator
from mailstack.controller.serve import serve
from tests.component.emulator import ApiServer

logger = logging.getLogger(__name__)


def fast_config(api: ApiServer, **overrides: Any) -> OperatorConfig:
    """Fast settings: no peering, short debounce, resync only when a test wants it."""
    base = OperatorConfig(
        connection=kopf.ConnectionInfo(server=api.url, token="test"),
        peering=None,
        debounce=0.1,
        resync_interval=3600.0,
        watch_timeout=30,
    )
    return dataclasses.replace(base, **overrides)


class _Errors(logging.Handler):
    """Collects the operator thread's ERROR log records: a handler that failed is a test failure."""

    def __init__(self, thread: threading.Thread) -> None:
        super().__init__(logging.ERROR)
        self.thread = thread
        self.records: list[logging.LogRecord] = []
        self.stopping = False

    def emit(self, record: logging.LogRecord) -> None:
        # Requests kopf has in flight when it is told to stop fail with "Connector is closed":
        # shutdown noise, not a failure of the operator.
        if record.thread == self.thread.ident and not self.stopping:
            self.records.append(record)


class OperatorThread:
    def __init__(self, api: ApiServer, **overrides: Any) -> None:
        self.config = fast_config(api, **overrides)
        self.operator = Operator(self.config)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="operator", daemon=True)
        self._errors = _Errors(self._thread)

    def _run(self) -> None:
        try:
            asyncio.run(
                serve(
                    self.config,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                    operator=self.operator,
                )
            )
        except BaseException as err:  # reported by stop()
            self._error = err
            self._ready.set()

    def start(self) -> OperatorThread:
        for name in ("kopf", "mailstack"):
            logging.getLogger(name).addHandler(self._errors)
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            raise RuntimeError(f"the operator did not start: {self._error!r}")
        return self

    def stop(self, allow_errors: bool = False) -> None:
        self._errors.stopping = True
        self._stop.set()
        self._thread.join(30)
        for name in ("kopf", "mailstack"):
            logging.getLogger(name).removeHandler(self._errors)
        if self._thread.is_alive():
            raise RuntimeError("the operator did not stop within 30 s")
        if self._error is not None:
            raise RuntimeError("the operator failed") from self._error
        if self._errors.records and not allow_errors:
            messages = "\n".join(r.getMessage()[:500] for r in self._errors.records)
            raise AssertionError(f"the operator logged errors:\n{messages}")

    @property
    def errors(self) -> list[str]:
        return [r.getMessage() for r in self._errors.records]

    def busy(self) -> bool:
        """Whether a MailDomain is marked for a coalesced reconcile that has not run yet."""
        return bool(self.operator.coalescer.pending())

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
