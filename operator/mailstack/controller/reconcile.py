"""One reconcile pass for one MailDomain: read, decide (``plan``), write only what differs.

``Reconciler.reconcile`` is idempotent (a second call with nothing changed only GETs), and the
only code path that renders a MailDomain (a MailServer's: ``server_pass``). Its phases:
1. ``_gather``: the material Secrets (``<n>-dkim``, ``-ca``, ``-tls``, ``-users``; only the
   operator's own, ``ownership``) and the referenced, labelled user Secrets from the watch cache.
   A read failing other than 404 aborts the pass: a new DKIM key would rotate it by accident.
2. ``plan.render_domain``: parse, assemble, resolve material, render (in ``render_pool``).
3. ``_apply_children``: read the other children; one not this MailDomain's: write nothing
   (``NameTaken``); else apply those that differ, the DNSEndpoint last, delete stale ones.
4. ``_publish_dns``: the DNS records (``dns_publisher``), when they changed or on resync.
5. ``_write_statuses``: the statuses that differ (``status_writer``, ``tripwire``'s sightings
   too), Events for transitions (``events``); a pass is observed by ``metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mailstack.api.models import Secret
from mailstack.api.policy import Grants
from mailstack.controller import plan, reasons, user_secrets
from mailstack.controller.children import (
    Change,
    Owner,
    child_key,
    owned,
    plan_changes,
    stale_children,
)
from mailstack.controller.conditions import Condition, endpoint_failure, mailbox_verdicts
from mailstack.controller.dns_publisher import (
    DnsOutcome,
    DnsPublisher,
    endpoint_outcome,
    host_guard,
)
from mailstack.controller.documents import (
    doc_generation,
    load_balancer_addresses,
    referenced_secret_names,
)
from mailstack.controller.events import EventPoster, change_notices, domain_notices
from mailstack.controller.kinds import CERTIFICATE, MAILDOMAIN, SECRET, STATEFUL_SET, ChildKey, Kind
from mailstack.controller.kube import ApiError, Kube
from mailstack.controller.memory import Echoes, SecretCache, WrittenStatus
from mailstack.controller.metrics import observed_pass
from mailstack.controller.outcome import ApplyResult, Gathered, Outcome, ReconcileError
from mailstack.controller.ownership import (
    names_to_check,
    own_secrets,
    refuse_taken,
    taken_names,
    written_later,
)
from mailstack.controller.proof_lookup import ProofLookup
from mailstack.controller.rejections import read_rejections
from mailstack.controller.render_pool import RenderPool
from mailstack.controller.status import domain_status
from mailstack.controller.status_writer import StatusWriter
from mailstack.controller.tripwire import Tripwire
from mailstack.controller.volume_claims import namespace_claims
from mailstack.dns.providers.external_dns import dns_endpoint
from mailstack.dns.records import desired_records
from mailstack.kubedoc import Obj, ObjectRef
from mailstack.material.resolve import material_secret_names
from mailstack.render import layout
from mailstack.render.objects import RenderOptions

logger = logging.getLogger(__name__)

Children = dict[ChildKey, Obj | None]  # None: read, and not there


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
        render_workers: int = 4,
    ) -> None:
        self.kube = kube
        self.options = options or RenderOptions()
        # `is not None`: an empty SecretCache is falsy (it has a length).
        self.secrets = secrets if secrets is not None else SecretCache()
        self.echoes = echoes if echoes is not None else Echoes()
        self.written = written if written is not None else WrittenStatus()
        self.dns = dns if dns is not None else DnsPublisher()
        self.metrics = kube.metrics  # the operator's series (``metrics``), fed by every phase
        self.dns.published = self.metrics.dns_published
        self.proofs = ProofLookup()
        self.tripwire = Tripwire(kube, self.options.cluster_networks, lambda *d: self.dns.wake(*d))
        self.renderer = RenderPool(render_workers)  # keys and hashes, off the event loop
        # The platform's MailDomainPolicies as last seen (the operator's policy informer).
        self.grants = Grants()
        self.events = EventPoster(kube, os.environ.get("POD_NAME") or socket.gethostname())
        self.statuses = StatusWriter(kube, self.written, self.events, batch=concurrency)
        self._limit = asyncio.Semaphore(concurrency)
        self.passes = 0

    @observed_pass
    async def reconcile(
        self,
        body: Mapping[str, Any],
        mailboxes: Sequence[Mapping[str, Any]],
        siblings: Sequence[Mapping[str, Any]] = (),
        *,
        now: datetime | None = None,
        resync: bool = False,
        view: plan.NamespaceView = plan.NO_VIEW,
        served: tuple[str, bool] = ("", False),
    ) -> Outcome:
        """Bring one MailDomain's children and statuses in line with its spec.

        ``resync``: the periodic pass, which also publishes DNS records that did not change.
        ``view``: all MailDomains and Mailboxes of a namespace with limits (they count).
        ``served``: the MailServer whose last pass served it, and whether it was ready.
        """
        ref = ObjectRef.of(body)
        self.passes += 1
        outcome = Outcome()
        when = now or datetime.now(UTC)
        gathered = await self._gather(body, mailboxes, siblings, view, when, served)
        rendered = await self.renderer.render(gathered.inputs)
        outcome.valid = rendered.valid
        outcome.retry_after = self.proofs.retry_after(ref.uid) if rendered.proof_pending else None
        applied = await self._apply_children(ref, rendered, gathered.material, outcome)
        if applied.taken:
            rendered = refuse_taken(rendered, applied.taken)
            outcome.valid = False
        dns = await self._publish_dns(ref, rendered, gathered.inputs, applied, resync)
        await self._write_statuses(body, gathered.inputs, rendered, applied, dns, outcome)
        if applied.error is not None:
            delay = 10 if applied.error.transient else 60
            raise ReconcileError(f"applying failed: {applied.error}", reasons.APPLY_FAILED, delay)
        if outcome.changed_objects or outcome.status_writes:
            logger.info(
                "%s: %s; %d status write(s)",
                ref,
                ", ".join(outcome.applied + [f"delete {d}" for d in outcome.deleted])
                or "no object changed",
                outcome.status_writes,
            )
        return outcome

    async def _gather(
        self,
        body: Mapping[str, Any],
        mailboxes: Sequence[Mapping[str, Any]],
        siblings: Sequence[Mapping[str, Any]],
        view: plan.NamespaceView,
        now: datetime,
        served: tuple[str, bool],
    ) -> Gathered:
        """Phase 1: the material Secrets and the referenced user Secrets; any failure aborts."""
        ref = ObjectRef.of(body)
        try:
            material = await self.read_children(
                ref.namespace, [SECRET.key(n) for n in material_secret_names(ref.name)]
            )
            storage_limited = self.grants.limits_for(ref.namespace).max_storage is not None
            claims = await namespace_claims(self.kube, ref.namespace) if storage_limited else {}
        except ApiError as err:
            raise ReconcileError(f"reading the Secrets failed: {err}", reasons.READ_FAILED) from err
        user = await self.user_secrets(ref.namespace, referenced_secret_names(body, mailboxes))
        previous = self.statuses.previous(MAILDOMAIN, body)
        proof, txt = await self.proofs.look(body, self.grants, previous)
        inputs = plan.DomainInputs(
            domain=body,
            siblings=siblings,
            mailboxes=mailboxes,
            # Only the operator's own Secrets are read back; another's is taken, not reused.
            secrets={**plan.secrets_from_live(own_secrets(material, Owner.of(ref))), **user},
            now=now,
            options=self.options,
            grants=self.grants,
            namespace_domains=view.domains,
            namespace_mailboxes=view.mailboxes,
            namespace_claims=claims,
            proof=proof,
            proof_txt=txt,
            served_by=served[0],
            server_ready=served[1],
        )
        return Gathered(inputs, material)

    async def _apply_children(
        self,
        ref: ObjectRef,
        rendered: plan.Rendered,
        material: Mapping[ChildKey, Obj | None],
        outcome: Outcome,
    ) -> ApplyResult:
        """Phase 3: apply the rendered children that differ, then delete the stale ones.

        Nothing is written without a successful render (the last valid spec's objects stay),
        but a withdrawn MailDomain (``plan.WITHDRAWN``) loses what made it serve. A failed write
        does not stop the others, but it does stop the DNSEndpoint and the deletions: the pass
        is retried with everything in place.
        """
        live: Children = dict(material)
        if rendered.withdrawn:
            return await self._withdraw(ref, live, outcome)
        if not rendered.ok:
            return ApplyResult(None, None, live)
        candidates = plan.prune_candidates(ref.name)
        owner, later = Owner.of(ref), written_later(rendered)
        wanted = names_to_check(rendered.objects, later)
        others = [key for key in wanted + candidates if key not in live]
        try:
            live.update(await self.read_children(ref.namespace, list(dict.fromkeys(others))))
        except ApiError as err:
            raise ReconcileError(f"reading children failed: {err}", reasons.READ_FAILED) from err
        taken = taken_names(rendered.objects, live, owner, later)
        if taken:  # all or nothing: a half stack never runs
            logger.warning("%s: not applied, not this MailDomain's: %s", ref, ", ".join(taken))
            return ApplyResult(None, None, live, tuple(taken))
        error: ApiError | None = None
        for change in plan_changes(rendered.objects, live):
            try:
                await self.write_child(change, live, outcome)
            except ApiError as err:
                logger.warning("%s: %s failed: %s", ref, change.action, err)
                error = error or err
        if error is not None:
            return ApplyResult(error, None, live)
        written = list(rendered.objects)
        endpoint_dns: DnsOutcome | None = None
        if rendered.externally_published:
            endpoint, endpoint_dns = await self._apply_endpoint(rendered, owner, live, outcome)
            written.append(endpoint)
        stale = stale_children(written, candidates, live, owner)
        return ApplyResult(await self._delete(ref, stale, live, outcome), endpoint_dns, live)

    async def _withdraw(self, ref: ObjectRef, live: Children, outcome: Outcome) -> ApplyResult:
        """Delete the serving children this MailDomain owns (``plan.serving_children``)."""
        keys = plan.serving_children(ref.name)
        try:
            live.update(await self.read_children(ref.namespace, keys))
        except ApiError as err:
            raise ReconcileError(f"reading children failed: {err}", reasons.READ_FAILED) from err
        error = await self._delete(
            ref, stale_children([], keys, live, Owner.of(ref)), live, outcome
        )
        return ApplyResult(error, None, live)

    async def _delete(
        self, ref: ObjectRef, keys: list[ChildKey], live: Children, outcome: Outcome
    ) -> ApiError | None:
        """Delete these children, in order; the first refusal stops it (the pass retries)."""
        for key in keys:
            try:
                await self.kube.delete(key.resource, ref.namespace, key.name)
            except ApiError as err:
                return err
            live[key] = None
            outcome.deleted.append(str(key))
        return None

    async def _publish_dns(
        self,
        ref: ObjectRef,
        rendered: plan.Rendered,
        inputs: plan.DomainInputs,
        applied: ApplyResult,
        resync: bool,
    ) -> DnsOutcome | None:
        """Phase 4: DNS, once the children are in place; None without a successful render.

        A provider failure is a condition, not an error; after a failed apply DNSReady stays
        what the last publish said. A withdrawn MailDomain's records go (``DnsPublisher.withdraw``).
        """
        if rendered.withdrawn:
            await self.dns.withdraw(ref, rendered, inputs)
            return None
        if applied.endpoint_dns is not None:
            return applied.endpoint_dns  # externalDNS: the DNSEndpoint is the publication
        if not rendered.ok or rendered.service is None or rendered.material is None:
            return None
        if applied.error is not None:
            return self.dns.remembered(ref)
        return await self.dns.publish(
            ref,
            rendered.service,
            rendered.material.dkim,
            inputs.secrets,
            service_addresses=load_balancer_addresses(applied.children.values()),
            resync=resync,
            guard=host_guard(inputs.grants, rendered.service.domain),
        )

    async def _write_statuses(
        self,
        body: Mapping[str, Any],
        inputs: plan.DomainInputs,
        rendered: plan.Rendered,
        applied: ApplyResult,
        dns: DnsOutcome | None,
        outcome: Outcome,
    ) -> None:
        """Phase 5: the MailDomain's status and Events, then its Mailboxes' statuses."""
        namespace, name = ObjectRef.of(body)[:2]
        apply_error = applied.error.short() if applied.error else None
        verdicts = mailbox_verdicts(rendered, inputs.mailboxes, name, apply_error)
        children = applied.children
        keys = [STATEFUL_SET.key(sts) for sts in plan.statefulset_names(name)]
        statefulsets = {key.name: children[key] for key in keys if key in children}
        status = domain_status(
            rendered,
            generation=doc_generation(body),
            previous=self.statuses.previous(MAILDOMAIN, body),
            now=inputs.now,
            apply_error=apply_error,
            statefulsets=statefulsets,
            rejections=await read_rejections(self.kube, namespace, statefulsets),
            certificate=children.get(CERTIFICATE.key(layout.object_names(name)["tls"])),
            valid_mailboxes=sum(1 for v in verdicts if v.valid.status == "True"),
            dns=dns,
            dns_published=self.dns.holds_records(ObjectRef.of(body), body.get("status")),
            outbound=self.proofs.outbound.look(body, rendered.model if rendered.ok else None),
            masked=self.tripwire.look(ObjectRef.of(body)),
            server_ready=inputs.server_ready,
        )
        self.metrics.note_domain(namespace, name, rendered, children)
        if await self.statuses.write(MAILDOMAIN, body, status):
            outcome.status_writes += 1
            notices = domain_notices(body.get("status"), status) + change_notices(outcome)
            await self.events.post(MAILDOMAIN, body, notices)
        elif outcome.changed_objects:
            await self.events.post(MAILDOMAIN, body, change_notices(outcome))
        outcome.status_writes += await self.statuses.write_mailboxes(
            inputs.mailboxes, verdicts, name, inputs.now
        )

    def close_background(self) -> None:
        """Stop the proof lookups, tripwire polls and render threads (the operator stops)."""
        self.proofs.close()
        self.tripwire.close()
        self.renderer.close()

    async def _get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        async with self._limit:
            return await self.kube.get(kind, namespace, name)

    async def read_children(self, namespace: str, keys: Sequence[ChildKey]) -> Children:
        results = await asyncio.gather(
            *(self._get(key.resource, namespace, key.name) for key in keys)
        )
        return dict(zip(keys, results, strict=True))

    async def user_secrets(self, namespace: str, names: set[str]) -> dict[str, Secret]:
        """The referenced user Secrets (``user_secrets.read``)."""
        return await user_secrets.read(self.kube, self.secrets, namespace, names)

    async def _apply_endpoint(
        self, rendered: plan.Rendered, owner: Owner, live: Children, outcome: Outcome
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
                await self.write_child(change, live, outcome)
            except ApiError as err:
                logger.warning("%s/%s: %s failed: %s", owner.namespace, owner.name, change, err)
                failure = endpoint_failure(endpoint, err.status, err.short())
        live_endpoint = live.get(child_key(endpoint))
        return endpoint, endpoint_outcome(domain, records, live_endpoint, failure)

    async def write_child(self, change: Change, live: Children, outcome: Outcome) -> None:
        """Apply one change and note it: the echo to ignore, the live view, the outcome."""
        result, recreated = await self.kube.apply_child(change.obj)
        if recreated:
            outcome.recreated.append(change.obj["metadata"]["name"])
        self.echoes.record(result)
        live[change.key] = result
        outcome.applied.append(f"{change.action} {change.describe()}")
