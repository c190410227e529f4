"""The externalDNS provider: a ``DNSEndpoint`` object for an external-dns already in the cluster.

Owns: building the ``externaldns.k8s.io/v1alpha1`` ``DNSEndpoint`` that carries the desired
records (``dns_endpoint``) and the statuses that go with it. Nothing is read or written here:
the controller applies the object, external-dns publishes it with its own ownership registry
(so no ``_mailstack-owner`` claims are written for this provider).

external-dns must run with the CRD source and manage the mail record types, which are not in
its default ``--managed-record-types`` (A, AAAA, CNAME)::

    --source=crd --crd-source-apiversion=externaldns.k8s.io/v1alpha1 --crd-source-kind=DNSEndpoint
    --managed-record-types=A --managed-record-types=AAAA --managed-record-types=CNAME
    --managed-record-types=MX --managed-record-types=SRV --managed-record-types=TXT

Limits, inherited from external-dns: CAA is not supported (the record is reported ``Manual``);
the apex TXT endpoint holds only the SPF value, and external-dns publishes it only where it owns
the apex TXT set (a zone with other apex TXT records keeps them, and the SPF value is then not
published by external-dns); TXT values over 255 bytes (the DKIM key) are split or refused
depending on the external-dns provider in use. ``mailstack dns check`` shows what arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailstack.api.models import MailDomain
from mailstack.dns.plan import RecordStatus
from mailstack.dns.records import Record
from mailstack.render.layout import object_names

API_VERSION = "externaldns.k8s.io/v1alpha1"
KIND = "DNSEndpoint"
SUPPORTED = frozenset({"A", "AAAA", "CNAME", "MX", "SRV", "TXT"})
MANAGED_RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "SRV", "TXT")


def endpoint_name(domain: MailDomain) -> str:
    return object_names(domain.name)["dns_endpoint"]


def endpoint_target(rtype: str, value: str) -> str:
    """A canonical value as external-dns expects a target: names without the trailing dot."""
    if rtype in ("MX", "SRV", "CNAME"):
        head, _, target = value.rpartition(" ")
        target = target if target == "." else target.rstrip(".")
        return f"{head} {target}".strip()
    return value


def dns_endpoint(domain: MailDomain, records: Sequence[Record]) -> dict[str, Any]:
    """The DNSEndpoint object for the records external-dns can publish."""
    endpoints = [
        {
            "dnsName": record.name,
            "recordType": record.type,
            "recordTTL": record.ttl,
            "targets": [endpoint_target(record.type, v) for v in record.values],
        }
        for record in records
        if record.type in SUPPORTED
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": endpoint_name(domain),
            "namespace": domain.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "mailstack",
                "app.kubernetes.io/instance": domain.name,
            },
        },
        "spec": {"endpoints": endpoints},
    }


def endpoint_statuses(domain: MailDomain, records: Sequence[Record]) -> list[RecordStatus]:
    """Pending until ``dns check`` sees them: external-dns publishes on its own schedule."""
    result = []
    for record in records:
        if record.type in SUPPORTED:
            message = f"handed to external-dns in DNSEndpoint {endpoint_name(domain)}"
            result.append(RecordStatus.of(record, "Pending", message))
        else:
            message = f"external-dns cannot publish {record.type} records: publish it yourself"
            result.append(RecordStatus.of(record, "Manual", message))
    return result
