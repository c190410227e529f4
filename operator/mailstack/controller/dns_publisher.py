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
after the children are applied: ``reconcile_dns`` runs in a thread (provider calls block), only
when the desired record set (records, provider settings, credentials) changed since the last
publish or on the periodic resync; its per-MailDomain digest and outcome are kept in memory.
Success is ``DNSReady=True / Published`` (``False / DNSConflict`` when a record is held by someone
else); a ``DnsError`` is ``DNSReady=False`` with the error's ``reason`` and one-line message,
retried on the next resync or when the inputs change. ``cleanup`` is the finalizer's part: it
removes exactly the records the MailDomain owns, raising ``DnsError`` so that the finalizer stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mailstack.api.assemble import MailService
from mailstack.api.models import MailDomain, Secret
from mailstack.controller import conditions
from mailstack.controller.conditions import Condition
from mailstack.controller.documents import observed_generation
from mailstack.dns.errors import DnsError
from mailstack.dns.plan import Plan, RecordStatus, State
from mailstack.dns.providers.external_dns import endpoint_name, endpoint_statuses
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
    dkim: DkimKey,
    secrets: Mapping[str, Secret],
    service_addresses: Sequence[str],
) -> str:
    """What a publish depends on: the desired records, the provider and its credentials."""
    provider = domain.dns.provider
    secret = provider_secrets(domain, secrets)
    material = {
        "records": [
            [r.name, r.type, r.ttl, list(r.values)]
            for r in desired_records(domain, dkim, service_addresses)
        ],
        "provider": [provider.kind, repr(provider.settings), repr(provider.secret)],
        "secret": [[k, hashlib.sha256(v).hexdigest()] for s in secret.values() for k, v in s.data],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class _Published:
    digest: str
    outcome: DnsOutcome


class DnsPublisher:
    """Publishes MailDomains' records at their providers; remembers what it last did."""

    def __init__(self, **provider_options: Any) -> None:
        self._memory: dict[ObjectRef, _Published] = {}
        self._options = provider_options

    def remembered(self, key: ObjectRef) -> DnsOutcome | None:
        entry = self._memory.get(key)
        return entry.outcome if entry is not None else None

    def forget(self, namespace: str, name: str) -> None:
        for key in [k for k in self._memory if (k.namespace, k.name) == (namespace, name)]:
            del self._memory[key]

    async def publish(
        self,
        key: ObjectRef,
        service: MailService,
        dkim: DkimKey,
        secrets: Mapping[str, Secret],
        *,
        service_addresses: Sequence[str] = (),
        resync: bool = False,
    ) -> DnsOutcome:
        """Publish when the inputs changed since the last publish (or on a resync)."""
        domain = service.domain
        if not domain.dns.provider.pushes_records:
            return dns_outcome(domain, dkim)
        wanted = digest(domain, dkim, secrets, service_addresses)
        entry = self._memory.get(key)
        if entry is not None and entry.digest == wanted and not resync:
            return entry.outcome
        kind = domain.dns.provider.kind
        try:
            statuses = await asyncio.to_thread(
                reconcile_dns,
                service,
                dkim,
                provider_secrets(domain, secrets),
                service_addresses=service_addresses,
                **self._options,
            )
        except DnsError as err:
            logger.warning("%s: DNS (%s): %s", key, kind, err)
            outcome = DnsOutcome(
                conditions.dns_failed(kind, err),
                record_entries(domain, dkim, "Pending", service_addresses),
            )
        else:
            outcome = outcome_of(statuses, kind)
        # A failure is remembered too: retried on the next resync or when an input changes
        # (a corrected credentials Secret, say), not on every pass.
        self._memory[key] = _Published(wanted, outcome)
        return outcome

    async def cleanup(
        self, domain: MailDomain, secrets: Mapping[str, Secret], selectors: Sequence[str] = ()
    ) -> Plan | None:
        """Remove the MailDomain's records; raises ``DnsError`` (the finalizer must stay)."""
        if not domain.dns.provider.pushes_records:
            return None
        return await asyncio.to_thread(
            cleanup_dns,
            domain,
            provider_secrets(domain, secrets),
            selectors=selectors,
            **self._options,
        )
