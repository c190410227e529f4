"""The powerdns provider against a real PowerDNS (pdns_server, SQLite backend, HTTP API).

One server for the module; every test gets a fresh example.com zone that already holds records of
others (an apex TXT with a disabled value, a web server, a note at the mail host's name).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailstack.api.models import MailDomain, Secret
from mailstack.dns.check import Querier, check_records
from mailstack.dns.errors import CredentialsError, ProviderError
from mailstack.dns.providers import build_provider
from mailstack.dns.reconcile import cleanup_dns, plan_dns, reconcile_dns
from mailstack.dns.records import desired_records, txt_value_from_text
from mailstack.material.dkim import DkimKey
from tests.dns_inputs import maildomain, secret
from tests.e2e.dnsservers import PowerDns, powerdns_server

ZONE = "example.com"
FOREIGN: list[dict[str, Any]] = [
    {
        "name": "example.com.",
        "type": "TXT",
        "ttl": 300,
        "records": [
            {"content": '"google-site-verification=abc123"', "disabled": False},
            {"content": '"old-verification=zzz"', "disabled": True},
        ],
    },
    {
        "name": "www.example.com.",
        "type": "A",
        "ttl": 300,
        "records": [{"content": "192.0.2.80", "disabled": False}],
    },
    {
        "name": "mail.example.com.",
        "type": "TXT",
        "ttl": 300,
        "records": [{"content": '"asset tag 42"', "disabled": False}],
    },
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PowerDns]:
    with powerdns_server(tmp_path_factory.mktemp("pdns")) as running:
        yield running


@pytest.fixture
def pdns(server: PowerDns) -> Iterator[PowerDns]:
    server.create_zone(ZONE, FOREIGN)
    yield server
    status, body = server.api("DELETE", f"/api/v1/servers/localhost/zones/{ZONE}.")
    assert status == 204, body


def domain_for(server: PowerDns, **spec: Any) -> MailDomain:
    spec.setdefault("dkim", {"selector": "mail2026"})
    spec.setdefault("tls", {"issuer": "acme", "acme": {"email": "hostmaster@example.net"}})
    provider = {"powerdns": {"apiUrl": server.api_url, "apiKeySecretRef": {"name": "pdns"}}}
    return maildomain(provider, **spec)


def creds(server: PowerDns, key: str | None = None) -> dict[str, Secret]:
    return {"pdns": secret("pdns", apiKey=key or server.api_key)}


def raw_zone(server: PowerDns) -> dict[tuple[str, str], list[dict[str, Any]]]:
    status, body = server.api("GET", f"/api/v1/servers/localhost/zones/{ZONE}.")
    assert status == 200, body
    return {(r["name"], r["type"]): r["records"] for r in body["rrsets"]}


def assert_foreign_intact(server: PowerDns) -> None:
    zone = raw_zone(server)
    apex = zone[("example.com.", "TXT")]
    for record in FOREIGN[0]["records"]:
        assert record in apex
    for rrset in FOREIGN[1:]:
        held = zone[(rrset["name"], rrset["type"])]
        if rrset["type"] == "TXT":  # may share its set with our SPF value (the HELO name)
            assert all(record in held for record in rrset["records"])
        else:
            assert held == rrset["records"]


def test_first_apply_publishes_everything_and_the_second_writes_nothing(
    pdns: PowerDns, keys: tuple[DkimKey, DkimKey]
) -> None:
    domain = domain_for(pdns, dns={"tlsRpt": {"enabled": True}})
    statuses = reconcile_dns(domain, keys[0], creds(pdns))
    assert {s.state for s in statuses} == {"Published"}
    zone = pdns.rrsets(ZONE)
    records = desired_records(domain, keys[0])
    for record in records:
        _, contents = zone[(record.name, record.type)]
        if record.type == "TXT":
            values = [txt_value_from_text(c) for c in contents]
            assert sorted(v for v in values if record.owns_value(v)) == sorted(record.values)
        else:
            assert sorted(contents) == sorted(record.values)
    dkim = zone[("mail2026._domainkey.example.com", "TXT")][1][0]
    assert dkim.startswith('"v=DKIM1; k=rsa; p=') and '" "' in dkim, "quoted, ≤255-byte strings"
    assert_foreign_intact(pdns)

    provider = build_provider(domain, creds(pdns))
    reconcile_dns(domain, keys[0], creds(pdns), provider=provider)
    assert provider.writes == 0

    # what the PowerDNS name server answers (UDP/TCP), compared record by record
    checked = check_records(records, Querier([("127.0.0.1", pdns.dns_port)]), ZONE)
    assert [(r.name, r.type, r.state) for r in checked if not r.ok] == []


def test_a_changed_dkim_key_is_one_rrset_in_one_patch(
    pdns: PowerDns, keys: tuple[DkimKey, DkimKey]
) -> None:
    domain = domain_for(pdns)
    reconcile_dns(domain, keys[0], creds(pdns))
    before = raw_zone(pdns)
    provider, _, plan = plan_dns(domain, keys[1], creds(pdns))
    assert [c.name for c in plan.changes] == ["mail2026._domainkey.example.com"]
    provider.apply(plan.changes)
    assert provider.writes == 1
    after = raw_zone(pdns)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {("mail2026._domainkey.example.com.", "TXT"), ("example.com.", "SOA")}
    texts = pdns.rrsets(ZONE)[("mail2026._domainkey.example.com", "TXT")][1]
    assert [txt_value_from_text(t) for t in texts] == [keys[1].dns_value()]


def test_a_conflict_is_reported_and_left_alone(
    pdns: PowerDns, keys: tuple[DkimKey, DkimKey]
) -> None:
    theirs = {
        "name": "_dmarc.example.com.",
        "type": "TXT",
        "ttl": 300,
        "changetype": "REPLACE",
        "records": [{"content": '"v=DMARC1; p=none"', "disabled": False}],
    }
    status, body = pdns.api(
        "PATCH", f"/api/v1/servers/localhost/zones/{ZONE}.", {"rrsets": [theirs]}
    )
    assert status == 204, body
    statuses = {(s.name, s.type): s for s in reconcile_dns(domain_for(pdns), keys[0], creds(pdns))}
    assert statuses[("_dmarc.example.com", "TXT")].state == "Conflict"
    assert statuses[("example.com", "MX")].state == "Published"
    assert raw_zone(pdns)[("_dmarc.example.com.", "TXT")] == theirs["records"]


def test_cleanup_removes_exactly_our_records(pdns: PowerDns, keys: tuple[DkimKey, DkimKey]) -> None:
    before = raw_zone(pdns)
    domain = domain_for(pdns)
    reconcile_dns(domain, keys[0], creds(pdns))
    assert len(raw_zone(pdns)) > len(before) + 10
    cleanup_dns(domain, creds(pdns))
    after = raw_zone(pdns)
    del before[("example.com.", "SOA")], after[("example.com.", "SOA")]
    assert after == before, "the disabled foreign apex value survives too"


def test_bad_api_key_and_missing_zone_are_clear_errors(
    server: PowerDns, keys: tuple[DkimKey, DkimKey]
) -> None:
    with pytest.raises(CredentialsError, match="HTTP 401"):
        reconcile_dns(domain_for(server), keys[0], creds(server, "wrong"))
    with pytest.raises(ProviderError, match=r"zone example\.com does not exist"):
        reconcile_dns(domain_for(server), keys[0], creds(server))


def test_a_missing_secret_key_names_the_secret(
    server: PowerDns, keys: tuple[DkimKey, DkimKey]
) -> None:
    from mailstack.dns.errors import DnsConfigError

    with pytest.raises(DnsConfigError, match=r"Secret mail/pdns has no key 'apiKey'"):
        reconcile_dns(domain_for(server), keys[0], {"pdns": secret("pdns", token="x")})
    with pytest.raises(DnsConfigError, match=r"the powerdns credentials: Secret pdns not found"):
        reconcile_dns(domain_for(server), keys[0], {})


def test_an_unreachable_api_is_retried_then_reported(
    keys: tuple[DkimKey, DkimKey], tmp_path: Path
) -> None:
    from mailstack.dns.providers.http import JsonApi
    from mailstack.dns.providers.powerdns import PowerDnsProvider
    from tests.e2e.dnsservers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    waits: list[float] = []
    api = JsonApi(url, {}, f"PowerDNS at {url}", str, attempts=3, sleep=waits.append)
    provider = PowerDnsProvider(ZONE, url, "k", api=api)
    with pytest.raises(ProviderError, match=r"cannot reach .*after 3 attempts"):
        reconcile_dns(maildomain(), keys[0], {}, provider=provider)
    assert waits == [0.5, 1.0]
