"""Provider pieces that need no server: configuration from the MailDomain and its Secrets, the
externalDNS object, value translations, Route 53 batching, HTTP retry timing."""

from __future__ import annotations

import re
from typing import get_args

import pytest

from mailstack.api.dns_models import DnsProvider, ProviderSettings
from mailstack.dns.errors import DnsConfigError
from mailstack.dns.plan import Change, RRset
from mailstack.dns.providers import build_provider
from mailstack.dns.providers.external_dns import (
    MANAGED_RECORD_TYPES,
    dns_endpoint,
    endpoint_statuses,
    endpoint_target,
)
from mailstack.dns.providers.http import _retry_after
from mailstack.dns.providers.manual import ManualProvider
from mailstack.dns.providers.powerdns import content_value, value_content
from mailstack.dns.providers.rfc2136 import Rfc2136Provider, value_rdata
from mailstack.dns.providers.route53 import Route53Provider
from mailstack.dns.records import desired_records, rdata_value
from mailstack.material.dkim import DkimKey, generate_dkim_key
from tests.dns_inputs import maildomain, secret


@pytest.fixture(scope="module")
def dkim() -> DkimKey:
    return generate_dkim_key("mailstack", "rsa2048")


RFC2136 = {
    "rfc2136": {
        "server": "192.0.2.53",
        "tsigKeyName": "mailstack",
        "tsigAlgorithm": "hmac-sha512",
        "tsigSecretRef": {"name": "dns-tsig"},
    }
}


def test_rfc2136_from_the_spec_and_its_secret() -> None:
    provider = build_provider(
        maildomain(RFC2136), {"dns-tsig": secret("dns-tsig", secret="c2VjcmV0")}
    )
    assert isinstance(provider, Rfc2136Provider)
    assert (provider.server, provider.port, provider.zone) == ("192.0.2.53", 53, "example.com")
    assert provider.algorithm == "hmac-sha512"
    assert provider.describe() == "rfc2136 zone example.com at 192.0.2.53:53"


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({}, "the rfc2136 credentials: Secret dns-tsig not found"),
        ({"dns-tsig": secret("dns-tsig", other="x")}, "has no key 'secret'"),
        ({"dns-tsig": secret("dns-tsig", secret="not base64!")}, "the secret is not base64"),
    ],
)
def test_rfc2136_secret_problems_are_config_errors(
    secrets: dict[str, object], message: str
) -> None:
    with pytest.raises(DnsConfigError, match=re.escape(message)):
        build_provider(maildomain(RFC2136), secrets)  # type: ignore[arg-type]


def test_manual_provider_supports_nothing() -> None:
    provider = build_provider(maildomain(), {})
    assert isinstance(provider, ManualProvider) and provider.supports == frozenset()
    assert provider.read(["example.com"]).rrsets == ()


def test_external_dns_is_not_a_provider_but_an_object(dkim: DkimKey) -> None:
    domain = maildomain(
        {"externalDNS": {}}, tls={"issuer": "acme", "acme": {"email": "a@example.net"}}
    )
    with pytest.raises(DnsConfigError):
        build_provider(domain, {})
    records = desired_records(domain, dkim)
    obj = dns_endpoint(domain, records)
    assert obj["apiVersion"] == "externaldns.k8s.io/v1alpha1" and obj["kind"] == "DNSEndpoint"
    assert obj["metadata"] == {
        "name": "example-com-dns",
        "namespace": "mail",
        "labels": {
            "app.kubernetes.io/managed-by": "mailstack",
            "app.kubernetes.io/instance": "example-com",
        },
    }
    endpoints = {(e["dnsName"], e["recordType"]): e for e in obj["spec"]["endpoints"]}
    assert endpoints[("example.com", "MX")]["targets"] == ["10 mail.example.com"]
    assert endpoints[("_imaps._tcp.example.com", "SRV")]["targets"] == ["0 1 993 mail.example.com"]
    assert endpoints[("mailstack._domainkey.example.com", "TXT")]["targets"] == [dkim.dns_value()]
    assert endpoints[("example.com", "MX")]["recordTTL"] == 3600
    assert not any(t == "CAA" for _, t in endpoints), "external-dns cannot publish CAA"
    assert {e["recordType"] for e in endpoints.values()} <= set(MANAGED_RECORD_TYPES)
    states = {(s.name, s.type): s.state for s in endpoint_statuses(domain, records)}
    assert states[("mail.example.com", "CAA")] == "Manual"
    assert states[("example.com", "MX")] == "Pending"
    assert endpoint_target("SRV", "0 0 0 .") == "0 0 0 ."


def test_rfc2136_values_become_rdata_and_back(dkim: DkimKey) -> None:
    for record in desired_records(maildomain(), dkim):
        for value in record.values:
            rdata = value_rdata(record.type, value)
            assert rdata_value(rdata) == value
    dkim_rdata = value_rdata("TXT", dkim.dns_value())
    assert len(dkim_rdata.strings) == 2  # type: ignore[attr-defined]


def test_powerdns_content_is_quoted_for_txt(dkim: DkimKey) -> None:
    assert value_content("TXT", "v=spf1 mx -all") == '"v=spf1 mx -all"'
    assert value_content("MX", "10 mail.example.com.") == "10 mail.example.com."
    assert content_value("TXT", value_content("TXT", dkim.dns_value())) == dkim.dns_value()
    assert content_value("MX", "10 Mail.Example.com.") == "10 mail.example.com."


class _Zone:
    def get_hosted_zone(self, Id: str) -> dict[str, object]:
        return {"HostedZone": {"Name": "example.com."}}


def test_route53_batches_respect_the_value_character_limit() -> None:
    provider = Route53Provider("Z1", _Zone(), max_changes=1000)
    big = "x" * 2000
    changes = [
        Change("create", None, RRset(f"t{i}.example.com", "TXT", 60, (big,))) for i in range(40)
    ]
    batches = provider.batches(changes)
    assert len(batches) > 1
    for batch in batches:
        chars = sum(
            len(r["Value"]) for c in batch for r in c["ResourceRecordSet"]["ResourceRecords"]
        )
        assert chars <= 32000
    flat = [c["ResourceRecordSet"]["Name"] for b in batches for c in b]
    assert flat == [f"t{i}.example.com." for i in range(40)], "order is kept"
    upsert = Change(
        "update",
        RRset("u.example.com", "TXT", 60, ("a",)),
        RRset("u.example.com", "TXT", 60, ("b",)),
    )
    assert provider.batches([upsert])[0][0]["Action"] == "UPSERT"


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, 1.5), ("0", 0.0), ("7", 7.0), ("soon", 1.5), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after(header: str | None, expected: float) -> None:
    assert _retry_after(header, 1.5) == expected


def test_only_the_api_providers_have_their_records_pushed_by_mailstack() -> None:
    # manual (people publish) and externalDNS (external-dns publishes a DNSEndpoint) are the
    # kinds the CLI, the controller and the finalizer leave alone: one predicate says so.
    pushed = {cls.kind for cls in get_args(ProviderSettings) if cls.pushes_records}
    assert pushed == {"rfc2136", "powerdns", "cloudflare", "route53"}
    assert not DnsProvider().pushes_records  # the default: manual
