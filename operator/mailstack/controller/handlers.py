"""The kopf side of the operator: settings, the MailDomain handlers, the informers' callbacks.

kopf runs the MailDomain lifecycle (one registry per operator, so tests can run several):
- create / update / resume → ``reconcile`` now (kopf retries on ``TemporaryError``);
- a daemon per MailDomain → the coalescing loop: waits until something changed (or the resync
  interval passed: drift correction), lets a burst settle for ``debounce`` s, reconciles;
- delete → ``finalize`` (finalizer ``mailstack.dev/finalizer``): the MailDomain's DNS records
  are removed first; while the provider fails, the finalizer stays (a Warning Event says why).

Mailboxes, Secrets and the children are watched by informers (``informer``, see there why not
kopf) whose callbacks only update memory (``index.Documents``, ``memory.SecretCache``) and mark
the MailDomains concerned:
- a Mailbox whose spec changed, appeared or went → its MailDomain (and its MailServer:
  ``server_handlers``); one that no MailDomain serves gets its status from here;
- a Secret labelled ``mailstack.dev/usable-by`` that changed, appeared, went or lost the label →
  the MailDomains using it (the operator's own are watched as children, ``managed-by``);
- a child changed or deleted by someone else (not the echo of the operator's own write) → its
  owner (a MailDomain, or a MailServer): a deleted or edited child is restored, a StatefulSet's
  readiness reaches WorkloadsReady.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets as secrets_module
import socket
from collections.abc import Mapping
from typing import Any

import kopf

from mailstack.api.models import GROUP, VERSION
from mailstack.api.secret_access import USABLE_BY_LABEL
from mailstack.controller import plan
from mailstack.controller.config import OperatorConfig
from mailstack.controller.dns_publisher import DnsPublisher
from mailstack.controller.documents import (
    address_domain,
    namespaced_name,
    owner_name,
    served_domain,
)
from mailstack.controller.fairness import FairSlots
from mailstack.controller.finalize import finalize
from mailstack.controller.grants import PolicySet
from mailstack.controller.index import Documents
from mailstack.controller.informer import Informer
from mailstack.controller.kinds import (
    CHILD_KINDS,
    CLUSTER_PEERING,
    MAILBOX,
    MAILDOMAIN,
    MAILDOMAIN_POLICY,
    OPTIONAL_KINDS,
    PEERING,
    SECRET,
)
from mailstack.controller.kube import Kube
from mailstack.controller.login import log_in
from mailstack.controller.memory import Coalescer, DomainKey, Echoes, Peering, SecretCache
from mailstack.controller.metrics import OperatorMetrics
from mailstack.controller.outcome import Outcome, ReconcileError
from mailstack.controller.proof_lookup import ProofLookup
from mailstack.controller.reconcile import Reconciler
from mailstack.controller.server_handlers import Servers, register_servers
from mailstack.kubedoc import Obj

logger = logging.getLogger("mailstack.operator")

MANAGED_BY = "app.kubernetes.io/managed-by=mailstack"
MAILDOMAINS = (GROUP, VERSION, "maildomains")
MAILBOXES = (GROUP, VERSION, "mailboxes")


class Operator:
    """The state one running operator shares between its handlers and informers."""

    def __init__(self, config: OperatorConfig | None = None) -> None:
        self.config = config or OperatorConfig()
        self.coalescer = Coalescer()
        self.policies = PolicySet(self.config.require_domain_grant)
        self.documents = Documents(self.policies.may_serve, lambda: self.policies.grants)
        self.secrets = SecretCache(self.documents.references)  # referenced ones with their data
        self.documents.released = self.secrets.release
        self.echoes = Echoes()
        self.metrics = OperatorMetrics()  # /metrics (``serve``); the client hands it on
        # An explicit peering identity, so that this code and kopf agree on which peer is us.
        self.identity = self.config.identity or (
            f"{os.environ.get('POD_NAME') or socket.gethostname()}/{os.getpid()}"
            f"/{secrets_module.token_hex(3)}"
        )
        self.peering = Peering(
            self.identity, self.config.priority, enabled=self.config.peering is not None
        )
        self.informers: list[Informer] = []
        self.servers = Servers(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._locks: dict[DomainKey, asyncio.Lock] = {}
        self.slots = FairSlots(self.config.parallel_reconciles, self.config.namespace_reconciles)
        self._kube: Kube | None = None
        self._reconciler: Reconciler | None = None
        self._settings: kopf.OperatorSettings | None = None

    def bind_settings(self, settings: kopf.OperatorSettings) -> None:
        """kopf's settings of the running operator (for logging in as kopf would)."""
        self._settings = settings

    async def login(self) -> kopf.ConnectionInfo:
        if self.config.connection is not None:
            return self.config.connection
        return await log_in(self._settings or kopf.OperatorSettings())

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(self.login, metrics=self.metrics)
        return self._kube

    @property
    def reconciler(self) -> Reconciler:
        if self._reconciler is None:
            self._reconciler = Reconciler(
                self.kube,
                options=self.config.render,
                secrets=self.secrets,
                echoes=self.echoes,
                concurrency=self.config.concurrency,
                dns=DnsPublisher(self.config.dns),
                render_workers=self.config.parallel_reconciles,
            )
            self._reconciler.grants = self.policies.grants
            # Woken: a DNS publication or proof lookup ended in the background, a back-off is over.
            self._reconciler.dns.wake = lambda ns, name: self._mark_kept((ns, name))
            self._reconciler.proofs = ProofLookup.of(self.config, self._reconciler.dns.wake)
        return self._reconciler

    async def start(self) -> None:
        """Start the informers, in dependency order, each primed before the next starts.

        MailDomains first (a Mailbox without one is reported as such), then Mailboxes (so that a
        Secret event finds the MailDomains using it), then the labelled Secrets and the
        children. When this returns, the first reconcile of every MailDomain sees every Mailbox
        and every password it may use.
        """
        namespaces: tuple[str | None, ...] = self.config.namespaces or (None,)
        peerings: list[Informer] = []
        if self.config.peering is not None:
            if self.config.namespaces:
                peerings = [Informer(self.kube, PEERING, ns, self._on_peering) for ns in namespaces]
            else:
                peerings = [Informer(self.kube, CLUSTER_PEERING, None, self._on_peering)]
        if not self.config.namespaces:  # cluster-scoped: only a cluster-wide operator reads them
            peerings.append(
                Informer(self.kube, MAILDOMAIN_POLICY, None, self._on_policy, optional=True)
            )
        stages: list[list[Informer]] = [
            peerings + [Informer(self.kube, MAILDOMAIN, ns, self._on_domain) for ns in namespaces],
            [Informer(self.kube, MAILBOX, ns, self._on_mailbox) for ns in namespaces],
            # Secrets: the users' labelled ones, and the operator's own among the children. No
            # informer sees a Secret with neither label (api/secret_access.py).
            [
                Informer(self.kube, SECRET, ns, self._on_secret, label_selector=USABLE_BY_LABEL)
                for ns in namespaces
            ]
            + [
                Informer(
                    self.kube,
                    kind,
                    ns,
                    self._on_child,
                    label_selector=MANAGED_BY,
                    optional=kind in OPTIONAL_KINDS,
                )
                for kind in CHILD_KINDS
                for ns in namespaces
            ],
        ]
        for stage in stages:
            for informer in stage:
                self.informers.append(informer)
                self._tasks.append(asyncio.create_task(informer.run(), name=repr(informer)))
            await asyncio.gather(*(informer.primed.wait() for informer in stage))
        logger.info(
            "watching %d MailDomain(s), %d Mailbox(es), %d referenced Secret(s)",
            self.documents.domain_count(),
            self.documents.mailbox_count(),
            len(self.secrets),
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._reconciler is not None:
            self._reconciler.dns.runner.close()
            self._reconciler.close_background()
        if self._kube is not None:
            await self._kube.close()

    # --- informer callbacks: cheap; they only update memory and mark MailDomains --------------

    def _mark(self, keys: set[DomainKey]) -> None:
        for key in keys:
            self.coalescer.mark(key)
        self.servers.mark_domains(keys)  # a joined MailDomain's change is its server's too

    async def _on_domain(self, kind: str, body: Obj, primed: bool) -> None:
        namespace, name = namespaced_name(body)
        old = self.documents.domain(namespace, name)
        if kind == "DELETED":
            affected = self.documents.drop_domain(namespace, name)
        else:
            affected = self.documents.put_domain(body)
        self.servers.note_domain(kind, body, old)
        # The MailDomain itself is kopf's; its siblings (which may now win or lose it) are ours.
        affected |= self._limited_peers(namespace, old, body, kind)
        if primed:
            self._mark(affected - {(namespace, name)})

    def _limited_peers(
        self, namespace: str, old: Obj | None, body: Obj, kind: str
    ) -> set[DomainKey]:
        """A limited namespace's MailDomains, when one of its objects came, went or changed."""
        if not self.policies.grants.limits_for(namespace).bounded:
            return set()
        if kind != "DELETED" and old is not None and old.get("spec") == body.get("spec"):
            return set()
        return self.documents.namespace_domain_keys(namespace)

    async def _on_policy(self, kind: str, body: Obj, primed: bool) -> None:
        if self.policies.update(kind, body):
            self.reconciler.grants = self.policies.grants
            self.documents.release_unreferenced()  # a MailDomain may no longer serve
            if primed:
                self._mark(self.documents.domain_keys())

    async def _on_peering(self, kind: str, body: Obj, primed: bool) -> None:
        key = namespaced_name(body)
        if key[1] == self.config.peering:
            status = body.get("status") if kind != "DELETED" else None
            self.peering.update(key, status if isinstance(status, Mapping) else {})

    async def _on_mailbox(self, kind: str, body: Obj, primed: bool) -> None:
        namespace, name = namespaced_name(body)
        old = self.documents.mailbox(namespace, name)
        if kind == "DELETED":
            affected = self.documents.drop_mailbox(namespace, name)
            self.metrics.forget(MAILBOX.kind, namespace, name)
        else:
            affected = self.documents.put_mailbox(body)
            if old is not None and old.get("spec") == body.get("spec"):
                affected = set()  # only status or metadata changed (the operator's own writes)
        affected |= self._limited_peers(namespace, old, body, kind)
        if primed:
            self._mark(affected)
        domain = address_domain(body)
        orphan = kind != "DELETED" and not self.documents.domain_names(namespace, domain)
        if orphan and self.peering.active():
            try:
                await self.reconciler.statuses.orphan(body)
            except ReconcileError as err:
                logger.warning("%s/%s: %s", namespace, name, err)

    async def _on_secret(self, kind: str, body: Obj, primed: bool) -> None:
        # Every Secret labelled usable-by is known, the referenced ones with their data (others
        # are read when referenced). One losing the label leaves the watch: DELETED, forgotten.
        namespace, name = namespaced_name(body)
        if kind == "DELETED":
            changed = self.secrets.drop(namespace, name)
        else:
            changed = self.secrets.put(body)
        if changed and primed:
            self._mark(self.documents.secret_users(namespace, name))

    async def _on_child(self, kind: str, body: Obj, primed: bool) -> None:
        if primed:
            child_changed(self, kind, body, namespaced_name(body)[0])

    # --- actions --------------------------------------------------------------------------

    async def reconcile(self, body: Mapping[str, Any], *, resync: bool = False) -> Outcome:
        """One pass for one MailDomain, serialised per MailDomain.

        ``resync``: the periodic pass (nothing marked): DNS records are published again too.
        """
        snapshot = {k: body[k] for k in body}  # the daemon's body is a live view
        key = namespaced_name(snapshot)
        async with self._locks.setdefault(key, asyncio.Lock()), self.slots.slot(key[0]):
            self.coalescer.clear(key)  # this pass covers every change seen so far
            bounded = self.policies.grants.limits_for(key[0]).bounded
            view = self.documents.in_namespace(key[0]) if bounded else plan.NO_VIEW
            outcome = await self.reconciler.reconcile(
                snapshot,
                self.documents.mailboxes(key[0], served_domain(snapshot)),
                self.documents.contenders(snapshot),
                resync=resync,
                view=view,
                served=self.servers.serving(key),
            )
        if outcome.retry_after is not None:  # a proof of control to look up again
            asyncio.get_running_loop().call_later(outcome.retry_after, self._mark_kept, key)
        return outcome

    def _mark_kept(self, key: DomainKey) -> None:
        if self.documents.has_domain(*key):  # not a MailDomain deleted meanwhile
            self.coalescer.mark(key)

    async def run_daemon(self, body: Mapping[str, Any], stopped: kopf.DaemonStopped) -> None:
        """Coalesce changes into reconciles; resync when nothing happens for a while."""
        key = namespaced_name(body)
        try:
            while not stopped:
                marked = await self.coalescer.wait(key, self.config.resync_interval)
                if stopped:
                    break
                if marked:
                    await asyncio.sleep(self.config.debounce)  # let the burst land
                try:
                    await self.reconcile(body, resync=not marked)
                except ReconcileError as err:
                    logger.warning("%s/%s: %s (retrying in %gs)", *key, err, err.delay)
                    await asyncio.sleep(err.delay)
                    self.coalescer.mark(key)
        finally:
            self.coalescer.forget(key)

    async def finalize(self, body: Mapping[str, Any]) -> str:
        """The MailDomain is going (``finalize``); the next claim of its domain may take over."""
        namespace, name = namespaced_name(body)
        domain = served_domain(body)
        # The Mailboxes stay with a remaining MailDomain of the same namespace, if there is one.
        stays = bool(set(self.documents.domain_names(namespace, domain)) - {name})
        # Its contenders (the same domain, the same host name, ...) may take over.
        others = {namespaced_name(d) for d in self.documents.contenders(body)} - {(namespace, name)}
        boxes = [] if stays else self.documents.mailboxes(namespace, domain)
        summary = await finalize(self.reconciler, body, boxes)
        self._mark(others)
        self._locks.pop((namespace, name), None)
        return summary


def build_registry(op: Operator) -> kopf.OperatorRegistry:
    """Every kopf handler of one operator instance, bound to its state ``op``."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry, id="startup")
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        op.bind_settings(settings)
        await op.start()

    @kopf.on.cleanup(registry=registry, id="cleanup")
    async def cleanup(**_: Any) -> None:
        await op.close()

    @kopf.on.login(registry=registry, id="login")
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return await op.login()

    @kopf.on.resume(*MAILDOMAINS, registry=registry, id="reconcile")
    @kopf.on.create(*MAILDOMAINS, registry=registry, id="reconcile")
    @kopf.on.update(*MAILDOMAINS, registry=registry, id="reconcile")
    async def reconcile(body: kopf.Body, **_: Any) -> None:
        try:
            await op.reconcile(body)
        except ReconcileError as err:
            raise kopf.TemporaryError(str(err), delay=err.delay) from err

    @kopf.daemon(*MAILDOMAINS, registry=registry, id="coalesce", cancellation_timeout=5.0)
    async def coalesce(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        await op.run_daemon(body, stopped)

    @kopf.on.delete(*MAILDOMAINS, registry=registry, id="finalize")
    async def finalize(
        body: kopf.Body, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
    ) -> None:
        try:
            summary = await op.finalize(body)
        except ReconcileError as err:
            raise kopf.TemporaryError(str(err), delay=err.delay) from err
        logger.info("finalized: %s", summary)

    register_servers(registry, op)
    return registry


def child_changed(op: Operator, event_type: str, body: Mapping[str, Any], namespace: str) -> None:
    """A child changed: mark its MailDomain unless this is the operator's own write.

    ``event_type``: the informer's ADDED, MODIFIED or DELETED (never the initial listing: the
    resume handler reconciles every MailDomain anyway).
    """
    if event_type != "DELETED" and op.echoes.is_echo(body):
        return
    owner = owner_name(body)
    if owner is not None and op.documents.has_domain(namespace, owner):
        op.coalescer.mark((namespace, owner))  # (not the children the GC removes after their owner)
    op.servers.child_changed(namespace, body)
