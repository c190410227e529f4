"""Owns finding why a StatefulSet's pods are missing: the message of a refused pod creation.

When the API server refuses a mail pod (Pod Security admission in a namespace labelled
``restricted``, a ResourceQuota, an admission webhook), nothing in the StatefulSet's status says
so: unlike a ReplicaSet (``ReplicaFailure``), a StatefulSet gets no condition for it. Its
controller records a Warning Event ``FailedCreate`` on the StatefulSet instead ("create Pod <pod>
in StatefulSet <sts> failed error: <the API server's message>"; the same reason for a volume
claim it could not create) and a Normal ``SuccessfulCreate`` once a pod is created, and it
retries with back-off, counting into the same Event. The newest of the two says whether the
creation is refused now.

Events are read only for a StatefulSet with fewer pods than replicas (``status.replicas``): one
list request per such StatefulSet and pass, none for a running mail service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from mailstack.controller.kinds import EVENT, STATEFUL_SET
from mailstack.controller.kube import ApiError, Kube
from mailstack.kubedoc import Obj, ObjectRef, meta_of, spec_of

logger = logging.getLogger(__name__)

FAILED_CREATE = "FailedCreate"
SUCCESSFUL_CREATE = "SuccessfulCreate"


def pods_missing(statefulset: Mapping[str, Any] | None) -> bool:
    """The StatefulSet controller has seen the StatefulSet and created fewer pods than it wants."""
    if statefulset is None:
        return False
    status = statefulset.get("status") or {}
    if status.get("observedGeneration") is None:
        return False
    return int(status.get("replicas") or 0) < int(spec_of(statefulset).get("replicas", 1))


def _when(event: Mapping[str, Any]) -> datetime:
    """When the Event last happened: its series, its last time, its event time or its creation
    (the legacy recorder fills ``lastTimestamp``, the events.k8s.io one ``eventTime``)."""
    series = event.get("series") or {}
    for stamp in (
        series.get("lastObservedTime"),
        event.get("lastTimestamp"),
        event.get("eventTime"),
        meta_of(event).get("creationTimestamp"),
    ):
        if isinstance(stamp, str) and stamp:
            try:
                return datetime.fromisoformat(stamp)
            except ValueError:
                continue
    return datetime.min.replace(tzinfo=UTC)


def refused_creation(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The message of the newest ``FailedCreate`` when no ``SuccessfulCreate`` came after it.

    On a tie (the legacy Events have whole seconds) the failure wins: this is asked only while
    a pod is missing.
    """
    creations = [e for e in events if e.get("reason") in (FAILED_CREATE, SUCCESSFUL_CREATE)]
    if not creations:
        return None
    newest = max(creations, key=lambda e: (_when(e), e.get("reason") == FAILED_CREATE))
    if newest.get("reason") != FAILED_CREATE:
        return None
    return str(newest.get("message") or "the pod was refused (no message)")


def event_selector(statefulset: Mapping[str, Any]) -> str:
    """The field selector of the Events about this StatefulSet (this one: by uid too)."""
    ref = ObjectRef.of(statefulset)
    return (
        f"involvedObject.kind={STATEFUL_SET.kind},involvedObject.name={ref.name},"
        f"involvedObject.uid={ref.uid}"
    )


async def read_rejections(
    kube: Kube, namespace: str, statefulsets: Mapping[str, Obj | None]
) -> dict[str, str]:
    """The admission message of each StatefulSet whose missing pods are refused, by name.

    A failed read (the operator's role may lack ``list events`` after an upgrade of the
    operator alone) is logged, and the StatefulSet reported as it would be without Events.
    """
    found: dict[str, str] = {}
    for name, statefulset in sorted(statefulsets.items()):
        if statefulset is None or not pods_missing(statefulset):
            continue
        try:
            events = await kube.list(EVENT, namespace, field_selector=event_selector(statefulset))
        except ApiError as err:
            logger.warning("%s/%s: reading its Events failed: %s", namespace, name, err)
            continue
        message = refused_creation(events)
        if message is not None:
            found[name] = message
    return found
