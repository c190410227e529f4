"""The plan: diff, ownership claims, conflicts, safety threshold, idempotence (dns/plan.py).

Plans are applied to an in-memory zone (``MemoryProvider``) that, like RFC 2136 prerequisites,
refuses a change whose ``before`` is not what the zone holds; ``reconcile_dns``/``cleanup_dns``
are exercised on it too.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstack.dns.errors import UnsafePlanError
from mailstack.dns.ownership import Claim, marker_name
from mailstack.dns.plan import Plan, RRset, ZoneState, cleanup_plan, plan_zone
from mailstack.dns.plan_text import format_plan
from mailstack.dns.reconcile import cleanup_dns, reconcile_dns
from mailstack.dns.records import Record, desired_records
from mailstack.material.dkim import DkimKey, generate_dkim_key
from tests.dns_inputs import maildomain
from tests.fakes.memory_dns import MemoryProvider

OWNER = "mail/example-com"
ZONE = "example.com"
FOREIGN = (
    RRset("example.com", "NS", 300, ("ns1.example.com.",)),
    RRset("example.com", "TXT", 300, ("google-site-verification=abc",)),
    RRset("www.example.com", "A", 300, ("192.0.2.80",)),
    RRset("mail.example.com", "TXT", 300, ("some note",)),
)
SPF = Record(ZONE, "TXT", 3600, ("v=spf1 mx -all",), "spf", "v=spf1")
MX = Record(ZONE, "MX", 3600, ("10 mail.example.com.",), "mx")
A = Record("mail.example.com", "A", 3600, ("192.0.2.10",), "a")
DMARC = Record("_dmarc.example.com", "TXT", 3600, ("v=DMARC1; p=reject",), "dmarc")
DESIRED = [MX, A, SPF, DMARC]


def run(desired: list[Record], zone: MemoryProvider, owner: str = OWNER) -> Plan:
    the_plan = plan_zone(desired, zone.read([r.name for r in desired]), owner)
    zone.apply(the_plan.changes)
    return the_plan


def claims_at(zone: MemoryProvider, name: str) -> set[Claim]:
    rrset = zone.rrsets.get((marker_name(name), "TXT"))
    return {c for v in (rrset.values if rrset else ()) if (c := Claim.parse(v))}


def test_first_apply_creates_records_and_claims_then_nothing() -> None:
    zone = MemoryProvider(ZONE, FOREIGN)
    first = run(DESIRED, zone)
    assert {(c.name, c.type) for c in first.record_changes("create")} == {
        (ZONE, "MX"),
        ("mail.example.com", "A"),
        ("_dmarc.example.com", "TXT"),
    }
    # the apex TXT existed (foreign value): the SPF value is added to it, the other kept
    [spf] = first.record_changes("update")
    assert spf.added == ("v=spf1 mx -all",) and spf.removed == ()
    assert zone.rrsets[(ZONE, "TXT")].values == (
        "google-site-verification=abc",
        "v=spf1 mx -all",
    )
    assert claims_at(zone, ZONE) == {
        Claim(OWNER, "MX"),
        Claim(OWNER, "TXT", "v=spf1"),
    }
    assert claims_at(zone, "mail.example.com") == {Claim(OWNER, "A")}
    assert {s.state for s in first.statuses} == {"Pending"}
    assert {s.state for s in first.applied()} == {"Published"}
    second = plan_zone(DESIRED, zone.read([]), OWNER)
    assert second.empty
    assert {s.state for s in second.statuses} == {"Published"}
    for rrset in FOREIGN[2:]:
        assert zone.rrsets[rrset.key] == rrset


def test_claims_come_before_records_and_releases_after() -> None:
    zone = MemoryProvider(ZONE, FOREIGN)
    first = run(DESIRED, zone)
    markers = [i for i, c in enumerate(first.changes) if c.marker]
    records = [i for i, c in enumerate(first.changes) if not c.marker]
    assert max(markers) < min(records)
    gone = cleanup_plan(zone.read([]), OWNER)
    markers = [i for i, c in enumerate(gone.changes) if c.marker]
    records = [i for i, c in enumerate(gone.changes) if not c.marker]
    assert min(markers) > max(records)


def test_addresses_are_created_before_the_mx_pointing_at_them() -> None:
    first = plan_zone(DESIRED, ZoneState(ZONE, ()), OWNER)
    creates = [c.type for c in first.record_changes("create")]
    assert creates.index("A") < creates.index("MX")


def test_changed_value_is_one_update_without_claim_changes() -> None:
    zone = MemoryProvider(ZONE, FOREIGN)
    run(DESIRED, zone)
    new_dmarc = Record(DMARC.name, "TXT", 3600, ("v=DMARC1; p=none",), "dmarc")
    changed = run([MX, A, SPF, new_dmarc], zone)
    assert [(c.action, c.name, c.marker) for c in changed.changes] == [
        ("update", "_dmarc.example.com", False)
    ]
    assert changed.changes[0].removed == ("v=DMARC1; p=reject",)


def test_changed_spf_keeps_the_other_apex_values() -> None:
    zone = MemoryProvider(ZONE, FOREIGN)
    run(DESIRED, zone)
    spf2 = Record(ZONE, "TXT", 3600, ("v=spf1 mx ~all",), "spf", "v=spf1")
    run([MX, A, spf2, DMARC], zone)
    assert sorted(zone.rrsets[(ZONE, "TXT")].values) == [
        "google-site-verification=abc",
        "v=spf1 mx ~all",
    ]


def test_ttl_change_of_an_owned_record_is_an_update() -> None:
    zone = MemoryProvider(ZONE, FOREIGN)
    run(DESIRED, zone)
    longer = Record(A.name, "A", 7200, A.values, "a")
    changed = run([MX, longer, SPF, DMARC], zone)
    assert [(c.action, c.type) for c in changed.record_changes()] == [("update", "A")]
    assert zone.rrsets[(A.name, "A")].ttl == 7200
    # a shared RRset keeps its TTL: it is not only ours
    spf_ttl = Record(ZONE, "TXT", 60, SPF.values, "spf", "v=spf1")
    assert plan_zone([MX, longer, spf_ttl, DMARC], zone.read([]), OWNER).empty


def test_records_no_longer_desired_are_deleted_with_their_claims() -> None:
    zone = MemoryProvider(ZONE, FOREIGN)
    run(DESIRED, zone)
    smaller = run([MX, SPF], zone)
    assert {(c.action, c.name, c.type) for c in smaller.record_changes()} == {
        ("delete", "mail.example.com", "A"),
        ("delete", "_dmarc.example.com", "TXT"),
    }
    assert (A.name, "A") not in zone.rrsets
    assert zone.rrsets[("mail.example.com", "TXT")] == FOREIGN[3]
    assert claims_at(zone, "mail.example.com") == set()
    assert (marker_name("_dmarc.example.com"), "TXT") not in zone.rrsets


def test_cleanup_removes_exactly_what_is_claimed() -> None:
    zone = MemoryProvider(ZONE, FOREIGN)
    run(DESIRED, zone)
    gone = cleanup_plan(zone.read([]), OWNER)
    zone.apply(gone.changes)
    assert sorted(zone.rrsets.values()) == sorted(FOREIGN)
    assert plan_zone(DESIRED, zone.read([]), OWNER).record_changes("create")


def test_foreign_identical_record_is_published_unclaimed_and_survives_cleanup() -> None:
    mine_by_hand = RRset(DMARC.name, "TXT", 300, DMARC.values)
    zone = MemoryProvider(ZONE, (*FOREIGN, mine_by_hand))
    first = run(DESIRED, zone)
    status = next(s for s in first.statuses if s.name == DMARC.name)
    assert status.state == "Published" and "not written by mailstack" in status.message
    assert claims_at(zone, DMARC.name) == set()
    zone.apply(cleanup_plan(zone.read([]), OWNER).changes)
    assert zone.rrsets[mine_by_hand.key] == mine_by_hand


def test_foreign_different_record_is_a_conflict_and_untouched() -> None:
    theirs = RRset(DMARC.name, "TXT", 300, ("v=DMARC1; p=none; rua=mailto:x@example.net",))
    zone = MemoryProvider(ZONE, (*FOREIGN, theirs))
    first = run(DESIRED, zone)
    [conflict] = first.conflicts
    assert (conflict.name, conflict.type) == (DMARC.name, "TXT")
    assert "p=none" in conflict.message
    assert zone.rrsets[theirs.key] == theirs
    assert claims_at(zone, DMARC.name) == set()
    assert all(c.name != DMARC.name for c in first.changes)
    assert "! conflict" in format_plan(first)


def test_foreign_spf_value_is_a_conflict_other_apex_txt_irrelevant() -> None:
    apex = RRset(ZONE, "TXT", 300, ("google-site-verification=abc", "v=spf1 a -all"))
    zone = MemoryProvider(ZONE, (FOREIGN[0], apex))
    first = run(DESIRED, zone)
    assert [(s.name, s.type) for s in first.conflicts] == [(ZONE, "TXT")]
    assert zone.rrsets[apex.key] == apex
    assert Claim(OWNER, "TXT", "v=spf1") not in claims_at(zone, ZONE)


def test_another_owners_claim_is_a_conflict() -> None:
    zone = MemoryProvider(ZONE, FOREIGN)
    run(DESIRED, zone, owner="other/example-com")
    before = dict(zone.rrsets)
    second = run(DESIRED, zone)
    assert {(s.name, s.type) for s in second.conflicts} == {(r.name, r.type) for r in DESIRED}
    assert all("other/example-com" in s.message for s in second.conflicts)
    assert zone.rrsets == before
    # and cleaning up one owner never touches the other's records
    zone.apply(cleanup_plan(zone.read([]), OWNER).changes)
    assert zone.rrsets == before


def test_a_foreign_cname_blocks_the_name() -> None:
    cname = RRset(A.name, "CNAME", 300, ("elsewhere.example.net.",))
    first = plan_zone([A], ZoneState(ZONE, (cname,)), OWNER)
    assert first.empty
    assert first.conflicts[0].message.startswith("a CNAME to elsewhere.example.net.")


def test_out_of_zone_and_unsupported_records_are_manual() -> None:
    outside = Record("mail.example.net", "A", 3600, ("192.0.2.1",), "a")
    caa = Record(A.name, "CAA", 3600, ('0 issue "letsencrypt.org"',), "caa")
    result = plan_zone([outside, caa, MX], ZoneState(ZONE, ()), OWNER, supports={"MX", "TXT"})
    states = {(s.name, s.type): (s.state, s.message) for s in result.statuses}
    assert states[("mail.example.net", "A")][0] == "Manual"
    assert "outside zone example.com" in states[("mail.example.net", "A")][1]
    assert states[(A.name, "CAA")] == (
        "Manual",
        "the provider cannot publish CAA records",
    )
    assert [c.type for c in result.record_changes()] == ["MX"]


def test_claims_parse_and_ignore_other_txt() -> None:
    claim = Claim(OWNER, "TXT", "v=spf1")
    assert claim.text() == "heritage=mailstack,owner=mail/example-com,type=TXT,prefix=v=spf1"
    assert Claim.parse(claim.text()) == claim
    assert Claim.parse("heritage=external-dns,external-dns/owner=default") is None
    assert Claim.parse("heritage=mailstack,owner=x") is None
    assert Claim.parse("v=spf1 -all") is None


def _zone_of(size: int) -> tuple[RRset, ...]:
    return tuple(RRset(f"h{i}.example.com", "A", 300, (f"192.0.2.{i}",)) for i in range(size))


def test_safety_threshold_refuses_large_deletions_of_large_zones() -> None:
    zone = MemoryProvider(ZONE, _zone_of(8))
    many = [Record(f"m{i}.example.com", "A", 300, (f"198.51.100.{i}",), "x") for i in range(8)]
    run(many, zone)
    shrink = plan_zone(many[:3], zone.read([]), OWNER)
    assert shrink.deleted_values == 5
    assert shrink.zone_records == 16
    refusal = shrink.refusal()
    assert refusal is not None and "5 of the 16 records" in refusal and "--force" in refusal
    assert plan_zone(many[:6], zone.read([]), OWNER).refusal() is None  # 2 of 16
    small = MemoryProvider(ZONE)
    run(many[:4], small)
    assert plan_zone([], small.read([]), OWNER).refusal() is None  # 4 records: below the minimum


def test_reconcile_refuses_unsafe_plans_unless_forced(dkim: DkimKey) -> None:
    zone = MemoryProvider(ZONE, FOREIGN)
    many = [Record(f"m{i}.example.com", "A", 300, (f"198.51.100.{i}",), "x") for i in range(10)]
    run(many, zone)  # ten records of ours that the MailDomain does not want
    before = dict(zone.rrsets)
    with pytest.raises(UnsafePlanError, match="10 of the 14 records"):
        reconcile_dns(maildomain(), dkim, {}, provider=zone)
    assert zone.rrsets == before
    statuses = reconcile_dns(maildomain(), dkim, {}, provider=zone, force=True)
    assert {s.state for s in statuses} == {"Published"}
    assert not any(name[0] == "m" and name[1].isdigit() for name, _ in zone.rrsets)


@pytest.fixture(scope="module")
def dkim() -> DkimKey:
    return generate_dkim_key("mailstack", "ed25519")


def test_reconcile_and_cleanup_on_a_zone(dkim: DkimKey) -> None:
    domain = maildomain(tls={"issuer": "acme", "acme": {"email": "a@example.net"}})
    zone = MemoryProvider(ZONE, FOREIGN)
    statuses = reconcile_dns(domain, dkim, {}, provider=zone)
    assert {s.state for s in statuses} == {"Published"}
    assert len(statuses) == len(desired_records(domain, dkim))
    writes = zone.writes
    assert {s.state for s in reconcile_dns(domain, dkim, {}, provider=zone)} == {"Published"}
    assert zone.writes == writes, "second reconcile writes nothing"
    done = cleanup_dns(domain, {}, provider=zone)
    assert done is not None and done.changes
    assert sorted(zone.rrsets.values()) == sorted(FOREIGN)


def test_reconcile_reads_only_names_when_the_zone_cannot_be_listed(dkim: DkimKey) -> None:
    domain = maildomain(dns={"mtaSts": {"enabled": True}})
    zone = MemoryProvider(ZONE, FOREIGN, complete=False)
    reconcile_dns(domain, dkim, {}, provider=zone)
    off = maildomain()
    reconcile_dns(off, dkim, {}, provider=zone)
    assert ("_mta-sts.example.com", "TXT") not in zone.rrsets, "found and deleted by name"
    cleanup_dns(off, {}, provider=zone)
    assert sorted(zone.rrsets.values()) == sorted(FOREIGN)


def test_manual_and_external_dns_write_nothing(dkim: DkimKey) -> None:
    manual = reconcile_dns(maildomain(), dkim, {})
    assert {s.state for s in manual} == {"Manual"}
    external = reconcile_dns(maildomain(provider={"externalDNS": {}}), dkim, {})
    assert {s.state for s in external} == {"Pending"}
    assert cleanup_dns(maildomain(), {}) is None


# -- property: any desired set over any foreign zone ----------------------------------------------

_names = st.sampled_from(["example.com", "mail.example.com", "_dmarc.example.com", "x.example.com"])
_values = st.lists(st.sampled_from(["a", "b", "v=spf1 mx -all", "v=spf1 -all"]), min_size=1)


@st.composite
def _rrsets(draw: st.DrawFn) -> list[RRset]:
    keys = draw(st.sets(st.tuples(_names, st.sampled_from(["TXT", "A"])), max_size=4))
    result = []
    for name, rtype in sorted(keys):
        if rtype == "A":
            values = tuple(draw(st.sets(st.sampled_from(["192.0.2.1", "192.0.2.2"]), min_size=1)))
        else:
            values = tuple(dict.fromkeys(draw(_values)))
        result.append(RRset(name, rtype, 300, values))
    return result


@st.composite
def _desired(draw: st.DrawFn) -> list[Record]:
    result = []
    for rrset in draw(_rrsets()):
        if rrset.type == "TXT" and rrset.name == "example.com":
            spf = draw(st.sampled_from(["v=spf1 mx -all", "v=spf1 -all"]))
            result.append(Record(rrset.name, "TXT", 300, (spf,), "spf", "v=spf1"))
        else:
            result.append(Record(rrset.name, rrset.type, 300, rrset.values, "r"))
    return result


@settings(max_examples=150, deadline=None)
@given(foreign=_rrsets(), first=_desired(), second=_desired())
def test_property_idempotent_and_never_touching_foreign_records(
    foreign: list[RRset], first: list[Record], second: list[Record]
) -> None:
    zone = MemoryProvider(ZONE, foreign)
    original = {r.key: r for r in foreign}
    for desired in (first, second):
        result = run(desired, zone)
        again = plan_zone(desired, zone.read([]), OWNER)
        assert again.empty, format_plan(again)
        conflicts = {(s.name, s.type) for s in result.conflicts}
        for record in desired:
            if (record.name, record.type) in conflicts:
                continue
            held = zone.rrsets[(record.name, record.type)]
            assert sorted(v for v in held.values if record.owns_value(v)) == sorted(record.values)
    # foreign records are never changed, at most joined by our SPF value
    for key, rrset in original.items():
        held = zone.rrsets[key]
        assert set(rrset.values) <= set(held.values)
        assert held == rrset or key == ("example.com", "TXT")
    zone.apply(cleanup_plan(zone.read([]), OWNER).changes)
    assert {r.key: r for r in zone.rrsets.values()} == original


def test_status_entries_carry_what_the_resource_status_shows() -> None:
    [status] = plan_zone([DMARC], ZoneState(ZONE, ()), OWNER).statuses
    assert status.to_dict() == {
        "name": "_dmarc.example.com",
        "type": "TXT",
        "ttl": 3600,
        "values": ["v=DMARC1; p=reject"],
        "state": "Pending",
        "reason": "dmarc",
    }
    conflict = plan_zone([DMARC], ZoneState(ZONE, (RRset(DMARC.name, "TXT", 60, ("x",)),)), OWNER)
    assert conflict.statuses[0].to_dict()["message"] == "held by records mailstack did not write: x"
