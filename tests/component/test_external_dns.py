"""The externalDNS provider: the operator writes a DNSEndpoint child that external-dns publishes.

The emulator serves external-dns's DNSEndpoint CRD (``tests/fixtures/crds``) with its schema, so
a field the operator writes that external-dns does not know would be pruned and show up here as
an endless restore. external-dns itself is played by the test: its CRD source marks what it has
read by setting ``status.observedGeneration`` through the status subresource.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.component.conftest import NS, conditions, maildomain, settle, wait_ready
from tests.component.emulator import (
    ApiServer,
    builtin_resources,
    crd_resources,
    external_dns_resources,
    wait_for,
)
from tests.component.harness import OperatorThread

WITH_EXTERNAL_DNS = {
    "resources": [*builtin_resources(), *crd_resources(), *external_dns_resources()]
}
ENDPOINT = "example-org-dns"


def domain(**spec: Any) -> dict[str, Any]:
    return maildomain(
        "example-org",
        "example.org",
        dns={"provider": {"externalDNS": {}}, "addresses": {"ipv4": ["192.0.2.25"]}},
        **spec,
    )


def dns_ready(api: ApiServer) -> dict[str, Any]:
    return conditions(api.get("maildomains", "example-org")).get("DNSReady", {})


def targets(endpoint: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {(e["dnsName"], e["recordType"]): e["targets"] for e in endpoint["spec"]["endpoints"]}


def external_dns_reads(api: ApiServer) -> None:
    """What external-dns's CRD source does once it has read the DNSEndpoint."""
    live = api.get("dnsendpoints", ENDPOINT)
    assert live is not None
    api.patch(
        "dnsendpoints",
        ENDPOINT,
        {"status": {"observedGeneration": live["metadata"]["generation"]}},
        subresource="status",
        manager="external-dns",
    )


def endpoint_writes(api: ApiServer, since: int) -> list[str]:
    return [
        f"{w.verb} {w.subresource or ''}".strip()
        for w in api.writes(since)
        if w.resource == "dnsendpoints" and w.manager != "external-dns" and w.changed
    ]


@pytest.mark.parametrize("api", [WITH_EXTERNAL_DNS], indirect=True)
def test_records_are_handed_to_external_dns_and_follow_the_spec(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(domain())
    endpoint = wait_for(lambda: api.get("dnsendpoints", ENDPOINT))
    (owner,) = endpoint["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == (
        "MailDomain",
        "example-org",
        True,
    )
    found = targets(endpoint)
    assert found[("example.org", "MX")] == ["10 mail.example.org"]
    assert found[("mail.example.org", "A")] == ["192.0.2.25"]
    assert found[("_imaps._tcp.example.org", "SRV")] == ["0 1 993 mail.example.org"]
    assert any(v.startswith("v=spf1") for v in found[("example.org", "TXT")])

    # Written, but external-dns has not read it: Ready waits for it.
    wait_for(lambda: dns_ready(api).get("reason") == "WaitingForExternalDNS")
    assert dns_ready(api)["status"] == "Unknown"
    assert "--managed-record-types" in dns_ready(api)["message"]
    # The workloads come up (the emulator readies StatefulSets); DNSReady is what holds Ready.
    md = wait_for(
        lambda: (
            (found := api.get("maildomains", "example-org")) is not None
            and conditions(found)["WorkloadsReady"]["status"] == "True"
            and found
        )
    )
    assert (conditions(md)["Ready"]["status"], conditions(md)["Ready"]["reason"]) == (
        "Unknown",
        "WaitingForExternalDNS",
    )
    dkim_record = md["status"]["dkim"]["record"]
    assert found[("mailstack._domainkey.example.org", "TXT")] == [dkim_record]

    external_dns_reads(api)
    wait_for(lambda: dns_ready(api).get("reason") == "AcceptedByExternalDNS")
    md = wait_ready(api, "example-org")
    assert conditions(md)["DNSReady"]["status"] == "True"
    assert {r["state"] for r in md["status"]["dns"]["records"]} == {"Published"}

    # Nothing changed: no further writes to the DNSEndpoint.
    start = settle(api, operator)
    api.patch("maildomains", "example-org", {"metadata": {"labels": {"team": "mail"}}})
    time.sleep(1.0)
    settle(api, operator)
    assert endpoint_writes(api, start) == []

    # A spec change reaches the DNSEndpoint; DNSReady waits for external-dns again.
    start = api.write_count()
    api.patch(
        "maildomains",
        "example-org",
        {"spec": {"dns": {"addresses": {"ipv4": ["192.0.2.26"]}}}},
    )
    wait_for(
        lambda: (
            targets(api.get("dnsendpoints", ENDPOINT))[("mail.example.org", "A")] == ["192.0.2.26"]
        )
    )
    wait_for(lambda: dns_ready(api).get("reason") == "WaitingForExternalDNS")
    assert endpoint_writes(api, start) == ["apply"]
    external_dns_reads(api)
    wait_for(lambda: dns_ready(api).get("reason") == "AcceptedByExternalDNS")

    # Edited by hand: restored.
    api.patch("dnsendpoints", ENDPOINT, {"spec": {"endpoints": []}})
    wait_for(lambda: targets(api.get("dnsendpoints", ENDPOINT)).get(("example.org", "MX")))

    # Another provider: the DNSEndpoint goes (external-dns would keep publishing it).
    api.patch(
        "maildomains",
        "example-org",
        {"spec": {"dns": {"provider": {"externalDNS": None, "manual": {}}}}},
    )
    wait_for(lambda: api.get("dnsendpoints", ENDPOINT) is None)
    wait_for(lambda: dns_ready(api).get("reason") == "NotConfigured")
    assert not operator.errors


@pytest.mark.parametrize("api", [WITH_EXTERNAL_DNS], indirect=True)
def test_the_dns_endpoint_goes_with_its_maildomain(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(domain())
    wait_for(lambda: api.get("dnsendpoints", ENDPOINT))
    api.delete("maildomains", "example-org")
    wait_for(lambda: api.get("maildomains", "example-org") is None)
    wait_for(lambda: api.get("dnsendpoints", ENDPOINT) is None)
    assert not operator.errors


def test_a_cluster_without_external_dns_gets_a_clear_condition(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(domain())
    wait_for(lambda: dns_ready(api).get("status") == "False")
    condition = dns_ready(api)
    assert condition["reason"] == "ExternalDNSNotInstalled", condition
    assert "install external-dns's CRD" in condition["message"]
    md = api.get("maildomains", "example-org")
    assert conditions(md)["Rendered"]["status"] == "True"  # the rest of the pass went on
    assert {r["state"] for r in md["status"]["dns"]["records"]} == {"Pending"}
    assert api.get("configmaps", "example-org-postfix", NS) is not None
    assert not operator.errors
