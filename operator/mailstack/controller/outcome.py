"""What one reconcile pass did (``Outcome``) and how a pass fails (``ReconcileError``).

Shared by the reconciler that fills them, the Events that report them, the finalizer and the
kopf handlers that turn a ``ReconcileError`` into a retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ReconcileError(Exception):
    """A pass that must be retried; ``delay`` is the suggested wait in seconds."""

    def __init__(self, message: str, delay: float) -> None:
        self.delay = delay
        super().__init__(message)


@dataclass
class Outcome:
    """What one pass did (for logs, Events, tests and the benchmark)."""

    applied: list[str] = field(default_factory=list)  # "<action> <Kind>/<name>"
    deleted: list[str] = field(default_factory=list)  # "<Kind>/<name>"
    recreated: list[str] = field(default_factory=list)  # StatefulSets, orphaning their pods
    status_writes: int = 0
    valid: bool = True

    @property
    def changed_objects(self) -> bool:
        """Whether the pass applied or deleted any child."""
        return bool(self.applied or self.deleted)
