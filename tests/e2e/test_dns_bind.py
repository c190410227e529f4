"""The rfc2136 provider against a real BIND 9 (named -g, TSIG, loopback, a free port).

Each test starts its own named with a zone that already holds records of other people (an apex
TXT, a web server, a note at the mail host's name) and checks them byte for byte afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstack.api.models import MailDomain, Secret
from mailstack.dns.check import Querier, check_records
from mailstack.dns.errors import CredentialsError, ProviderError
from mailstack.dns.providers import build_provider
from mailstack.dns.providers.rfc2136 import Rfc2136Provider
from mailstack.dns.reconcile import cleanup_dns, plan_dns, reconcile_dns
from mailstack.dns.records import desired_records, txt_value_from_text
from mailstack.material.dkim import DkimKey, generate_dkim_key
from tests.dns_inputs import maildomain, secret
from tests.e2e.dnsservers import Bind, bind_server, free_port

FOREIGN = """
@     IN TXT "google-site-verification=abc123"
www   IN A   192.0.2.80
mail  IN TXT "asset tag 42"
"""
FOREIGN_KEYS = {
    ("example.com", "TXT"),
    ("www.example.com", "A"),
    ("mail.example.com", "TXT"),
}


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    with bind_server(tmp_path / "named", "example.com", FOREIGN) as server:
        yield server


def domain_for(server: Bind, key_name: str | None = None, **spec: object) -> MailDomain:
    provider = {
        "rfc2136": {
            "server": "127.0.0.1",
            "port": server.port,
            "tsigKeyName": key_name or server.key_name,
            "tsigSecretRef": {"name": "dns-tsig"},
        }
    }
    spec.setdefault("dkim", {"selector": "mail2026"})
    spec.setdefault("tls", {"issuer": "acme", "acme": {"email": "hostmaster@example.net"}})
    return maildomain(provider, **spec)


def tsig(server: Bind, value: str | None = None) -> dict[str, Secret]:
    return {"dns-tsig": secret("dns-tsig", secret=value or server.secret)}


def assert_untouched(
    before: dict[tuple[str, str], tuple[int, list[str]]],
    after: dict[tuple[str, str], tuple[int, list[str]]],
) -> None:
    """Every record that was there is still there, unchanged (a TXT set at the apex or the mail
    host may gain our SPF value)."""
    for key, (ttl, values) in before.items():
        if key[1] == "SOA":
            continue
        assert after[key][0] == ttl, key
        if key in (("example.com", "TXT"), ("mail.example.com", "TXT")):
            assert set(values) <= set(after[key][1])
        else:
            assert after[key][1] == values, key


def test_first_apply_publishes_everything_and_the_second_writes_nothing(
    bind: Bind, keys: tuple[DkimKey, DkimKey]
) -> None:
    domain = domain_for(bind, dns={"tlsRpt": {"enabled": True}, "mtaSts": {"enabled": True}})
    before = bind.rrsets()
    statuses = reconcile_dns(domain, keys[0], tsig(bind))
    assert {s.state for s in statuses} == {"Published"}
    zone = bind.rrsets()
    records = desired_records(domain, keys[0])
    assert {r.type for r in records} >= {"MX", "A", "AAAA", "TXT", "SRV", "CAA"}
    for record in records:
        ttl, texts = zone[(record.name, record.type)]
        # a shared RRset (the apex TXT) keeps its TTL: it is not only ours
        assert ttl == (300 if record.value_prefix else record.ttl)
        if record.type == "TXT":
            values = [txt_value_from_text(t) for t in texts]
            assert sorted(v for v in values if record.owns_value(v)) == sorted(record.values)
        else:
            assert sorted(texts) == sorted(record.values), record
    dkim_text = zone[("mail2026._domainkey.example.com", "TXT")][1][0]
    assert dkim_text.count('" "') >= 1, "a 2048-bit key is published as several strings"
    assert_untouched(before, zone)
    assert txt_value_from_text(zone[("example.com", "TXT")][1][0]).startswith("google-site")

    serial = bind.serial()
    provider = build_provider(domain, tsig(bind))
    again = reconcile_dns(domain, keys[0], tsig(bind), provider=provider)
    assert {s.state for s in again} == {"Published"}
    assert provider.writes == 0
    assert bind.serial() == serial

    querier = Querier([("127.0.0.1", bind.port)])
    checked = check_records(records, querier, "example.com")
    assert [(r.name, r.type) for r in checked if not r.ok] == []


def test_a_changed_dkim_key_is_one_update(bind: Bind, keys: tuple[DkimKey, DkimKey]) -> None:
    domain = domain_for(bind)
    reconcile_dns(domain, keys[0], tsig(bind))
    provider, _, plan = plan_dns(domain, keys[1], tsig(bind))
    assert [(c.action, c.name) for c in plan.changes] == [
        ("update", "mail2026._domainkey.example.com")
    ]
    provider.apply(plan.changes)
    assert provider.writes == 1
    texts = bind.rrsets()[("mail2026._domainkey.example.com", "TXT")][1]
    assert [txt_value_from_text(t) for t in texts] == [keys[1].dns_value()]
    assert plan_dns(domain, keys[1], tsig(bind))[2].empty


def test_a_conflict_is_reported_and_left_alone(
    tmp_path: Path, keys: tuple[DkimKey, DkimKey]
) -> None:
    theirs = '_dmarc IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.net"\n'
    with bind_server(tmp_path / "named", "example.com", FOREIGN + theirs) as server:
        statuses = reconcile_dns(domain_for(server), keys[0], tsig(server))
        states = {(s.name, s.type): s for s in statuses}
        conflict = states[("_dmarc.example.com", "TXT")]
        assert conflict.state == "Conflict"
        assert "p=none" in conflict.message
        assert {s.state for k, s in states.items() if k != ("_dmarc.example.com", "TXT")} == {
            "Published"
        }
        zone = server.rrsets()
        assert zone[("_dmarc.example.com", "TXT")][1] == [
            '"v=DMARC1; p=none; rua=mailto:dmarc@example.net"'
        ]
        assert ("_mailstack-owner._dmarc.example.com", "TXT") not in zone


def test_cleanup_removes_exactly_our_records(bind: Bind, keys: tuple[DkimKey, DkimKey]) -> None:
    before = bind.rrsets()
    domain = domain_for(bind, dns={"tlsRpt": {"enabled": True}})
    reconcile_dns(domain, keys[0], tsig(bind))
    assert len(bind.rrsets()) > len(before) + 10
    done = cleanup_dns(domain, tsig(bind))
    assert done is not None and done.changes
    after = bind.rrsets()
    del before[("example.com", "SOA")], after[("example.com", "SOA")]
    assert after == before
    assert set(after) >= FOREIGN_KEYS


def test_bad_tsig_is_a_clear_error_and_changes_nothing(
    bind: Bind, keys: tuple[DkimKey, DkimKey]
) -> None:
    serial = bind.serial()
    wrong = "A" * 43 + "="
    with pytest.raises(CredentialsError, match=r"BADSIG.*wrong secret"):
        reconcile_dns(domain_for(bind), keys[0], tsig(bind, wrong))
    with pytest.raises(CredentialsError, match="does not know TSIG key intruder"):
        reconcile_dns(domain_for(bind, key_name="intruder"), keys[0], tsig(bind))
    # a provider that got past reading (say, the key was revoked in between) fails on update
    provider = build_provider(domain_for(bind), tsig(bind))
    _, _, plan = plan_dns(domain_for(bind), keys[0], tsig(bind), provider=provider)
    bad = Rfc2136Provider("example.com", "127.0.0.1", bind.port, bind.key_name, wrong)
    with pytest.raises(CredentialsError, match="BADSIG"):
        bad.apply(plan.changes)
    assert bind.serial() == serial


def test_unreachable_server_is_a_clear_error(keys: tuple[DkimKey, DkimKey]) -> None:
    provider = Rfc2136Provider("example.com", "127.0.0.1", free_port(), "k", "AAAA", timeout=1)
    with pytest.raises(ProviderError, match=r"cannot reach 127\.0\.0\.1:\d+"):
        reconcile_dns(maildomain(), keys[0], {}, provider=provider)


def test_a_zone_edited_between_read_and_apply_is_not_overwritten(
    bind: Bind, keys: tuple[DkimKey, DkimKey]
) -> None:
    domain = domain_for(bind)
    reconcile_dns(domain, keys[0], tsig(bind))
    provider, _, plan = plan_dns(domain, keys[1], tsig(bind))
    # someone else rotates the key meanwhile: the stale plan's prerequisite fails
    other = build_provider(domain, tsig(bind))
    _, _, their_plan = plan_dns(
        domain, generate_dkim_key("mail2026", "ed25519"), {}, provider=other
    )
    other.apply(their_plan.changes)
    with pytest.raises(ProviderError, match="changed since it was read"):
        provider.apply(plan.changes)


def test_without_zone_transfer_records_are_read_by_name(
    tmp_path: Path, keys: tuple[DkimKey, DkimKey]
) -> None:
    with bind_server(tmp_path / "named", "example.com", FOREIGN, allow_transfer=False) as server:
        sts = domain_for(server, dns={"mtaSts": {"enabled": True}})
        provider = build_provider(sts, tsig(server))
        reconcile_dns(sts, keys[0], tsig(server), provider=provider)
        assert isinstance(provider, Rfc2136Provider) and provider.transfer_refused
        again = build_provider(sts, tsig(server))
        reconcile_dns(sts, keys[0], tsig(server), provider=again)
        assert again.writes == 0
        plain = domain_for(server)
        reconcile_dns(plain, keys[0], tsig(server))
        cleanup_dns(plain, tsig(server))
        zone = server.rrsets()
        assert {k for k in zone if k[1] != "SOA"} == FOREIGN_KEYS | {
            ("example.com", "NS"),
            ("ns1.example.com", "A"),
        }
