"""DNSReady for the externalDNS provider, from the live DNSEndpoint (pure: no API, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.controller.conditions import endpoint_failure
from mailstack.controller.dns_publisher import endpoint_outcome
from mailstack.controller.documents import observed_generation
from mailstack.dns.providers.external_dns import dns_endpoint
from mailstack.dns.records import desired_records
from mailstack.material.dkim import DkimKey, generate_dkim_key
from tests.dns_inputs import maildomain

ACME = {"issuer": "acme", "acme": {"email": "postmaster@example.net"}}


@pytest.fixture(scope="module")
def dkim() -> DkimKey:
    return generate_dkim_key("mailstack", "ed25519")


def live(generation: int, observed: int | None) -> dict[str, Any]:
    status = {} if observed is None else {"observedGeneration": observed}
    return {"metadata": {"name": "example-com-dns", "generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (None, None),
        ({}, None),
        (live(3, None), None),
        (live(3, 2), None),  # an older generation: the current one is not read yet
        (live(3, 3), 3),
        ({"metadata": {"generation": "3"}, "status": {"observedGeneration": "3"}}, None),
    ],
)
def test_only_the_current_generation_counts_as_read(
    endpoint: dict[str, Any] | None, expected: int | None
) -> None:
    assert observed_generation(endpoint) == expected


def test_unread_read_and_refused_endpoints(dkim: DkimKey) -> None:
    domain = maildomain({"externalDNS": {}}, tls=ACME)
    records = desired_records(domain, dkim)
    obj = dns_endpoint(domain, records)
    assert obj["metadata"]["name"] == "example-com-dns"

    waiting = endpoint_outcome(domain, records, live(1, None))
    assert (waiting.condition.status, waiting.condition.reason) == (
        "Unknown",
        "WaitingForExternalDNS",
    )
    assert {r["state"] for r in waiting.records} == {"Pending", "Manual"}

    read = endpoint_outcome(domain, records, live(4, 4))
    assert (read.condition.status, read.condition.reason) == ("True", "AcceptedByExternalDNS")
    states = {(r["name"], r["type"]): r["state"] for r in read.records}
    assert states[("example.com", "MX")] == "Published"
    assert states[("mail.example.com", "CAA")] == "Manual"  # external-dns cannot publish CAA
    assert "generation 4" in read.condition.message
    assert "publish yourself what it cannot: mail.example.com CAA" in read.condition.message

    missing = endpoint_failure(obj, 404, "the server could not find the requested resource")
    assert (missing.status, missing.reason) == ("False", "ExternalDNSNotInstalled")
    refused = endpoint_failure(obj, 403, "forbidden: dnsendpoints.externaldns.k8s.io")
    assert (refused.reason, refused.message) == (
        "DNSEndpointRefused",
        "provider externalDNS: writing DNSEndpoint example-com-dns failed: "
        "forbidden: dnsendpoints.externaldns.k8s.io",
    )
    failed = endpoint_outcome(domain, records, None, missing)
    assert failed.condition == missing
    assert {r["state"] for r in failed.records} == {"Pending", "Manual"}
