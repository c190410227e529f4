"""The kopf side of the operator: settings, indices and thin handlers around ``Reconciler``.

Handlers (all in one registry, built per operator instance so tests can run several in turn):

- MailDomain create / update / resume → ``reconcile`` now (kopf retries on ``TemporaryError``).
- MailDomain daemon → the coalescing loop: waits until something relevant changed (or the resync
  interval passed: drift correction), lets a burst settle for ``debounce`` seconds, reconciles.
- MailDomain delete → ``finalize`` (the kopf finalizer is ``mailstack.dev/finalizer``).
- Mailbox event → mark its MailDomain (found through the ``maildomains_by_domain`` index, no API
  call), or write the orphan status when none serves it.
- Secret event → refresh the cache when a Mailbox or MailDomain refers to it, mark them.
- child event (ConfigMap, Secret, Service, ...) → mark the owning MailDomain, unless the event is
  the echo of the operator's own write. A deleted or edited child is thus restored within the
  debounce time; a StatefulSet's readiness reaches ``WorkloadsReady`` the same way.

Indices hold slim copies of Mailboxes and MailDomains (metadata, spec, status), so a reconcile
reads its inputs from memory: no list call per event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from mailstack.api.models import GROUP, VERSION
from mailstack.controller import plan
from mailstack.controller.kinds import CHILD_KINDS, MAILDOMAIN, SECRET
from mailstack.controller.kube import Kube
from mailstack.controller.memory import Coalescer, DomainKey, Echoes, SecretCache
from mailstack.controller.reconcile import Outcome, ReconcileError, Reconciler
from mailstack.render.objects import RenderOptions

logger = logging.getLogger("mailstack.operator")

PREFIX = "mailstack.dev"
FINALIZER = f"{PREFIX}/finalizer"
MANAGED_BY = "app.kubernetes.io/managed-by=mailstack"
MAILDOMAINS = (GROUP, VERSION, "maildomains")
MAILBOXES = (GROUP, VERSION, "mailboxes")


@dataclass(frozen=True)
class OperatorConfig:
    """How one operator instance runs (the ``mailstack operator`` options)."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    peering: str | None = "mailstack"  # None: standalone, no peering object needed
    priority: int = 0
    resync_interval: float = 300.0  # drift correction even without any event
    debounce: float = 1.0  # how long a burst of events may take to settle
    render: RenderOptions = field(default_factory=RenderOptions)
    connection: kopf.ConnectionInfo | None = None  # tests: a fixed API server; else in-cluster
    watch_timeout: float | None = None  # server-side watch timeout (None: the server's)
    concurrency: int = 16  # parallel reads and status writes per reconcile


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf settings: mailstack.dev annotations, peering, server-side filters, no scanning."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # kopf would post an Event for every handler success; the reconciler posts its own, about
    # transitions. kopf's warnings and errors (failed handlers) still become Events.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "mailstack.dev/operator"
    settings.peering.name = config.peering or "mailstack"
    settings.peering.priority = config.priority
    settings.peering.mandatory = config.peering is not None
    settings.peering.standalone = config.peering is None
    # The kinds are known in advance: no watching of CRDs and namespaces, which would need
    # cluster-wide list/watch on both (see the chart's RBAC).
    settings.scanning.disabled = True
    for kind in CHILD_KINDS:
        if kind is not SECRET:  # Secrets are watched whole: passwords are user Secrets
            settings.watching.label_selectors[kind.group, kind.plural] = MANAGED_BY
    settings.watching.server_timeout = config.watch_timeout
    settings.networking.request_timeout = 60
    settings.queueing.idle_timeout = 60  # per-object workers; 10k Mailboxes would churn them


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the indices keep of an object: enough to parse it and compare its status."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "generation", "resourceVersion")
            if key in meta
        },
        "spec": body.get("spec"),
        "status": body.get("status"),
    }


def owner_of(body: Mapping[str, Any]) -> str | None:
    """The MailDomain named in a child's ownerReferences."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if (
            isinstance(ref, Mapping)
            and ref.get("kind") == MAILDOMAIN.kind
            and ref.get("apiVersion") == MAILDOMAIN.api_version
        ):
            return str(ref.get("name"))
    return None


class Operator:
    """The state one running operator shares between its handlers."""

    def __init__(self, config: OperatorConfig | None = None) -> None:
        self.config = config or OperatorConfig()
        self.coalescer = Coalescer()
        self.secrets = SecretCache()
        self.echoes = Echoes()
        self._locks: dict[DomainKey, asyncio.Lock] = {}
        self._kube: Kube | None = None
        self._reconciler: Reconciler | None = None
        self._settings: kopf.OperatorSettings | None = None
        self.indices: dict[str, Any] = {}

    # --- wiring ---------------------------------------------------------------------------

    async def login(self) -> kopf.ConnectionInfo:
        if self.config.connection is not None:
            return self.config.connection
        settings = self._settings or kopf.OperatorSettings()
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
            settings=settings
        )
        if info is None:
            raise kopf.LoginError("no service account token and no kubeconfig found")
        return info

    @property
    def reconciler(self) -> Reconciler:
        if self._reconciler is None:
            self._kube = Kube(self.login)
            self._reconciler = Reconciler(
                self._kube,
                options=self.config.render,
                secrets=self.secrets,
                echoes=self.echoes,
                concurrency=self.config.concurrency,
            )
        return self._reconciler

    async def close(self) -> None:
        if self._kube is not None:
            await self._kube.close()

    def _index(self, name: str) -> Mapping[Any, Iterable[Any]]:
        index = self.indices.get(name)
        return index if index is not None else {}

    def domain_names(self, namespace: str, domain: str | None) -> list[str]:
        """Names of the MailDomains of ``namespace`` that serve ``domain``."""
        if domain is None:
            return []
        docs = self._index("maildomains_by_domain").get((namespace, domain), ())
        return sorted(plan.doc_name(doc) for doc in docs)

    def mailboxes(self, namespace: str, domain: str | None) -> list[Mapping[str, Any]]:
        if domain is None:
            return []
        return list(self._index("mailboxes_by_domain").get((namespace, domain), ()))

    def siblings(self, namespace: str, domain: str | None) -> list[Mapping[str, Any]]:
        if domain is None:
            return []
        return list(self._index("maildomains_by_domain").get((namespace, domain), ()))

    def secret_users(self, namespace: str, name: str) -> set[DomainKey]:
        """The MailDomains whose reconcile reads the Secret ``name``."""
        users: set[DomainKey] = set()
        for domain in self._index("mailbox_secret_refs").get((namespace, name), ()):
            users |= {(namespace, n) for n in self.domain_names(namespace, domain)}
        for owner in self._index("maildomain_secret_refs").get((namespace, name), ()):
            users.add((namespace, owner))
        return users

    # --- actions --------------------------------------------------------------------------

    async def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        """One pass for one MailDomain, serialised per MailDomain."""
        snapshot = {key: body[key] for key in body}  # the daemon's body is a live view
        meta = snapshot.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            self.coalescer.clear(key)  # this pass covers every change seen so far
            domain = plan.served_domain(snapshot)
            return await self.reconciler.reconcile(
                snapshot, self.mailboxes(key[0], domain), self.siblings(key[0], domain)
            )

    async def run_daemon(self, body: Mapping[str, Any], stopped: kopf.DaemonStopped) -> None:
        """Coalesce changes into reconciles; resync when nothing happens for a while."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        try:
            while not stopped:
                marked = await self.coalescer.wait(key, self.config.resync_interval)
                if stopped:
                    break
                if marked:
                    await asyncio.sleep(self.config.debounce)  # let the burst land
                try:
                    await self.reconcile(body)
                except ReconcileError as err:
                    logger.warning("%s/%s: %s (retrying in %gs)", *key, err, err.delay)
                    await asyncio.sleep(err.delay)
                    self.coalescer.mark(key)
        finally:
            self.coalescer.forget(key)

    async def finalize(self, body: Mapping[str, Any]) -> str:
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        domain = plan.served_domain(body)
        others = [n for n in self.domain_names(namespace, domain) if n != meta.get("name")]
        # The Mailboxes stay with a remaining MailDomain of the same domain, if there is one.
        boxes = [] if others else self.mailboxes(namespace, domain)
        summary = await self.reconciler.finalize(body, boxes)
        for other in others:
            self.coalescer.mark((namespace, other))
        self._locks.pop((namespace, str(meta.get("name"))), None)
        return summary


def build_registry(op: Operator) -> kopf.OperatorRegistry:
    """Every handler of one operator instance, bound to its state ``op``."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry, id="startup")
    async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        op._settings = settings
        for name in (
            "mailboxes_by_domain",
            "mailbox_secret_refs",
            "maildomains_by_domain",
            "maildomain_secret_refs",
        ):
            op.indices[name] = kwargs[name]

    @kopf.on.cleanup(registry=registry, id="cleanup")
    async def cleanup(**_: Any) -> None:
        await op.close()

    @kopf.on.login(registry=registry, id="login")
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return await op.login()

    # Indices (kopf keeps them current from the watch streams).
    @kopf.index(*MAILBOXES, registry=registry, id="mailboxes_by_domain")
    def mailboxes_by_domain(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any]:
        return {(namespace, plan.address_domain(body)): slim(body)}

    @kopf.index(*MAILBOXES, registry=registry, id="mailbox_secret_refs")
    def mailbox_secret_refs(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any]:
        ref = (body.get("spec") or {}).get("passwordSecretRef")
        if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
            return {}
        return {(namespace, ref["name"]): plan.address_domain(body)}

    @kopf.index(*MAILDOMAINS, registry=registry, id="maildomains_by_domain")
    def maildomains_by_domain(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any]:
        return {(namespace, plan.served_domain(body)): slim(body)}

    @kopf.index(*MAILDOMAINS, registry=registry, id="maildomain_secret_refs")
    def maildomain_secret_refs(
        body: kopf.Body, namespace: str | None, name: str, **_: Any
    ) -> dict[Any, Any]:
        names = plan.referenced_secret_names(body, ())
        return {(namespace, secret): name for secret in names}

    # MailDomain lifecycle.
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

    # Events that only mark MailDomains for the daemon.
    @kopf.on.event(*MAILBOXES, registry=registry, id="mailbox")
    async def mailbox_event(
        event: kopf.RawEvent, body: kopf.Body, namespace: str | None, **_: Any
    ) -> None:
        ns = namespace or ""
        owners = op.domain_names(ns, plan.address_domain(body))
        if event["type"] is not None:  # None: the initial listing; resume handles that
            for owner in owners:
                op.coalescer.mark((ns, owner))
        if not owners and event["type"] != "DELETED":
            try:
                await op.reconciler.orphan(body)
            except ReconcileError as err:
                raise kopf.TemporaryError(str(err), delay=err.delay) from err

    @kopf.on.event("v1", "secrets", registry=registry, id="secret")
    async def secret_event(
        event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str, **_: Any
    ) -> None:
        ns = namespace or ""
        users = op.secret_users(ns, name)
        if users:
            if event["type"] == "DELETED":
                changed = op.secrets.drop(ns, name)
            else:
                changed = op.secrets.put(body)
            if changed and event["type"] is not None:
                for key in users:
                    op.coalescer.mark(key)
        else:
            op.secrets.drop(ns, name)  # no longer referenced: not kept
        labels = (body.get("metadata") or {}).get("labels") or {}
        if labels.get("app.kubernetes.io/managed-by") == "mailstack":
            child_changed(op, event, body, ns)

    for kind in CHILD_KINDS:
        if kind is SECRET:
            continue

        @kopf.on.event(
            kind.group, kind.version, kind.plural, registry=registry, id=f"child-{kind.plural}"
        )
        async def child_event(
            event: kopf.RawEvent, body: kopf.Body, namespace: str | None, **_: Any
        ) -> None:
            child_changed(op, event, body, namespace or "")

    return registry


def child_changed(op: Operator, event: Mapping[str, Any], body: Mapping[str, Any], ns: str) -> None:
    """A child changed: mark its MailDomain unless this is the operator's own write."""
    if event.get("type") is None:
        return  # the initial listing: the resume handler reconciles every MailDomain anyway
    if event.get("type") != "DELETED" and op.echoes.is_echo(body):
        return
    owner = owner_of(body)
    if owner is not None:
        op.coalescer.mark((ns, owner))
