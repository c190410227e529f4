"""What one reconcile pass did (``Outcome``), how a pass fails (``ReconcileError``), and what
its phases hand each other (``Gathered``, ``ApplyResult``).

Shared by the reconciler that fills them, the Events that report them, the finalizer and the
kopf handlers that turn a ``ReconcileError`` into a retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailstack.controller.kinds import ChildKey
from mailstack.kubedoc import Obj

if TYPE_CHECKING:
    from mailstack.controller import plan
    from mailstack.controller.dns_publisher import DnsOutcome
    from mailstack.controller.kube import ApiError


class ReconcileError(Exception):
    """A pass that must be retried; ``delay`` is the suggested wait in seconds, ``reason`` one
    of the pass failures of ``reasons`` (the errors metric's label)."""

    def __init__(self, message: str, reason: str, delay: float = 10) -> None:
        self.delay = delay
        self.reason = reason
        super().__init__(message)


@dataclass
class Outcome:
    """What one pass did (for logs, Events, tests and the benchmark)."""

    applied: list[str] = field(default_factory=list)  # "<action> <Kind>/<name>"
    deleted: list[str] = field(default_factory=list)  # "<Kind>/<name>"
    recreated: list[str] = field(default_factory=list)  # StatefulSets, orphaning their pods
    status_writes: int = 0
    valid: bool = True
    # Seconds until the pass must run again without an event (a proof of control to look up).
    retry_after: float | None = None

    @property
    def changed_objects(self) -> bool:
        """Whether the pass applied or deleted any child."""
        return bool(self.applied or self.deleted)


@dataclass(frozen=True)
class Gathered:
    """What ``_gather`` read: the render's inputs and the material Secrets as they are."""

    inputs: plan.DomainInputs
    material: Mapping[ChildKey, Obj | None]


@dataclass(frozen=True)
class ApplyResult:
    """What ``_apply_children`` left behind.

    ``error``: the first write the API server refused (the pass is retried; the statuses say so).
    ``endpoint_dns``: DNSReady and the records of the externalDNS provider's DNSEndpoint.
    ``children``: the children as they are now (what was read, updated by what was written).
    ``taken``: ``Kind/name`` of the objects of a child's name that are not the MailDomain's
    (``ownership``): then nothing was written.
    """

    error: ApiError | None
    endpoint_dns: DnsOutcome | None
    children: Mapping[ChildKey, Obj | None]
    taken: tuple[str, ...] = ()
