"""The Kubernetes Events the operator posts: which ones (decided purely) and their posting.

Events report transitions, not states: Ready becoming True or leaving True, Valid becoming False,
a failed render (``status.domain_event_type``), a Mailbox becoming invalid, and the children a
pass changed (applied, deleted, restored after an edit by someone else, a StatefulSet recreated).
The functions here turn a status change or an ``Outcome`` into ``Notice``s; ``event_body`` makes
a core/v1 Event of one; ``EventPoster`` posts it, and a failed post never fails a reconcile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from mailstack.controller import reasons
from mailstack.controller.conditions import VALID
from mailstack.controller.kinds import EVENT, Kind
from mailstack.controller.kube import ApiError, Kube
from mailstack.controller.outcome import Outcome
from mailstack.controller.status import domain_event_type, timestamp, transitions
from mailstack.kubedoc import Obj, ObjectRef

logger = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]


class Notice(NamedTuple):
    """What one Event says: its type, reason and message."""

    type: EventType
    reason: str
    message: str


def domain_notices(before: Any, status: Mapping[str, Any]) -> list[Notice]:
    """The MailDomain's condition transitions worth an Event (see ``domain_event_type``)."""
    notices = []
    for change in transitions(before, status):
        type_ = domain_event_type(change)
        if type_ == "Normal":
            notices.append(Notice("Normal", reasons.READY, change.message))
        elif type_ == "Warning":
            notices.append(Notice("Warning", change.reason, change.message))
    return notices


def change_notices(outcome: Outcome) -> list[Notice]:
    """The children one pass changed: recreated StatefulSets, restored and applied objects."""
    notices = [
        Notice(
            "Normal",
            reasons.RECREATED,
            f"StatefulSet {sts} recreated: a field it cannot change did (storage); its pods "
            "and volume claims were kept, existing volumes keep their size",
        )
        for sts in outcome.recreated
    ]
    restored = [a for a in outcome.applied if a.startswith("restore ")]
    if restored:
        notices.append(
            Notice(
                "Warning",
                reasons.RESTORED,
                "changed or deleted outside the operator, restored: "
                + ", ".join(a.partition(" ")[2] for a in restored),
            )
        )
    others = [a for a in outcome.applied if not a.startswith("restore ")]
    if others or outcome.deleted:
        notices.append(
            Notice(
                "Normal",
                reasons.APPLIED,
                ", ".join(others + [f"delete {d}" for d in outcome.deleted]),
            )
        )
    return notices


def mailbox_notices(before: Any, status: Mapping[str, Any]) -> list[Notice]:
    """A Mailbox that became invalid: a Warning named after the reason (``InvalidSpec``...)."""
    return [
        Notice("Warning", f"{reasons.INVALID_PREFIX}{change.reason}", change.message)
        for change in transitions(before, status)
        if change.type == VALID and change.after == "False"
    ]


def finalized_notice(summary: str) -> Notice:
    return Notice("Normal", reasons.FINALIZED, summary)


def event_body(
    kind: Kind, doc: Mapping[str, Any], notice: Notice, *, instance: str, now: datetime, serial: int
) -> Obj:
    """A core/v1 Event about ``doc``; ``serial`` makes its name unique (nanoseconds)."""
    ref = ObjectRef.of(doc)
    namespace = ref.namespace or "default"
    stamp = timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref.name}.{serial:x}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "name": ref.name,
            "namespace": namespace,
            "uid": ref.uid,
        },
        "type": notice.type,
        "reason": notice.reason[:128],
        "message": notice.message[:1024],
        "source": {"component": "mailstack"},
        "reportingComponent": "mailstack.dev/operator",
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventPoster:
    """Posts Events as ``instance`` (the pod's name); a failure is logged, never raised."""

    def __init__(self, kube: Kube, instance: str) -> None:
        self.kube = kube
        self.instance = instance

    async def post(self, kind: Kind, doc: Mapping[str, Any], notices: Iterable[Notice]) -> None:
        """Post one Event per notice about ``doc``, in order."""
        for notice in notices:
            body = event_body(
                kind,
                doc,
                notice,
                instance=self.instance,
                now=datetime.now(UTC),
                serial=time.time_ns(),
            )
            try:
                await self.kube.create(EVENT, body["metadata"]["namespace"], body)
            except ApiError as err:
                logger.warning(
                    "could not post the %s event %s: %s", notice.type, notice.reason, err
                )
