"""One MailDomain's records at its provider: plan, apply, clean up. What CLI and controller call.

Owns: ``plan_dns`` (read the provider, compute the plan), ``reconcile_dns`` (apply it, return the
``status.dns.records[]`` entries), ``cleanup_dns`` (the finalizer's job: remove exactly the
records the MailDomain claims). Provider failures raise ``DnsError`` subclasses whose text is the
one-line reason and whose ``reason`` attribute is the condition reason for ``DNSReady=False``;
conflicts are not failures of the call: they are records in state ``Conflict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mailstack.api.assemble import MailService
from mailstack.api.models import MailDomain, Secret
from mailstack.dns.errors import UnsafePlanError
from mailstack.dns.ownership import owner_id
from mailstack.dns.plan import Plan, RecordStatus, cleanup_plan, in_zone, plan_zone
from mailstack.dns.providers import build_provider
from mailstack.dns.providers.base import Provider
from mailstack.dns.providers.external_dns import endpoint_statuses
from mailstack.dns.records import Record, desired_records, managed_names
from mailstack.material.dkim import DkimKey


def _domain(service: MailService | MailDomain) -> MailDomain:
    return service.domain if isinstance(service, MailService) else service


def domain_owner(domain: MailDomain) -> str:
    return owner_id(domain.namespace, domain.name)


def manual_statuses(records: Sequence[Record], message: str) -> list[RecordStatus]:
    return [RecordStatus.of(r, "Manual", message) for r in records]


def plan_dns(
    service: MailService | MailDomain,
    dkim: DkimKey,
    secrets: Mapping[str, Secret],
    *,
    service_addresses: Sequence[str] = (),
    provider: Provider | None = None,
    **provider_options: Any,
) -> tuple[Provider, list[Record], Plan]:
    """Read the provider and plan: (provider, desired records, plan). Writes nothing."""
    domain = _domain(service)
    provider = provider or build_provider(domain, secrets, **provider_options)
    records = desired_records(domain, dkim, service_addresses)
    names = [n for n in dict.fromkeys([r.name for r in records] + managed_names(domain))]
    current = provider.read([n for n in names if in_zone(n, provider.zone)])
    return provider, records, plan_zone(records, current, domain_owner(domain), provider.supports)


def reconcile_dns(
    service: MailService | MailDomain,
    dkim: DkimKey,
    secrets: Mapping[str, Secret],
    *,
    service_addresses: Sequence[str] = (),
    force: bool = False,
    provider: Provider | None = None,
    **provider_options: Any,
) -> list[RecordStatus]:
    """Publish the MailDomain's records; the ``status.dns.records[]`` entries afterwards.

    manual: nothing is written, every record is ``Manual``. externalDNS: nothing is written
    here (the controller applies ``providers.external_dns.dns_endpoint``), records are
    ``Pending``. Raises ``DnsError`` (provider failure, refused credentials, unsafe plan).
    """
    domain = _domain(service)
    kind = domain.dns.provider.kind
    if provider is None and kind == "manual":
        records = desired_records(domain, dkim, service_addresses)
        return manual_statuses(records, "provider manual: publish it yourself (dns plan)")
    if provider is None and kind == "externalDNS":
        return endpoint_statuses(domain, desired_records(domain, dkim, service_addresses))
    provider, _, zone_plan = plan_dns(
        domain,
        dkim,
        secrets,
        service_addresses=service_addresses,
        provider=provider,
        **provider_options,
    )
    refusal = zone_plan.refusal()
    if refusal and not force:
        raise UnsafePlanError(refusal)
    if zone_plan.changes:
        provider.apply(zone_plan.changes)
    return zone_plan.applied()


def cleanup_dns(
    service: MailService | MailDomain,
    secrets: Mapping[str, Secret],
    *,
    selectors: Sequence[str] = (),
    provider: Provider | None = None,
    **provider_options: Any,
) -> Plan | None:
    """Remove exactly the records (and claims) the MailDomain owns; the plan that was applied.

    None for manual and externalDNS (the DNSEndpoint goes with its owner reference).
    ``selectors``: DKIM selectors used before, for providers that cannot list their zone.
    """
    domain = _domain(service)
    if provider is None and not domain.dns.provider.pushes_records:
        return None
    provider = provider or build_provider(domain, secrets, **provider_options)
    names = [n for n in managed_names(domain, selectors) if in_zone(n, provider.zone)]
    zone_plan = cleanup_plan(provider.read(names), domain_owner(domain))
    if zone_plan.changes:
        provider.apply(zone_plan.changes)
    return zone_plan
