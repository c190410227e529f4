"""Owns the shared MailServers' side of the running operator (#18): which MailDomains join
which server (a cluster-wide index by ``spec.serverRef``), the coalescing of the servers'
passes, and their kopf handlers.

A MailServer's pass (``server_pass``) covers every joined domain, so whatever would mark a
joined MailDomain (its spec, its Mailboxes, its Secrets: ``handlers.Operator._mark``) marks its
server too, and so does the MailDomain joining or leaving; a child the MailServer owns changed by
someone else (or a StatefulSet's readiness) marks the server. The documents themselves are the
operator's ``index.Documents`` (informers), read at each pass: nothing here keeps a copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import kopf

from mailstack.api.models import GROUP, VERSION
from mailstack.controller.documents import namespaced_name, owner_name, served_domain
from mailstack.controller.kinds import MAILSERVER
from mailstack.controller.memory import Coalescer
from mailstack.controller.outcome import Outcome, ReconcileError
from mailstack.controller.plan import parsed_contender
from mailstack.controller.server_pass import ServerPass

if TYPE_CHECKING:
    from mailstack.controller.handlers import Operator

logger = logging.getLogger("mailstack.operator")

MAILSERVERS = (GROUP, VERSION, "mailservers")
Key = tuple[str, str]  # (namespace, name)


def server_of(doc: Mapping[str, Any]) -> Key | None:
    """The MailServer a raw MailDomain joins (its parsed ``serverRef``), or None."""
    parsed = parsed_contender(doc)
    if parsed is None or parsed.server_ref is None:
        return None
    return parsed.server_ref.namespace, parsed.server_ref.name


class Servers:
    """The joined-domain index and the MailServer passes of one operator."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        op.documents.served_by_server = lambda namespace, name: bool(
            self.serving((namespace, name))[0]
        )
        self.coalescer = Coalescer()
        self._server_of: dict[Key, Key] = {}
        self._joined: dict[Key, set[Key]] = defaultdict(set)
        self._locks: dict[Key, asyncio.Lock] = {}
        self._pass: ServerPass | None = None
        # The MailDomains the last pass of each server served, with the server's readiness:
        # what their own passes report (``serving``).
        self._served: dict[Key, dict[Key, tuple[str, bool]]] = {}

    @property
    def server_pass(self) -> ServerPass:
        if self._pass is None:
            self._pass = ServerPass(self.op.reconciler)
        return self._pass

    # --- the index ---------------------------------------------------------------------------

    def note_domain(
        self, kind: str, body: Mapping[str, Any], old: Mapping[str, Any] | None
    ) -> None:
        """A MailDomain came, changed or went: its servers, before and after, are marked
        (not for a change of its status or metadata alone: the operator's own writes)."""
        key = namespaced_name(body)
        before = self._server_of.pop(key, None)
        if before is not None:
            self._joined[before].discard(key)
        after = server_of(body) if kind != "DELETED" else None
        if after is not None:
            self._server_of[key] = after
            self._joined[after].add(key)
        same = kind != "DELETED" and old is not None and old.get("spec") == body.get("spec")
        if not (same and before == after):
            self._mark(k for k in (before, after) if k is not None)

    def serving(self, domain: Key) -> tuple[str, bool]:
        """The MailServer (``MailServer/<namespace>/<name>``) whose last pass served
        ``domain``, and whether it was ready; ("", False) for none."""
        server = self._server_of.get(domain)
        served = self._served.get(server, {}) if server is not None else {}
        return served.get(domain, ("", False))

    def _note_served(self, server: Key, served: dict[Key, tuple[str, bool]]) -> None:
        """The domains a pass of ``server`` served; those whose state changed are marked (their
        status says it)."""
        before = self._served.pop(server, {})
        if served:
            self._served[server] = served
        for key in set(before) | set(served):
            if (before.get(key) or ("",))[0] != (served.get(key) or ("",))[0]:
                # Its Mailboxes' Secrets count (or no longer do) as a stack's (``index``): a
                # domain served now has them read by the server's next pass.
                self.op.documents.release_unreferenced(key[0])
                if key in served:
                    self.coalescer.mark(server)
            if before.get(key) != served.get(key) and self.op.documents.has_domain(*key):
                self.op.coalescer.mark(key)

    def joined(self, server: Key) -> list[Key]:
        """The MailDomains naming ``server`` in their ``serverRef``, sorted."""
        return sorted(self._joined.get(server, ()))

    def mark_domains(self, keys: Iterable[Key]) -> None:
        """Marks the servers of these MailDomains (what changed for them changes the server)."""
        self._mark({self._server_of[k] for k in keys if k in self._server_of})

    def child_changed(self, namespace: str, body: Mapping[str, Any]) -> None:
        owner = owner_name(body, MAILSERVER)
        if owner is not None:
            self.coalescer.mark((namespace, owner))

    def _mark(self, servers: Iterable[Key]) -> None:
        for server in servers:
            self.coalescer.mark(server)

    # --- the pass ----------------------------------------------------------------------------

    async def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        """One pass for one MailServer, serialised per server, with its joined domains."""
        snapshot = {key: body[key] for key in body}  # the daemon's body is a live view
        key = namespaced_name(snapshot)
        docs = self.op.documents
        async with self._locks.setdefault(key, asyncio.Lock()), self.op.slots.slot(key[0]):
            self.coalescer.clear(key)
            domains = [d for k in self.joined(key) if (d := docs.domain(*k)) is not None]
            keys = {namespaced_name(d) for d in domains}
            contenders = {
                namespaced_name(c): c
                for d in domains
                for c in docs.contenders(d)
                if namespaced_name(c) not in keys
            }
            mailboxes = {
                namespaced_name(d): docs.mailboxes(namespaced_name(d)[0], served_domain(d))
                for d in domains
            }
            outcome, rendered, status = await self.server_pass.reconcile(
                snapshot, domains, list(contenders.values()), mailboxes
            )
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"]
            )
            ref = f"{MAILSERVER.kind}/{key[0]}/{key[1]}"
            served = {(s.domain.namespace, s.domain.name): (ref, ready) for s in rendered.served}
            self._note_served(key, served)
        return outcome

    async def run_daemon(self, body: Mapping[str, Any], stopped: kopf.DaemonStopped) -> None:
        """Coalesce changes into passes (the first at once); resync when nothing happens."""
        key = namespaced_name(body)
        self.coalescer.mark(key)
        try:
            while not stopped:
                marked = await self.coalescer.wait(key, self.op.config.resync_interval)
                if stopped:
                    break
                if marked:
                    await asyncio.sleep(self.op.config.debounce)
                try:
                    await self.reconcile(body)
                except ReconcileError as err:
                    logger.warning("MailServer %s/%s: %s (retrying)", *key, err)
                    await asyncio.sleep(err.delay)
                    self.coalescer.mark(key)
        finally:
            self.coalescer.forget(key)
            self._locks.pop(key, None)
            self._note_served(key, {})  # (stopped: deleted, or this replica stands by)
            self.op.metrics.forget(MAILSERVER.kind, *key)


def register_servers(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """The MailServer handlers: a change of its spec marks it; a daemon runs its passes."""

    @kopf.on.resume(*MAILSERVERS, registry=registry, id="mark")
    @kopf.on.create(*MAILSERVERS, registry=registry, id="mark")
    @kopf.on.update(*MAILSERVERS, registry=registry, id="mark")
    async def mark(body: kopf.Body, **_: Any) -> None:
        op.servers.coalescer.mark(namespaced_name(body))

    @kopf.daemon(*MAILSERVERS, registry=registry, id="coalesce", cancellation_timeout=5.0)
    async def coalesce(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        await op.servers.run_daemon(body, stopped)
