"""Where the controller meets DNS: the DNSReady condition and ``status.dns.records``.

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
from mailstack.controller.status import Condition
from mailstack.dns.errors import DnsError
from mailstack.dns.plan import Plan, RecordStatus
from mailstack.dns.providers.external_dns import endpoint_name, endpoint_statuses
from mailstack.dns.reconcile import cleanup_dns, reconcile_dns
from mailstack.dns.records import Record, desired_records
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
    if provider == "manual":
        records = record_entries(domain, dkim, "Manual")
        condition = Condition(
            "DNSReady",
            "Unknown",
            "NotConfigured",
            f"provider manual: publish the {len(records)} records of status.dns.records "
            "(`mailstack dns plan` prints them as a zone file)",
        )
    else:
        records = record_entries(domain, dkim, "Pending")
        written = "DNSEndpoint is written" if provider == "externalDNS" else "records are published"
        condition = Condition(
            "DNSReady",
            "Unknown",
            "Pending",
            f"provider {provider}: the {written} once the children are applied",
        )
    return DnsOutcome(condition, records)


def observed_generation(endpoint: Mapping[str, Any] | None) -> int | None:
    """The generation external-dns has read, when it has read the current one."""
    if not endpoint:
        return None
    generation = (endpoint.get("metadata") or {}).get("generation")
    observed = (endpoint.get("status") or {}).get("observedGeneration")
    if isinstance(generation, int) and observed == generation:
        return generation
    return None


def endpoint_failure(endpoint: Mapping[str, Any], status: int, message: str) -> Condition:
    """DNSReady for a DNSEndpoint the API server refused (404: external-dns's CRD is missing)."""
    name = endpoint["metadata"]["name"]
    if status == 404:
        return Condition(
            "DNSReady",
            "False",
            "ExternalDNSNotInstalled",
            f"provider externalDNS: the API server does not serve {endpoint['apiVersion']} "
            f"DNSEndpoint: install external-dns's CRD (DNSEndpoint {name} is written once it is "
            "served), or choose another provider",
        )
    return Condition(
        "DNSReady",
        "False",
        "DNSEndpointRefused",
        f"provider externalDNS: writing DNSEndpoint {name} failed: {message}",
    )


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
        condition = Condition(
            "DNSReady",
            "Unknown",
            "WaitingForExternalDNS",
            f"provider externalDNS: DNSEndpoint {name} is written; external-dns has not read "
            "it yet (it sets status.observedGeneration when it does: is it running with "
            "--source=crd and the mail record types in --managed-record-types?)",
        )
        return DnsOutcome(condition, [s.to_dict() for s in statuses])
    read = f"external-dns read DNSEndpoint {name} (generation {generation})"
    accepted = [
        replace(s, state="Published", message=read) if s.state == "Pending" else s for s in statuses
    ]
    manual = [f"{s.name} {s.type}" for s in accepted if s.state == "Manual"]
    message = f"provider externalDNS: {read}; it publishes on its own schedule"
    if manual:
        message += f"; publish yourself what it cannot: {', '.join(manual)}"
    condition = Condition("DNSReady", "True", "AcceptedByExternalDNS", message)
    return DnsOutcome(condition, [s.to_dict() for s in accepted])


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
