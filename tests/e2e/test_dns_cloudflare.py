"""The cloudflare provider against a local fake of the Cloudflare v4 DNS API.

The fake (``tests.fakes.cloudflare``) keeps to the documented behaviour the provider relies on:
auth, the response envelope, pagination, the record forms and validation, refusals of identical
and unknown records, and rate limiting.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailstack.api.models import MailDomain, Secret
from mailstack.dns.errors import CredentialsError, ProviderError
from mailstack.dns.plan import plan_zone
from mailstack.dns.providers import build_provider
from mailstack.dns.providers.cloudflare import CloudflareProvider
from mailstack.dns.reconcile import cleanup_dns, plan_dns, reconcile_dns
from mailstack.dns.records import Record, desired_records
from mailstack.material.dkim import DkimKey
from tests.dns_inputs import maildomain, secret
from tests.fakes.cloudflare import TOKEN, FakeCloudflare, cloudflare_api, validate_record


@pytest.fixture
def fake() -> Iterator[tuple[FakeCloudflare, str]]:
    state = FakeCloudflare()
    with cloudflare_api(state) as url:
        yield state, url


DOMAIN: MailDomain = maildomain(
    {"cloudflare": {"apiTokenSecretRef": {"name": "cf"}}},
    dkim={"selector": "mail2026"},
    tls={"issuer": "acme", "acme": {"email": "hostmaster@example.net"}},
)
CREDS: dict[str, Secret] = {"cf": secret("cf", apiToken=TOKEN)}


def provider(url: str, token: str = TOKEN) -> CloudflareProvider:
    built = build_provider(DOMAIN, {"cf": secret("cf", apiToken=token)}, cloudflare_api_url=url)
    assert isinstance(built, CloudflareProvider)
    built.per_page = 5  # the smallest page the API allows: every read walks several pages
    return built


def test_first_apply_publishes_everything_then_nothing(
    fake: tuple[FakeCloudflare, str], keys: tuple[DkimKey, DkimKey]
) -> None:
    state, url = fake
    foreign = state.snapshot()
    statuses = reconcile_dns(DOMAIN, keys[0], CREDS, provider=provider(url))
    assert {s.state for s in statuses} == {"Published"}
    mx = [r for r in state.records.values() if r["type"] == "MX"]
    assert [(m["name"], m["content"], m["priority"]) for m in mx] == [
        ("example.com", "mail.example.com", 10)
    ]
    srv = next(r for r in state.records.values() if r["name"] == "_imaps._tcp.example.com")
    assert srv["data"] == {"priority": 0, "weight": 1, "port": 993, "target": "mail.example.com"}
    assert all(
        r.get("proxied") is False
        for r in state.records.values()
        if r["type"] == "A" and r["name"] == "mail.example.com"
    )
    dkim = next(r for r in state.records.values() if r["name"].startswith("mail2026._domainkey"))
    assert dkim["content"] == keys[0].dns_value()
    assert set(foreign) <= set(state.snapshot())

    before = len(state.requests)
    again = provider(url)
    reconcile_dns(DOMAIN, keys[0], CREDS, provider=again)
    assert again.writes == 0
    assert {method for method, _ in state.requests[before:]} == {"GET"}
    assert len(state.pages_served) >= 5, "the listing was read page by page"


def test_rate_limits_and_server_errors_are_retried(
    fake: tuple[FakeCloudflare, str], keys: tuple[DkimKey, DkimKey]
) -> None:
    state, url = fake
    state.throttle_every = 4
    state.fail_next_with = 502
    statuses = reconcile_dns(DOMAIN, keys[0], CREDS, provider=provider(url))
    assert {s.state for s in statuses} == {"Published"}
    assert state.throttled >= 5
    state.throttle_every = 0
    assert plan_dns(DOMAIN, keys[0], CREDS, provider=provider(url))[2].empty


def test_a_changed_dkim_key_is_one_put(
    fake: tuple[FakeCloudflare, str], keys: tuple[DkimKey, DkimKey]
) -> None:
    state, url = fake
    reconcile_dns(DOMAIN, keys[0], CREDS, provider=provider(url))
    before = len(state.requests)
    changed = provider(url)
    reconcile_dns(DOMAIN, keys[1], CREDS, provider=changed)
    writes = [r for r in state.requests[before:] if r[0] != "GET"]
    assert changed.writes == 1 and writes[0][0] == "PUT"


def test_conflict_and_cleanup_leave_others_alone(
    fake: tuple[FakeCloudflare, str], keys: tuple[DkimKey, DkimKey]
) -> None:
    state, url = fake
    state.add(
        {"type": "TXT", "name": "_dmarc.example.com", "content": "v=DMARC1; p=none", "ttl": 1}
    )
    foreign = state.snapshot()
    statuses = {
        (s.name, s.type): s.state
        for s in reconcile_dns(DOMAIN, keys[0], CREDS, provider=provider(url))
    }
    assert statuses[("_dmarc.example.com", "TXT")] == "Conflict"
    assert statuses[("example.com", "TXT")] == "Published"
    cleanup_dns(DOMAIN, CREDS, provider=provider(url))
    assert state.snapshot() == foreign


def test_bad_token_and_api_errors_are_reported(
    fake: tuple[FakeCloudflare, str], keys: tuple[DkimKey, DkimKey]
) -> None:
    state, url = fake
    with pytest.raises(CredentialsError, match="HTTP 403: 10000: Authentication error"):
        reconcile_dns(DOMAIN, keys[0], CREDS, provider=provider(url, token="stolen"))
    huge = Record("big.example.com", "TXT", 300, ("x" * 3000,), "too big for Cloudflare")
    cloudflare = provider(url)
    the_plan = plan_zone([huge], cloudflare.read([]), "mail/example-com")
    with pytest.raises(ProviderError, match=r"HTTP 400: 9100: Content for TXT record is invalid"):
        cloudflare.apply(the_plan.changes)
    assert not any(r["name"] == "big.example.com" for r in state.records.values())


def test_a_missing_zone_is_reported(
    fake: tuple[FakeCloudflare, str], keys: tuple[DkimKey, DkimKey]
) -> None:
    _, url = fake
    other = maildomain({"cloudflare": {"apiTokenSecretRef": {"name": "cf"}}}, domain="example.org")
    with pytest.raises(ProviderError, match=r"zone example\.org not found"):
        reconcile_dns(other, keys[0], CREDS, cloudflare_api_url=url)


def test_every_desired_type_round_trips_through_the_api_forms(
    keys: tuple[DkimKey, DkimKey],
) -> None:
    from mailstack.dns.providers.cloudflare import record_value, value_body

    for record in desired_records(DOMAIN, keys[0]):
        for value in record.values:
            stored, error = validate_record(value_body(record.name, record.type, 3600, value))
            assert error is None, (record, error)
            assert stored is not None
            assert record_value(stored) == value
