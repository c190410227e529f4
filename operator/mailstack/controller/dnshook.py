"""Where the controller meets DNS: the DNSReady condition and ``status.dns.records``.

``manual``: the desired records (``dns.records``) are listed in the status with state ``Manual``
and DNSReady is ``Unknown / NotConfigured``, which does not hold back ``Ready`` (only the user can
publish those records). ``externalDNS``: not wired yet, ``Unknown / ProviderNotAvailable``.

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
from dataclasses import dataclass
from typing import Any

from mailstack.api.assemble import MailService
from mailstack.api.models import MailDomain, Secret
from mailstack.controller.status import Condition
from mailstack.dns.errors import DnsError
from mailstack.dns.plan import Plan, RecordStatus
from mailstack.dns.reconcile import cleanup_dns, reconcile_dns
from mailstack.dns.records import desired_records
from mailstack.material.dkim import DkimKey

logger = logging.getLogger(__name__)

# Providers the controller does not publish to itself.
NOT_PUBLISHED = ("manual", "externalDNS")

DomainId = tuple[str, str, str]  # namespace, name, uid


@dataclass(frozen=True)
class DnsOutcome:
    condition: Condition
    records: list[dict[str, Any]]


def record_entries(
    domain: MailDomain, dkim: DkimKey, state: str, service_addresses: Sequence[str] = ()
) -> list[dict[str, Any]]:
    return [
        {
            "name": record.name,
            "type": record.type,
            "ttl": record.ttl,
            "values": list(record.values),
            "state": state,
            "reason": record.reason,
        }
        for record in desired_records(domain, dkim, service_addresses)
    ]


def dns_outcome(domain: MailDomain, dkim: DkimKey) -> DnsOutcome:
    """The outcome without asking a provider: manual, externalDNS, or not published yet."""
    provider = domain.dns.provider.kind
    records = record_entries(domain, dkim, "Manual")
    if provider == "manual":
        condition = Condition(
            "DNSReady",
            "Unknown",
            "NotConfigured",
            f"provider manual: publish the {len(records)} records of status.dns.records "
            "(`mailstack dns plan` prints them as a zone file)",
        )
    elif provider == "externalDNS":
        condition = Condition(
            "DNSReady",
            "Unknown",
            "ProviderNotAvailable",
            f"provider {provider} is not available in this version: publish the "
            f"{len(records)} records of status.dns.records yourself",
        )
    else:
        records = record_entries(domain, dkim, "Pending")
        condition = Condition(
            "DNSReady",
            "Unknown",
            "Pending",
            f"provider {provider}: the records are published once the children are applied",
        )
    return DnsOutcome(condition, records)


def published(domain: MailDomain) -> bool:
    """Whether the controller publishes this MailDomain's records itself."""
    return domain.dns.provider.kind not in NOT_PUBLISHED


def provider_secrets(domain: MailDomain, secrets: Mapping[str, Secret]) -> dict[str, Secret]:
    ref = domain.dns.provider.secret
    if ref is None or ref.name not in secrets:
        return {}
    return {ref.name: secrets[ref.name]}


def outcome_of(statuses: Sequence[RecordStatus], provider: str) -> DnsOutcome:
    records = [s.to_dict() for s in statuses]
    conflicts = [f"{s.name} {s.type}" for s in statuses if s.state == "Conflict"]
    if conflicts:
        condition = Condition(
            "DNSReady",
            "False",
            "DNSConflict",
            f"provider {provider}: held by someone else, not overwritten: {', '.join(conflicts)}",
        )
    else:
        condition = Condition(
            "DNSReady",
            "True",
            "Published",
            f"provider {provider}: {len(records)} record(s) published",
        )
    return DnsOutcome(condition, records)


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
        self._memory: dict[DomainId, _Published] = {}
        self._options = provider_options

    def remembered(self, key: DomainId) -> DnsOutcome | None:
        entry = self._memory.get(key)
        return entry.outcome if entry is not None else None

    def forget(self, namespace: str, name: str) -> None:
        for key in [k for k in self._memory if k[:2] == (namespace, name)]:
            del self._memory[key]

    async def publish(
        self,
        key: DomainId,
        service: MailService,
        dkim: DkimKey,
        secrets: Mapping[str, Secret],
        *,
        service_addresses: Sequence[str] = (),
        resync: bool = False,
    ) -> DnsOutcome:
        """Publish when the inputs changed since the last publish (or on a resync)."""
        domain = service.domain
        if not published(domain):
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
            logger.warning("%s/%s: DNS (%s): %s", key[0], key[1], kind, err)
            outcome = DnsOutcome(
                Condition("DNSReady", "False", err.reason, f"provider {kind}: {err}"),
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
        if not published(domain):
            return None
        return await asyncio.to_thread(
            cleanup_dns,
            domain,
            provider_secrets(domain, secrets),
            selectors=selectors,
            **self._options,
        )
