"""Verification of published records: SPF and DMARC checks, comparison (dns/check.py).

The comparison runs against a querier answering from a dict; the real network path (UDP/TCP to
BIND and PowerDNS) is covered by the e2e tests.
"""

from __future__ import annotations

import pytest

from mailstack.dns.check import CheckReport, Querier, check_records, discover, parse_server
from mailstack.dns.lint import QueryError, dkim_problems, dmarc_problems, spf_lookups, spf_problems
from mailstack.dns.records import Record


class DictQuerier(Querier):
    def __init__(self, answers: dict[tuple[str, str], list[str]], down: bool = False) -> None:
        super().__init__([("192.0.2.53", 53)])
        self.answers = answers
        self.down = down

    def values(self, name: str, rtype: str) -> list[str]:
        if self.down:
            raise QueryError("192.0.2.53:53: timed out")
        return list(self.answers.get((name, rtype), []))


def txt_lookup(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def lookup(name: str) -> list[str]:
        if name == "broken.example":
            raise QueryError("SERVFAIL")
        return table.get(name, [])

    return lookup


# -- SPF ------------------------------------------------------------------------------------------


def test_good_spf_has_no_problems() -> None:
    assert spf_problems(["v=spf1 mx -all", "google-site-verification=x"]) == []
    assert spf_problems(["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a:mail.example.com ~all"]) == []


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ([], "no SPF"),
        (["google-site-verification=x"], "no SPF"),
        (["v=spf1 mx -all", "v=spf1 -all"], "2 SPF records"),
        (["v=spf1 mx +all"], "every host"),
        (["v=spf1 mx all"], "every host"),
        (["v=spf1 ip4:300.1.1.1 -all"], "not an ip4"),
        (["v=spf1 ip6:192.0.2.1 -all"], "not an ip6"),
        (["v=spf1 mxx -all"], "unknown SPF term"),
        (["v=spf1 -all mx"], "after 'all'"),
        (["v=spf1 ptr -all"], "deprecated"),
        (["v=spf1 include: -all"], "needs a domain"),
        (["v=spf1 mx redirect=_spf.example.net -all"], "redirect"),
    ],
)
def test_spf_problems(values: list[str], needle: str) -> None:
    problems = spf_problems(values)
    assert any(needle in p for p in problems), problems


def test_spf_lookups_count_through_includes() -> None:
    table = {
        "a.example": ["v=spf1 include:b.example mx a -all"],
        "b.example": ["v=spf1 a mx exists:%{i}.x.example ~all"],
    }
    count, notes = spf_lookups("v=spf1 mx include:a.example -all", txt_lookup(table))
    assert (count, notes) == (1 + 1 + 3 + 3, [])
    eleven = "v=spf1 " + " ".join(f"include:i{n}.example" for n in range(11)) + " -all"
    table.update({f"i{n}.example": ["v=spf1 ip4:192.0.2.1 -all"] for n in range(11)})
    problems = spf_problems([eleven], txt_lookup(table))
    assert any("11 DNS-querying terms" in p for p in problems), problems
    ten = "v=spf1 " + " ".join(f"include:i{n}.example" for n in range(10)) + " -all"
    assert spf_problems([ten], txt_lookup(table)) == []


def test_spf_includes_that_fail_or_loop_are_reported() -> None:
    table = {"loop.example": ["v=spf1 include:loop.example -all"]}
    _, notes = spf_lookups("v=spf1 include:loop.example -all", txt_lookup(table))
    assert any("loop" in n for n in notes)
    _, notes = spf_lookups("v=spf1 include:broken.example -all", txt_lookup(table))
    assert notes == ["could not follow include broken.example: SERVFAIL"]
    _, notes = spf_lookups("v=spf1 include:none.example -all", txt_lookup(table))
    assert notes == ["include none.example: 0 SPF records there (permerror)"]


# -- DMARC / DKIM ---------------------------------------------------------------------------------


def test_good_dmarc_has_no_problems() -> None:
    good = "v=DMARC1; p=reject; sp=none; rua=mailto:d@example.com,mailto:e@example.net!10m; pct=50;"
    assert dmarc_problems([good, "unrelated"]) == []


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("v=DMARC1; p=block", "p=block"),
        ("v=DMARC1; rua=mailto:d@example.com", "no p= tag"),
        ("p=reject; v=DMARC1", "no DMARC"),
        ("v=DMARC1; p=none; pct=150", "pct=150"),
        ("v=DMARC1; p=none; adkim=x", "adkim=x"),
        ("v=DMARC1; p=none; rua=d@example.com", "not a mailto"),
        ("v=DMARC1; p=none; p=reject", "given twice"),
        ("v=DMARC1; p=none; foo=bar", "unknown tag foo"),
        ("v=DMARC1; p=none;; aspf=r", "empty tag"),
        ("v=DMARC1; p=none; ri=soon", "ri=soon"),
    ],
)
def test_dmarc_problems(value: str, needle: str) -> None:
    problems = dmarc_problems([value])
    assert any(needle in p for p in problems), problems


def test_two_dmarc_records_are_a_problem() -> None:
    assert "2 DMARC records" in dmarc_problems(["v=DMARC1; p=none", "v=DMARC1; p=reject"])[0]


def test_dkim_problems() -> None:
    assert dkim_problems(["v=DKIM1; k=ed25519; p=abc"]) == []
    assert dkim_problems(["v=DKIM1; k=rsa; p="]) == ["p= is empty: the key is revoked"]
    assert dkim_problems([]) == ["0 DKIM key records (expected one)"]


# -- comparing ------------------------------------------------------------------------------------

SPF = Record("example.com", "TXT", 300, ("v=spf1 mx -all",), "spf", "v=spf1")
MX = Record("example.com", "MX", 300, ("10 mail.example.com.",), "mx")
DMARC = Record("_dmarc.example.com", "TXT", 300, ("v=DMARC1; p=reject",), "dmarc")
A = Record("mail.example.com", "A", 300, ("192.0.2.10", "192.0.2.11"), "a")


def test_check_records_matching_missing_different() -> None:
    querier = DictQuerier(
        {
            ("example.com", "TXT"): ["google-site-verification=x", "v=spf1 mx -all"],
            ("example.com", "MX"): ["20 other.example.net."],
            ("mail.example.com", "A"): ["192.0.2.11", "192.0.2.10"],
        }
    )
    results = {
        (r.name, r.type): r for r in check_records([SPF, MX, DMARC, A], querier, "example.com")
    }
    assert results[("example.com", "TXT")].state == "matching"
    assert results[("example.com", "TXT")].found == ("v=spf1 mx -all",)
    assert results[("example.com", "TXT")].ok
    assert results[("example.com", "MX")].state == "different"
    assert results[("_dmarc.example.com", "TXT")].state == "missing"
    assert results[("_dmarc.example.com", "TXT")].problems == ("no DMARC (v=DMARC1) record",)
    assert results[("mail.example.com", "A")].state == "matching"
    report = CheckReport("example.com", querier.describe(), list(results.values()))
    assert not report.ok
    text = report.format()
    assert "!! different example.com. MX" in text and "have 20 other.example.net." in text
    assert "ok matching  example.com. TXT" in text
    assert "; 2 of 4 records right" in text


def test_a_matching_record_with_a_bad_neighbour_is_not_ok() -> None:
    querier = DictQuerier({("example.com", "TXT"): ["v=spf1 mx -all", "v=spf1 a -all"]})
    [result] = check_records([SPF], querier, "example.com")
    assert result.state == "different"  # two SPF values where one is wanted
    assert not result.ok and "2 SPF records" in result.problems[0]


def test_unreachable_server_is_an_error_per_record() -> None:
    results = check_records([SPF, MX], DictQuerier({}, down=True), "example.com")
    assert {r.state for r in results} == {"error"}
    assert results[0].problems == ("192.0.2.53:53: timed out",)


def test_discover_reports_what_is_there() -> None:
    querier = DictQuerier(
        {
            ("example.com", "MX"): ["10 mail.example.com."],
            ("mail.example.com", "A"): ["192.0.2.10"],
            ("example.com", "TXT"): ["v=spf1 mx -all"],
            ("sel._domainkey.example.com", "TXT"): ["v=DKIM1; k=rsa; p=AAAA"],
            ("_imaps._tcp.example.com", "SRV"): ["0 1 993 mail.example.com."],
        }
    )
    results = {(r.name, r.type): r for r in discover("example.com", querier, "sel")}
    assert results[("mail.example.com", "A")].state == "present"
    assert results[("sel._domainkey.example.com", "TXT")].ok
    assert results[("_dmarc.example.com", "TXT")].state == "missing"
    assert ("_mta-sts.example.com", "TXT") not in results  # optional and absent: not listed
    assert results[("_imaps._tcp.example.com", "SRV")].state == "present"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("192.0.2.53", ("192.0.2.53", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("2001:db8::53", ("2001:db8::53", 53)),
    ],
)
def test_parse_server(text: str, parsed: tuple[str, int]) -> None:
    assert parse_server(text) == parsed
