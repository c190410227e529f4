"""Where the controller meets DNS: the DNSReady condition and ``status.dns.records``.

For now every provider is treated like ``manual``: the desired records (``dns.records``) are
listed in the status with state ``Manual`` and DNSReady is ``Unknown``. The ``manual`` provider
reports reason ``NotConfigured``, which does not hold back ``Ready`` (only the user can publish
those records); any other provider reports ``ProviderNotAvailable`` until the DNS issue lands.

HOOK for the DNS issue: replace ``dns_outcome`` by a call into ``mailstack.dns`` that plans
against the provider (``reconcile_dns``) and maps each record's plan to Published / Pending /
Conflict; call ``cleanup_dns`` from ``reconcile.Reconciler.finalize`` (it is already the place
that runs before the finalizer is removed). Both run in the reconcile, which is async; provider
calls must be awaited there, so the hook will become a coroutine at that point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailstack.api.models import MailDomain
from mailstack.controller.status import Condition
from mailstack.dns.records import desired_records
from mailstack.material.dkim import DkimKey


@dataclass(frozen=True)
class DnsOutcome:
    condition: Condition
    records: list[dict[str, Any]]


def record_entries(domain: MailDomain, dkim: DkimKey, state: str) -> list[dict[str, Any]]:
    return [
        {
            "name": record.name,
            "type": record.type,
            "ttl": record.ttl,
            "values": list(record.values),
            "state": state,
            "reason": record.reason,
        }
        for record in desired_records(domain, dkim)
    ]


def dns_outcome(domain: MailDomain, dkim: DkimKey) -> DnsOutcome:
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
    else:
        condition = Condition(
            "DNSReady",
            "Unknown",
            "ProviderNotAvailable",
            f"provider {provider} is not available in this version: publish the "
            f"{len(records)} records of status.dns.records yourself",
        )
    return DnsOutcome(condition, records)
