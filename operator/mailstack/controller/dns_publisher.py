"""Where the controller meets DNS: ``DnsPublisher`` and what it reports (``DnsOutcome``).

A ``DnsOutcome`` is the DNSReady condition (decided in ``conditions``) and the entries of
``status.dns.records``, per provider:

``manual``: the desired records (``dns.records``) are listed in the status with state ``Manual``
and DNSReady is ``Unknown / NotConfigured``, which does not hold back ``Ready`` (only the user can
publish those records).

``externalDNS``: the records go into a ``DNSEndpoint`` child (``providers.external_dns``),
applied by the reconciler once the Services' load-balancer addresses are known. external-dns's
CRD source sets the DNSEndpoint's ``status.observedGeneration`` when it has read a generation,
which is the one signal it gives: until then DNSReady is ``Unknown / WaitingForExternalDNS``, then
``True / AcceptedByExternalDNS`` (``endpoint_outcome``). A cluster without the DNSEndpoint CRD
answers 404: ``False / ExternalDNSNotInstalled``. CAA records, which external-dns cannot publish,
stay ``Manual``.

Any other provider (rfc2136, powerdns, cloudflare, route53) is published by ``DnsPublisher``
after the children are applied: ``reconcile_dns`` runs in ``dns_runner``'s threads (provider
calls block; deadlines, bounds per namespace and endpoint), only when the desired record set
(records, provider settings, credentials) changed since the last publish, on the periodic resync,
or when a failure's back-off is over; its per-MailDomain digest and outcome are kept in memory.
Success is ``DNSReady=True / Published`` (``False / DNSConflict`` when a record is held by someone
else); a ``DnsError`` is ``DNSReady=False`` with the error's ``reason`` (``DNSProviderTimeout``
for a provider that did not answer in time) and one-line message, tried again after a back-off
(``DnsTimings``) or when the inputs change. A publication that outlasts the pass's
``inline_wait`` goes on in the background and ``wake``s its MailDomain when it ends.

The hosts a MailDomain names are reached through ``host_guard`` when the platform's grants are
enforced: resolved as absolute names and refused at connect time when an address is not
public (``DNSHostNotAllowed``), unless a grant's ``allowedHosts`` allows it.

``withdraw`` is for a MailDomain that may no longer serve its domain (``plan.WITHDRAWN``): it
removes exactly the records and ownership claims the MailDomain holds (the finalizer's
``cleanup_dns``), once, then forgets and wakes the other claimants of the domain, so that the one
serving it now publishes what the claims held back. The removal always runs in the background
(bounded like a publication, waking the MailDomain when it ends): a refused MailDomain never
holds a reconcile. And only a MailDomain that may hold records contacts its provider
(``holds_records``: a publication was started for it, ``status.dns.published``): one refused
before it ever served costs nothing but its condition, however many a tenant creates.
``cleanup`` is the finalizer's part: the same removal, raising ``DnsError`` so that the
finalizer stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mailstack.api.assemble import MailService
from mailstack.api.models import MailDomain, Secret
from mailstack.api.policy import Grants
from mailstack.controller import conditions, reasons
from mailstack.controller.conditions import Condition
from mailstack.controller.dns_runner import DnsRunner, DnsTimings, provider_endpoint
from mailstack.controller.documents import observed_generation, published_before
from mailstack.controller.plan import DomainInputs, Rendered
from mailstack.dns.errors import DnsError, HostRefusedError
from mailstack.dns.plan import Plan, RecordStatus, State
from mailstack.dns.providers.external_dns import endpoint_name, endpoint_statuses
from mailstack.dns.providers.reach import Deadline, HostGuard
from mailstack.dns.reconcile import cleanup_dns, reconcile_dns
from mailstack.dns.records import Record, desired_records
from mailstack.kubedoc import ObjectRef
from mailstack.material.dkim import DkimKey

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DnsOutcome:
    condition: Condition
    records: list[dict[str, Any]]


def record_entries(
    domain: MailDomain, dkim: DkimKey, state: State, service_addresses: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """``status.dns.records`` for the desired records, all in one ``state``."""
    return [
        RecordStatus.of(record, state).to_dict()
        for record in desired_records(domain, dkim, service_addresses)
    ]


def dns_outcome(domain: MailDomain, dkim: DkimKey) -> DnsOutcome:
    """The outcome without asking a provider: manual, externalDNS, or not published yet."""
    provider = domain.dns.provider.kind
    if provider == "manual":
        records = record_entries(domain, dkim, "Manual")
        return DnsOutcome(conditions.dns_not_configured(len(records)), records)
    return DnsOutcome(conditions.dns_pending(provider), record_entries(domain, dkim, "Pending"))


def endpoint_outcome(
    domain: MailDomain,
    records: Sequence[Record],
    endpoint: Mapping[str, Any] | None,
    failure: Condition | None = None,
) -> DnsOutcome:
    """DNSReady and the record states of an externalDNS MailDomain, from its live DNSEndpoint.

    ``records``: the desired records the DNSEndpoint was built from. ``failure``: the condition
    for a DNSEndpoint that could not be applied.
    """
    statuses = endpoint_statuses(domain, records)
    name = endpoint_name(domain)
    if failure is not None:
        return DnsOutcome(failure, [s.to_dict() for s in statuses])
    generation = observed_generation(endpoint)
    if generation is None:
        condition = conditions.waiting_for_external_dns(name)
        return DnsOutcome(condition, [s.to_dict() for s in statuses])
    read = f"external-dns read DNSEndpoint {name} (generation {generation})"
    accepted = [
        replace(s, state="Published", message=read) if s.state == "Pending" else s for s in statuses
    ]
    manual = [f"{s.name} {s.type}" for s in accepted if s.state == "Manual"]
    condition = conditions.accepted_by_external_dns(read, manual)
    return DnsOutcome(condition, [s.to_dict() for s in accepted])


def provider_secrets(domain: MailDomain, secrets: Mapping[str, Secret]) -> dict[str, Secret]:
    ref = domain.dns.provider.secret
    if ref is None or ref.name not in secrets:
        return {}
    return {ref.name: secrets[ref.name]}


def outcome_of(statuses: Sequence[RecordStatus], provider: str) -> DnsOutcome:
    records = [s.to_dict() for s in statuses]
    conflicts = [f"{s.name} {s.type}" for s in statuses if s.state == "Conflict"]
    if conflicts:
        return DnsOutcome(conditions.dns_conflict(provider, conflicts), records)
    return DnsOutcome(conditions.dns_published(provider, len(records)), records)


def digest(
    domain: MailDomain,
    dkim: DkimKey | None,
    secrets: Mapping[str, Secret],
    service_addresses: Sequence[str],
    guard: HostGuard | None = None,
) -> str:
    """What a publish depends on: the desired records (None: a withdrawal, which has none),
    the provider, its credentials and what its hosts may resolve to."""
    provider = domain.dns.provider
    secret = provider_secrets(domain, secrets)
    records = desired_records(domain, dkim, service_addresses) if dkim is not None else None
    material = {
        "records": [[r.name, r.type, r.ttl, list(r.values)] for r in records or ()],
        "withdrawn": records is None,
        "provider": [provider.kind, repr(provider.settings), repr(provider.secret)],
        "secret": [[k, hashlib.sha256(v).hexdigest()] for s in secret.values() for k, v in s.data],
        "guard": repr(guard),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def host_guard(grants: Grants, domain: MailDomain, removal: bool = False) -> HostGuard | None:
    """How the hosts ``domain`` names are reached: guarded while grants are enforced.

    Without grants (a single team) names resolve as the system resolves them, search domains
    included, so ``server: bind.dns`` keeps working there. ``removal``: for removing records,
    with the allowedHosts of every policy of the namespace (``Grants.allowed_hosts``).
    """
    if not grants.enforced:
        return None
    return HostGuard(allowed=grants.allowed_hosts(domain, removal))


@dataclass
class _Published:
    digest: str
    outcome: DnsOutcome | None  # None: a withdrawal
    failures: int = 0  # in a row, for this digest
    retry_at: float | None = None  # monotonic; None: not to be retried before an input changes

    def due(self, wanted: str) -> bool:
        """Whether a publication with digest ``wanted`` must run (again)."""
        if self.digest != wanted:
            return True
        return self.retry_at is not None and time.monotonic() >= self.retry_at


def _no_wake(namespace: str, name: str) -> None:
    pass


class DnsPublisher:
    """Publishes MailDomains' records at their providers; remembers what it last did."""

    def __init__(self, timings: DnsTimings | None = None, **provider_options: Any) -> None:
        self._memory: dict[ObjectRef, _Published] = {}
        self._jobs: dict[ObjectRef, asyncio.Task[DnsOutcome | None]] = {}
        self._retries: dict[ObjectRef, asyncio.TimerHandle] = {}
        # Whether a MailDomain may hold records at its provider, as this process knows it:
        # True once a publication started, False once a withdrawal removed them.
        self._held: dict[ObjectRef, bool] = {}
        self.runner = DnsRunner(timings)
        self.timings = self.runner.timings
        self._options = {"timeout": self.timings.call_timeout, **provider_options}
        # Marks a MailDomain for another pass (the operator's coalescer).
        self.wake: Callable[[str, str], None] = _no_wake
        self.published: Callable[[str, str], None] = lambda kind, outcome: None  # (metrics)

    def remembered(self, key: ObjectRef) -> DnsOutcome | None:
        entry = self._memory.get(key)
        return entry.outcome if entry is not None else None

    def holds_records(self, key: ObjectRef, previous_status: object) -> bool:
        """Whether the MailDomain may hold records at its provider (``status.dns.published``):
        what this process did for it, else what its last status says (``published_before``)."""
        held = self._held.get(key)
        return held if held is not None else published_before(previous_status)

    def forget(self, namespace: str, name: str, gone: bool = False) -> None:
        """Drop what is remembered of a MailDomain (a job still running ends on its own).

        ``gone``: deleted, its records removed: what it held is forgotten too."""
        keys = {*self._memory, *self._jobs, *(self._held if gone else ())}
        for key in [k for k in keys if k[:2] == (namespace, name)]:
            self._memory.pop(key, None)
            self._held.pop(key, None)
            retry = self._retries.pop(key, None)
            if retry is not None:
                retry.cancel()
            if key in self._jobs and self._jobs[key].done():
                del self._jobs[key]

    async def publish(
        self,
        key: ObjectRef,
        service: MailService,
        dkim: DkimKey,
        secrets: Mapping[str, Secret],
        *,
        service_addresses: Sequence[str] = (),
        resync: bool = False,
        guard: HostGuard | None = None,
    ) -> DnsOutcome:
        """Publish when the inputs changed since the last publish (or on a resync)."""
        domain = service.domain
        if not domain.dns.provider.pushes_records:
            return dns_outcome(domain, dkim)
        wanted = digest(domain, dkim, secrets, service_addresses, guard)
        entry = self._memory.get(key)
        if entry is not None and entry.outcome is not None and not entry.due(wanted) and not resync:
            return entry.outcome
        kind = domain.dns.provider.kind
        pending = record_entries(domain, dkim, "Pending", service_addresses)
        secret = provider_secrets(domain, secrets)

        def work(deadline: Deadline) -> list[RecordStatus]:
            return reconcile_dns(
                service,
                dkim,
                secret,
                service_addresses=service_addresses,
                guard=guard,
                deadline=deadline,
                **self._options,
            )

        async def job() -> DnsOutcome:
            try:
                statuses = await self.runner.run(provider_endpoint(domain), key.namespace, work)
            except Exception as err:
                # A fault of ours (not a DnsError) is reported too, with the same back-off: a
                # background job must not end in an exception nobody reads, then run again.
                failure = err if isinstance(err, DnsError) else DnsError(f"internal error: {err}")
                log = logger.warning if isinstance(err, DnsError) else logger.exception
                log("%s: DNS (%s): %s", key, kind, err)
                outcome = DnsOutcome(conditions.dns_failed(kind, failure), pending)
                self._failed(key, wanted, outcome)
            else:
                outcome = outcome_of(statuses, kind)
                self._memory[key] = _Published(wanted, outcome)
            self.published(kind, outcome.condition.reason)
            return outcome

        self._held[key] = True
        outcome = await self._start(key, job, self.timings.inline_wait)
        if outcome is not None:
            return outcome
        entry = self._memory.get(key)
        if entry is not None and entry.digest == wanted and entry.outcome is not None:
            return entry.outcome
        return DnsOutcome(conditions.dns_pending(kind), pending)

    async def withdraw(self, key: ObjectRef, rendered: Rendered, inputs: DomainInputs) -> None:
        """Remove the records and claims of a MailDomain that may no longer serve, once, in the
        background (the pass does not wait; the MailDomain is woken when it ends).

        Afterwards the other MailDomains claiming the domain (``inputs.siblings``) are forgotten
        and woken: the one serving the domain now publishes what this one's claims held back.
        A failure is logged and tried again after a back-off. Nothing is contacted when a host
        the MailDomain names is what is not allowed, nor for a MailDomain that never published
        (``holds_records``: what this process did for it, else its status).
        """
        domain = rendered.model
        if domain is None or not domain.dns.provider.pushes_records:
            return
        if rendered.invalid_reason == reasons.HOST_NOT_ALLOWED:
            return
        if not self.holds_records(key, inputs.domain.get("status")):
            return
        secrets = inputs.secrets
        claimants = [ObjectRef.of(doc) for doc in inputs.siblings]
        guard = host_guard(inputs.grants, domain, removal=True)
        wanted = digest(domain, None, secrets, (), guard)
        entry = self._memory.get(key)
        if entry is not None and not entry.due(wanted):
            return
        kind = domain.dns.provider.kind
        secret = provider_secrets(domain, secrets)

        def work(deadline: Deadline) -> Plan | None:
            return cleanup_dns(domain, secret, guard=guard, deadline=deadline, **self._options)

        async def job() -> None:
            try:
                removed = await self.runner.run(provider_endpoint(domain), key.namespace, work)
            except Exception as err:  # a fault of ours too: logged, tried again after a back-off
                log = logger.warning if isinstance(err, DnsError) else logger.exception
                log("%s: withdrawn, but its DNS records (%s) stay: %s", key, kind, err)
                if isinstance(err, HostRefusedError):  # tried again when the grants change
                    self._memory[key] = _Published(wanted, None)
                else:
                    self._failed(key, wanted, None)
                return
            self._memory[key] = _Published(wanted, None)
            self._held[key] = False
            count = len(removed.changes) if removed is not None else 0
            logger.info("%s: withdrawn: %d DNS record set(s) removed (%s)", key, count, kind)
            for other in claimants:
                if other[:2] != key[:2]:
                    self.forget(other.namespace, other.name)
                    self.wake(other.namespace, other.name)

        await self._start(key, job, inline_wait=0.0)

    async def _start(
        self, key: ObjectRef, job: Callable[[], Any], inline_wait: float
    ) -> DnsOutcome | None:
        """Run ``job`` (one per MailDomain at a time), waiting ``inline_wait`` for its result.

        None when it goes on in the background (or one is already running): it wakes the
        MailDomain when it ends, and that pass finds the outcome in memory.
        """
        running = self._jobs.get(key)
        if running is not None and not running.done():
            return None
        task: asyncio.Task[DnsOutcome | None] = asyncio.create_task(job())
        self._jobs[key] = task
        if inline_wait > 0:
            done, _ = await asyncio.wait({task}, timeout=inline_wait)
            if task in done:
                return task.result()
        task.add_done_callback(lambda _: self.wake(key.namespace, key.name))
        return None

    def _failed(self, key: ObjectRef, wanted: str, outcome: DnsOutcome | None) -> None:
        """Remember a failure and when to try again (back-off, doubling); wake it then."""
        entry = self._memory.get(key)
        failures = entry.failures + 1 if entry is not None and entry.digest == wanted else 1
        delay = self.timings.retry_delay(failures)
        self._memory[key] = _Published(wanted, outcome, failures, time.monotonic() + delay)
        previous = self._retries.pop(key, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        self._retries[key] = loop.call_later(delay, self.wake, key.namespace, key.name)

    async def cleanup(
        self,
        domain: MailDomain,
        secrets: Mapping[str, Secret],
        selectors: Sequence[str] = (),
        *,
        guard: HostGuard | None = None,
    ) -> Plan | None:
        """Remove the MailDomain's records; raises ``DnsError`` (the finalizer must stay)."""
        if not domain.dns.provider.pushes_records:
            return None
        secret = provider_secrets(domain, secrets)

        def work(deadline: Deadline) -> Plan | None:
            return cleanup_dns(
                domain, secret, selectors=selectors, guard=guard, deadline=deadline, **self._options
            )

        return await self.runner.run(provider_endpoint(domain), domain.namespace, work)
