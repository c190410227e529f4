"""Writing statuses: only what differs, Mailboxes in batches, Events for their transitions.

A status is written when it differs both from the object's and from the operator's own last
write (``memory.WrittenStatus``: the watch may deliver that write a moment later), as a JSON
merge patch of the status subresource. Transitions are computed from the operator's last write
too, so ``lastTransitionTime`` does not move back and forth with a stale copy. Every status
computed, written or not, is noted for the condition gauges (``metrics``). A Mailbox that
becomes invalid gets a Warning Event (``events.mailbox_notices``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mailstack.controller import reasons
from mailstack.controller.conditions import Condition, MailboxVerdict, orphan_verdict
from mailstack.controller.documents import doc_generation, doc_name
from mailstack.controller.events import EventPoster, mailbox_notices
from mailstack.controller.kinds import MAILBOX, Kind
from mailstack.controller.kube import ApiError, Kube
from mailstack.controller.memory import WrittenStatus
from mailstack.controller.outcome import ReconcileError
from mailstack.controller.status import mailbox_status, status_patch
from mailstack.kubedoc import Obj, ObjectRef


class StatusWriter:
    """Writes the statuses of MailDomains and Mailboxes; remembers them in ``written``."""

    def __init__(self, kube: Kube, written: WrittenStatus, events: EventPoster, batch: int) -> None:
        self.kube = kube
        self.written = written
        self.events = events
        self._batch = batch
        self.metrics = kube.metrics  # every status computed is noted: the condition gauges

    def previous(self, kind: Kind, doc: Mapping[str, Any]) -> Any:
        """The status to compute transitions from (see ``WrittenStatus.previous``)."""
        ref = ObjectRef.of(doc)
        return self.written.previous(kind.kind, ref.namespace, ref.name, ref.uid, doc.get("status"))

    def current(self, kind: Kind, doc: Mapping[str, Any], status: Obj) -> bool:
        """Whether ``status`` is what the object has, or what the operator last wrote to it."""
        if doc.get("status") == status:
            return True
        ref = ObjectRef.of(doc)
        return self.written.matches(kind.kind, ref.namespace, ref.name, ref.uid, status)

    async def write(self, kind: Kind, doc: Mapping[str, Any], status: Obj) -> bool:
        """Patch the status subresource when ``status`` differs; True when written."""
        ref = ObjectRef.of(doc)
        self.metrics.note_status(kind.kind, ref.namespace, ref.name, status)
        patch = status_patch(doc.get("status"), status)
        if patch is None or self.current(kind, doc, status):
            return False
        try:
            await self.kube.patch_status(kind, ref.namespace, ref.name, patch)
        except ApiError as err:
            if err.status == 404:
                return False  # deleted meanwhile
            raise ReconcileError(
                f"writing the status of {kind.kind}/{ref.name}: {err}", reasons.STATUS_WRITE_FAILED
            ) from err
        self.written.put(kind.kind, ref.namespace, ref.name, ref.uid, status)
        return True

    # --- Mailboxes ------------------------------------------------------------------------

    def _mailbox_status(
        self,
        doc: Mapping[str, Any],
        valid: Condition,
        ready: Condition,
        *,
        now: datetime,
        domain_name: str | None,
    ) -> Obj:
        return mailbox_status(
            valid,
            ready,
            generation=doc_generation(doc),
            previous=self.previous(MAILBOX, doc),
            now=now,
            domain_name=domain_name,
        )

    async def write_mailboxes(
        self,
        mailboxes: Sequence[Mapping[str, Any]],
        verdicts: Sequence[MailboxVerdict],
        domain_name: str,
        now: datetime,
    ) -> int:
        """The Mailboxes' statuses that differ, written a batch at a time; returns the count.

        A first reconcile of a large domain writes hundreds, and building them all as
        concurrent requests at once would only hold their memory longer.
        """
        by_name = {doc_name(doc): doc for doc in mailboxes}
        changed: list[tuple[Mapping[str, Any], Obj]] = []
        for verdict in verdicts:
            doc = by_name[verdict.name]
            status = self._mailbox_status(
                doc, verdict.valid, verdict.ready, now=now, domain_name=domain_name
            )
            self.metrics.note_status(MAILBOX.kind, *ObjectRef.of(doc)[:2], status)
            if not self.current(MAILBOX, doc, status):
                changed.append((doc, status))
        writes = 0
        for start in range(0, len(changed), self._batch):
            batch = changed[start : start + self._batch]
            writes += sum(await asyncio.gather(*(self._write_mailbox(d, s) for d, s in batch)))
        return writes

    async def _write_mailbox(self, doc: Mapping[str, Any], status: Obj) -> int:
        """Write one Mailbox's status (1 when written), a Warning when it became invalid."""
        before = doc.get("status")
        if not await self.write(MAILBOX, doc, status):
            return 0
        await self.events.post(MAILBOX, doc, mailbox_notices(before, status))
        return 1

    async def orphan(self, mailbox: Mapping[str, Any], now: datetime | None = None) -> bool:
        """Status of a Mailbox no MailDomain serves (or whose address cannot be read)."""
        valid, ready = orphan_verdict(mailbox)
        status = self._mailbox_status(
            mailbox, valid, ready, now=now or datetime.now(UTC), domain_name=None
        )
        return bool(await self._write_mailbox(mailbox, status))
