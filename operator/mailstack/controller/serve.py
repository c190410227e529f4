"""Running the kopf operator: one function from a configuration to a running operator.

``serve`` is what ``mailstack operator`` (``commands/operator.py``) runs, and also what the
component tests and the benchmark start (in a thread or a process), so what is tested is what is
deployed. It also serves the operator's ``/metrics`` when the config names an address.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # kopf is imported when the operator runs, not on every CLI call
    from mailstack.controller.config import OperatorConfig
    from mailstack.controller.handlers import Operator


async def serve(
    config: OperatorConfig,
    *,
    liveness: str | None = None,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    operator: Operator | None = None,
) -> None:
    """Run the operator in the current event loop until ``stop_flag`` is set (or a signal)."""
    import kopf

    from mailstack.controller.config import configure
    from mailstack.controller.handlers import Operator, build_registry
    from mailstack.controller.metrics import serve_metrics

    op = operator or Operator(config)
    settings = kopf.OperatorSettings()
    configure(settings, config)
    # Before kopf: a port already taken fails the start, not a scrape later.
    metrics = (
        await serve_metrics(op.metrics, config.metrics_address) if config.metrics_address else None
    )
    try:
        await kopf.operator(
            registry=build_registry(op),
            settings=settings,
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            standalone=config.peering is None,
            peering_name=config.peering,
            priority=config.priority,
            identity=op.identity,  # type: ignore[arg-type]  # kopf's NewType over str
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        if metrics is not None:
            await metrics.cleanup()
