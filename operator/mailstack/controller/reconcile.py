"""One reconcile pass for one MailDomain: read, decide (``plan``), write only what differs.

``Reconciler.reconcile`` is idempotent: called twice with nothing changed in between, the second
call reads and writes nothing but GETs. It is the only code path that renders; the kopf handlers
(create, update, resume), the coalescing daemon (Mailbox, Secret and child events) and the
periodic resync all end here.

Order of a pass:
1. read the material Secrets (``<n>-dkim``, ``-ca``, ``-tls``, ``-users``) and the referenced user
   Secrets. A read that fails for any reason other than 404 aborts the pass: generating a new
   DKIM key because the API was briefly unavailable would rotate it by accident.
2. ``plan.render_domain``: parse, assemble, resolve material, render.
3. read the remaining children, apply (server-side) those that differ, delete stale ones.
3b. publish the DNS records at the provider (``dnshook.DnsPublisher``: only when the desired
   records changed since the last publish, or on the periodic resync; in a thread).
4. write the MailDomain's and its Mailboxes' status when it differs; Events for transitions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailstack.api.errors import ValidationError
from mailstack.api.models import MailDomain, Secret
from mailstack.api.parse import parse_maildomain
from mailstack.controller import dnshook, plan
from mailstack.controller.children import (
    APPLIED_ANNOTATION,
    Change,
    ChildKey,
    Owner,
    child_key,
    owned,
    plan_changes,
    stale_children,
)
from mailstack.controller.dnshook import DnsOutcome, DnsPublisher
from mailstack.controller.kinds import (
    CERTIFICATE,
    EVENT,
    MAILBOX,
    MAILDOMAIN,
    PVC,
    SECRET,
    STATEFUL_SET,
    Kind,
    kind_of,
)
from mailstack.controller.kube import ApiError, Kube
from mailstack.controller.memory import Echoes, SecretCache, WrittenStatus
from mailstack.controller.status import Condition, domain_event_type, transitions
from mailstack.dns.errors import DnsError
from mailstack.dns.providers.external_dns import dns_endpoint
from mailstack.dns.records import desired_records
from mailstack.kubedoc import Obj
from mailstack.material.resolve import material_secret_names
from mailstack.render import layout
from mailstack.render.objects import RenderOptions, selector_labels

logger = logging.getLogger(__name__)


class ReconcileError(Exception):
    """A pass that must be retried; ``delay`` is the suggested wait in seconds."""

    def __init__(self, message: str, delay: float) -> None:
        self.delay = delay
        super().__init__(message)


@dataclass
class Outcome:
    """What one pass did (for logs, tests and the benchmark)."""

    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)  # StatefulSets, orphaning their pods
    status_writes: int = 0
    valid: bool = True


def _meta(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = doc.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _kind_for(key: ChildKey) -> Kind:
    return kind_of({"apiVersion": key[0], "kind": key[1]})


class Reconciler:
    """Reads, plans and writes for MailDomains; shared by every handler of one operator."""

    def __init__(
        self,
        kube: Kube,
        *,
        options: RenderOptions | None = None,
        secrets: SecretCache | None = None,
        echoes: Echoes | None = None,
        written: WrittenStatus | None = None,
        concurrency: int = 16,
        dns: DnsPublisher | None = None,
    ) -> None:
        self.kube = kube
        self.options = options or RenderOptions()
        # `is not None`: an empty SecretCache is falsy (it has a length).
        self.secrets = secrets if secrets is not None else SecretCache()
        self.echoes = echoes if echoes is not None else Echoes()
        self.written = written if written is not None else WrittenStatus()
        self.dns = dns if dns is not None else DnsPublisher()
        self._limit = asyncio.Semaphore(concurrency)
        self._batch = concurrency
        self._instance = os.environ.get("POD_NAME") or socket.gethostname()
        self.passes = 0

    # --- reading -------------------------------------------------------------------------

    async def _get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        async with self._limit:
            return await self.kube.get(kind, namespace, name)

    async def _read_children(self, namespace: str, keys: Sequence[ChildKey]) -> dict[ChildKey, Any]:
        results = await asyncio.gather(
            *(self._get(_kind_for(key), namespace, key[2]) for key in keys)
        )
        return dict(zip(keys, results, strict=True))

    async def _user_secrets(self, namespace: str, names: set[str]) -> dict[str, Secret]:
        """Referenced Secrets from the watch cache; read (and cached) when not seen yet."""
        missing = [n for n in sorted(names) if not self.secrets.known(namespace, n)]
        fetched = await asyncio.gather(*(self._get(SECRET, namespace, n) for n in missing))
        for raw in fetched:
            if raw is not None:
                self.secrets.put(raw)
        result = {}
        for name in names:
            secret = self.secrets.get(namespace, name)
            if secret is not None:
                result[name] = secret
        return result

    # --- the pass ------------------------------------------------------------------------

    async def reconcile(
        self,
        body: Mapping[str, Any],
        mailboxes: Sequence[Mapping[str, Any]],
        siblings: Sequence[Mapping[str, Any]] = (),
        *,
        now: datetime | None = None,
        resync: bool = False,
    ) -> Outcome:
        """Bring one MailDomain's children and statuses in line with its spec.

        ``resync``: the periodic pass, which also publishes DNS records that did not change.
        """
        meta = _meta(body)
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        uid = str(meta.get("uid", ""))
        generation = plan.doc_generation(body)
        now = now or datetime.now(UTC)
        self.passes += 1
        outcome = Outcome()
        owner = Owner(name, namespace, uid)

        try:
            material_keys = [
                (SECRET.api_version, SECRET.kind, n) for n in material_secret_names(name)
            ]
            live = await self._read_children(namespace, material_keys)
            user = await self._user_secrets(
                namespace, plan.referenced_secret_names(body, mailboxes)
            )
        except ApiError as err:
            raise ReconcileError(f"reading the Secrets failed: {err}", 10) from err
        secrets = {**plan.secrets_from_live(live), **user}

        rendered = plan.render_domain(
            plan.DomainInputs(
                domain=body,
                siblings=siblings,
                mailboxes=mailboxes,
                secrets=secrets,
                now=now,
                options=self.options,
            )
        )
        outcome.valid = rendered.valid

        apply_error: ApiError | None = None
        dns: DnsOutcome | None = None
        if rendered.ok:
            wanted = [child_key(obj) for obj in rendered.objects]
            others = [k for k in wanted + plan.prune_candidates(name) if k not in live]
            try:
                live.update(await self._read_children(namespace, list(dict.fromkeys(others))))
            except ApiError as err:
                raise ReconcileError(f"reading the children failed: {err}", 10) from err
            for change in plan_changes(rendered.objects, live):
                try:
                    await self._write(change, live, outcome)
                except ApiError as err:
                    logger.warning("%s/%s: %s failed: %s", namespace, name, change.action, err)
                    apply_error = apply_error or err
            written = list(rendered.objects)
            if apply_error is None and rendered.externally_published:
                endpoint, dns = await self._apply_endpoint(rendered, owner, live, outcome)
                written.append(endpoint)
            if apply_error is None:
                for key in stale_children(written, plan.prune_candidates(name), live, owner):
                    try:
                        await self.kube.delete(_kind_for(key), namespace, key[2])
                    except ApiError as err:
                        apply_error = err
                        break
                    live[key] = None
                    outcome.deleted.append(f"{key[1]}/{key[2]}")

        # DNS, once the children are in place. A provider failure is a condition, not an error.
        if (
            dns is None
            and rendered.ok
            and rendered.service is not None
            and rendered.material is not None
        ):
            dns_key = (namespace, name, uid)
            if apply_error is None:
                dns = await self.dns.publish(
                    dns_key,
                    rendered.service,
                    rendered.material.dkim,
                    secrets,
                    service_addresses=load_balancer_addresses(live.values()),
                    resync=resync,
                )
            else:
                dns = self.dns.remembered(dns_key)

        # Status: the MailDomain, then its Mailboxes.
        names = layout.object_names(name)
        verdicts = plan.mailbox_verdicts(
            rendered, mailboxes, name, apply_error.short() if apply_error else None
        )
        status = plan.domain_status(
            rendered,
            generation=generation,
            previous=self.written.previous(
                MAILDOMAIN.kind, namespace, name, uid, body.get("status")
            ),
            now=now,
            applied=len(outcome.applied),
            apply_error=apply_error.short() if apply_error else None,
            statefulsets={
                sts: live.get((STATEFUL_SET.api_version, STATEFUL_SET.kind, sts))
                for sts in plan.statefulset_names(name)
                if (STATEFUL_SET.api_version, STATEFUL_SET.kind, sts) in live
            },
            certificate=live.get((CERTIFICATE.api_version, CERTIFICATE.kind, names["tls"])),
            valid_mailboxes=sum(1 for v in verdicts if v.valid.status == "True"),
            dns=dns,
        )
        if await self._write_status(MAILDOMAIN, body, status):
            outcome.status_writes += 1
            await self._domain_events(body, status, outcome)
        elif outcome.applied or outcome.deleted:
            await self._change_events(body, outcome)

        # Mailbox statuses: computed one by one, written (when they differ) a batch at a time:
        # a first reconcile of a large domain writes hundreds, and building them all as
        # concurrent requests at once would only hold their memory longer.
        by_name = {plan.doc_name(doc): doc for doc in mailboxes}
        changed: list[tuple[Mapping[str, Any], Obj]] = []
        for verdict in verdicts:
            doc = by_name[verdict.name]
            box_meta = _meta(doc)
            box_status = plan.mailbox_status(
                verdict.valid,
                verdict.ready,
                generation=plan.doc_generation(doc),
                previous=self.written.previous(
                    MAILBOX.kind,
                    namespace,
                    str(box_meta.get("name", "")),
                    str(box_meta.get("uid", "")),
                    doc.get("status"),
                ),
                now=now,
                domain_name=name,
            )
            if not self._status_current(MAILBOX, doc, box_status):
                changed.append((doc, box_status))
        for start in range(0, len(changed), self._batch):
            batch = changed[start : start + self._batch]
            counts = await asyncio.gather(*(self._mailbox_status(d, st) for d, st in batch))
            outcome.status_writes += sum(counts)

        if apply_error is not None:
            raise ReconcileError(
                f"applying failed: {apply_error}", 10 if apply_error.transient else 60
            )
        if outcome.applied or outcome.deleted or outcome.status_writes:
            logger.info(
                "%s/%s: %s; %d status write(s)",
                namespace,
                name,
                ", ".join(outcome.applied + [f"delete {d}" for d in outcome.deleted])
                or "no object changed",
                outcome.status_writes,
            )
        return outcome

    async def _apply_endpoint(
        self,
        rendered: plan.Rendered,
        owner: Owner,
        live: dict[ChildKey, Any],
        outcome: Outcome,
    ) -> tuple[Obj, DnsOutcome]:
        """Write the externalDNS DNSEndpoint (when it differs) and say where external-dns is.

        It is written after the other children because its A/AAAA records may come from the
        public Service's load-balancer addresses. A failure here is DNSReady's business, not
        the pass's: the mail service works without its DNS records.
        """
        assert rendered.service is not None and rendered.material is not None
        domain = rendered.service.domain
        addresses = load_balancer_addresses(live.values())
        records = desired_records(domain, rendered.material.dkim, addresses)
        endpoint = owned(dns_endpoint(domain, records), owner)
        failure: Condition | None = None
        for change in plan_changes([endpoint], live):
            try:
                await self._write(change, live, outcome)
            except ApiError as err:
                logger.warning("%s/%s: %s failed: %s", owner.namespace, owner.name, change, err)
                failure = dnshook.endpoint_failure(endpoint, err.status, err.short())
        live_endpoint = live.get(child_key(endpoint))
        return endpoint, dnshook.endpoint_outcome(domain, records, live_endpoint, failure)

    async def _write(self, change: Change, live: dict[ChildKey, Any], outcome: Outcome) -> None:
        """Apply one change and note it: the echo to ignore, the live view, the outcome."""
        result = await self._apply(change.obj, outcome)
        self.echoes.record(result)
        live[change.key] = result
        outcome.applied.append(f"{change.action} {change.describe()}")

    async def _apply(self, obj: Obj, outcome: Outcome) -> Obj:
        """Server-side apply; a StatefulSet whose immutable fields changed is recreated.

        The API server refuses changes to a StatefulSet's selector, serviceName or
        volumeClaimTemplates (a new ``spec.storage`` size or class, say). Deleting it with
        ``propagationPolicy: Orphan`` keeps its pods running and its volume claims in place;
        the new StatefulSet adopts both (same labels, same claim names). Existing volumes keep
        their size: growing them is the StorageClass's business (``allowVolumeExpansion``).
        """
        try:
            return await self.kube.apply(obj)
        except ApiError as err:
            kind, name = obj["kind"], obj["metadata"]["name"]
            if not (kind == STATEFUL_SET.kind and err.status == 422 and "Forbidden" in err.message):
                raise
            logger.info("recreating StatefulSet %s (immutable fields changed): %s", name, err)
            await self.kube.delete(STATEFUL_SET, obj["metadata"]["namespace"], name, "Orphan")
            outcome.recreated.append(name)
            return await self.kube.apply(obj)

    # --- statuses and events -------------------------------------------------------------

    def _status_current(self, kind: Kind, doc: Mapping[str, Any], status: Obj) -> bool:
        """Whether ``status`` is what the object has, or what the operator last wrote to it."""
        meta = _meta(doc)
        if doc.get("status") == status:
            return True
        return self.written.matches(
            kind.kind,
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
            str(meta.get("uid", "")),
            status,
        )

    async def _write_status(self, kind: Kind, doc: Mapping[str, Any], status: Obj) -> bool:
        """Patch the status subresource when ``status`` differs; True when written."""
        meta = _meta(doc)
        namespace, name, uid = (
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
            str(meta.get("uid", "")),
        )
        current = doc.get("status")
        if self._status_current(kind, doc, status):
            return False
        patch: dict[str, Any] = dict(status)
        if isinstance(current, Mapping):
            for key in current:
                if key not in status:
                    patch[key] = None  # a field no longer reported
        try:
            await self.kube.patch_status(kind, namespace, name, patch)
        except ApiError as err:
            if err.status == 404:
                return False  # deleted meanwhile
            raise ReconcileError(f"writing the status of {kind.kind}/{name}: {err}", 10) from err
        self.written.put(kind.kind, namespace, name, uid, status)
        return True

    async def _mailbox_status(self, doc: Mapping[str, Any], status: Obj) -> int:
        before = doc.get("status")
        if not await self._write_status(MAILBOX, doc, status):
            return 0
        for change in transitions(before, status):
            if change.type == "Valid" and change.after == "False":
                await self.event(MAILBOX, doc, "Warning", f"Invalid{change.reason}", change.message)
        return 1

    async def orphan(self, mailbox: Mapping[str, Any], now: datetime | None = None) -> bool:
        """Status of a Mailbox no MailDomain serves (or whose address cannot be read)."""
        valid, ready = plan.orphan_verdict(mailbox)
        meta = _meta(mailbox)
        status = plan.mailbox_status(
            valid,
            ready,
            generation=plan.doc_generation(mailbox),
            previous=self.written.previous(
                MAILBOX.kind,
                str(meta.get("namespace", "")),
                str(meta.get("name", "")),
                str(meta.get("uid", "")),
                mailbox.get("status"),
            ),
            now=now or datetime.now(UTC),
            domain_name=None,
        )
        return bool(await self._mailbox_status(mailbox, status))

    async def _domain_events(self, body: Mapping[str, Any], status: Obj, outcome: Outcome) -> None:
        for change in transitions(body.get("status"), status):
            kind = domain_event_type(change)
            if kind is not None:
                reason = "Ready" if kind == "Normal" else change.reason
                await self.event(MAILDOMAIN, body, kind, reason, change.message)
        await self._change_events(body, outcome)

    async def _change_events(self, body: Mapping[str, Any], outcome: Outcome) -> None:
        for sts in outcome.recreated:
            await self.event(
                MAILDOMAIN,
                body,
                "Normal",
                "Recreated",
                f"StatefulSet {sts} recreated: a field it cannot change did (storage); its pods "
                "and volume claims were kept, existing volumes keep their size",
            )
        restored = [a for a in outcome.applied if a.startswith("restore ")]
        if restored:
            await self.event(
                MAILDOMAIN,
                body,
                "Warning",
                "Restored",
                "changed or deleted outside the operator, restored: "
                + ", ".join(a.partition(" ")[2] for a in restored),
            )
        others = [a for a in outcome.applied if not a.startswith("restore ")]
        if others or outcome.deleted:
            await self.event(
                MAILDOMAIN,
                body,
                "Normal",
                "Applied",
                ", ".join(others + [f"delete {d}" for d in outcome.deleted]),
            )

    async def event(
        self, kind: Kind, doc: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Post a core/v1 Event about ``doc``; failing to post one never fails a reconcile."""
        meta = _meta(doc)
        namespace = str(meta.get("namespace", "default"))
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{time.time_ns():x}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": kind.api_version,
                "kind": kind.kind,
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason[:128],
            "message": message[:1024],
            "source": {"component": "mailstack"},
            "reportingComponent": "mailstack.dev/operator",
            "reportingInstance": self._instance[:128],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.kube.create(EVENT, namespace, event)
        except ApiError as err:
            logger.warning("could not post the %s event %s: %s", type_, reason, err)

    # --- deletion ------------------------------------------------------------------------

    async def finalize(
        self, body: Mapping[str, Any], mailboxes: Sequence[Mapping[str, Any]]
    ) -> str:
        """Before the MailDomain goes: what lives outside the cluster, and the mail volumes.

        The children go with the MailDomain (ownerReferences, garbage collector). PersistentVolume
        Claims belong to the StatefulSets, not the MailDomain: with ``retention: Retain`` (the
        default) they stay, so mail survives a deleted MailDomain; with ``Delete`` they are
        deleted here (the StatefulSets' own claim retention policy does the same where the
        cluster supports it). Returns a summary for the Event and the log.
        """
        meta = _meta(body)
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        retention = "Retain"
        storage = (body.get("spec") or {}).get("storage")
        if isinstance(storage, Mapping) and storage.get("retention") == "Delete":
            retention = "Delete"
        dns_summary = await self._cleanup_dns(body)
        selector = ",".join(f"{k}={v}" for k, v in sorted(selector_labels_for(name).items()))
        try:
            claims = await self.kube.list(PVC, namespace, selector)
        except ApiError as err:
            raise ReconcileError(f"listing the volume claims failed: {err}", 10) from err
        claim_names = sorted(str(_meta(c).get("name")) for c in claims)
        if retention == "Delete":
            for claim in claim_names:
                try:
                    await self.kube.delete(PVC, namespace, claim)
                except ApiError as err:
                    raise ReconcileError(f"deleting {claim} failed: {err}", 10) from err
            summary = f"retention Delete: deleted {len(claim_names)} volume claim(s)"
        else:
            summary = f"retention Retain: kept {len(claim_names)} volume claim(s) holding mail" + (
                f" ({', '.join(claim_names)})" if claim_names else ""
            )
        if dns_summary:
            summary = f"{dns_summary}; {summary}"
        for doc in mailboxes:
            await self.orphan(doc)
        self.written.forget(MAILDOMAIN.kind, namespace, name)
        self.dns.forget(namespace, name)
        await self.event(MAILDOMAIN, body, "Normal", "Finalized", summary)
        return summary

    async def _cleanup_dns(self, body: Mapping[str, Any]) -> str:
        """Remove the records the MailDomain published; ``ReconcileError`` keeps the finalizer.

        An invalid spec cannot name a provider: nothing is removed (and a warning logged).
        """
        meta = _meta(body)
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        try:
            model = parse_maildomain(body, plan.SOURCE)
        except ValidationError as err:
            logger.warning("%s/%s: invalid spec, DNS records not removed: %s", namespace, name, err)
            return ""
        if model.dns.provider.kind in ("manual", "externalDNS"):
            return ""
        try:
            secrets = await self._user_secrets(namespace, plan.referenced_secret_names(body, ()))
        except ApiError as err:
            raise ReconcileError(f"reading the DNS credentials failed: {err}", 10) from err
        selectors: list[str] = []
        status = body.get("status")
        if isinstance(status, Mapping) and isinstance(status.get("dkim"), Mapping):
            selector = status["dkim"].get("selector")
            if isinstance(selector, str) and selector:
                selectors.append(selector)  # the one published, should the spec have changed
        try:
            removed = await self.dns.cleanup(model, secrets, selectors)
        except DnsError as err:
            message = f"removing the DNS records failed ({err.reason}): {err}"
            await self.event(MAILDOMAIN, body, "Warning", err.reason, message)
            raise ReconcileError(message + "; the finalizer stays until it succeeds", 10) from err
        count = len(removed.changes) if removed is not None else 0
        return f"provider {model.dns.provider.kind}: {count} DNS record set(s) removed"


def load_balancer_addresses(children: Iterable[Any]) -> list[str]:
    """The ingress addresses of the LoadBalancer Services among the children."""
    found: list[str] = []
    for obj in children:
        if not isinstance(obj, Mapping) or obj.get("kind") != "Service":
            continue
        status = obj.get("status")
        balancer = status.get("loadBalancer") if isinstance(status, Mapping) else None
        ingress = balancer.get("ingress") if isinstance(balancer, Mapping) else None
        for entry in ingress if isinstance(ingress, list) else []:
            if isinstance(entry, Mapping) and isinstance(entry.get("ip"), str):
                found.append(entry["ip"])
    return list(dict.fromkeys(found))


def selector_labels_for(name: str) -> dict[str, str]:
    """The labels every PVC of MailDomain ``name`` carries (from the volumeClaimTemplates)."""
    return selector_labels(MailDomain(name=name, namespace="", domain="", hostname=""), None)


def condition(status: Mapping[str, Any], type_: str) -> Condition | None:
    """One condition of a status document (for tests and the benchmark)."""
    for entry in status.get("conditions") or []:
        if entry.get("type") == type_:
            return Condition(
                type_, entry["status"], entry.get("reason", ""), entry.get("message", "")
            )
    return None


__all__ = ["APPLIED_ANNOTATION", "Outcome", "ReconcileError", "Reconciler", "condition"]
