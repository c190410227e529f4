"""SPF evaluation (dns/spf.py) against fixture zones, and the outbound verdict (dns/outbound.py):
FCrDNS to the HELO name and SPF per address."""

from __future__ import annotations

import pytest

from mailstack.dns.lint import QueryError
from mailstack.dns.outbound import check_address, check_outbound
from mailstack.dns.spf import Lookup, check_host

V4, V6 = "81.2.69.142", "2a02:898:0:20::142"
PTR4 = "142.69.2.81.in-addr.arpa"
PTR6 = "2.4.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.0.0.0.8.9.8.0.2.0.a.2.ip6.arpa"

ZONE: dict[tuple[str, str], list[str]] = {
    ("example.com", "TXT"): ["v=spf1 ip4:81.2.69.142 ip6:2a02:898:0:20::/64 -all", "other"],
    ("example.com", "MX"): ["10 mail.example.com."],
    ("mail.example.com", "A"): ["81.2.69.10"],
    ("out.example.com", "A"): [V4],
    ("out.example.com", "AAAA"): [V6],
    (PTR4, "PTR"): ["out.example.com."],
    (PTR6, "PTR"): ["Other.Example.NET."],
    ("a.example", "TXT"): ["v=spf1 a:out.example.com/24 -all"],
    ("mx.example", "TXT"): ["v=spf1 mx:example.com/24 ~all"],
    ("inc.example", "TXT"): ["v=spf1 include:example.com ?all"],
    ("inc-none.example", "TXT"): ["v=spf1 include:nothing.example -all"],
    ("redir.example", "TXT"): ["v=spf1 redirect=example.com"],
    ("redir-none.example", "TXT"): ["v=spf1 redirect=nothing.example"],
    ("exists.example", "TXT"): ["v=spf1 exists:%{ir}.%{v}._spf.%{d} -all"],
    ("142.69.2.81.in-addr._spf.exists.example", "A"): ["127.0.0.2"],
    ("ptr.example", "TXT"): ["v=spf1 ptr:example.com -all"],
    ("two.example", "TXT"): ["v=spf1 -all", "v=spf1 +all"],
    ("bad.example", "TXT"): ["v=spf1 ip4:81.2.69.142 bogus -all"],
    ("neutral.example", "TXT"): ["v=spf1 ip4:192.0.2.1"],
    ("loop.example", "TXT"): ["v=spf1 include:loop.example -all"],
    ("voids.example", "TXT"): ["v=spf1 a:v1.example a:v2.example a:v3.example -all"],
    ("broken.example", "TXT"): ["v=spf1 include:servfail.example -all"],
}


def lookup(zone: dict[tuple[str, str], list[str]] = ZONE) -> Lookup:
    def answer(name: str, rtype: str) -> list[str]:
        if name == "servfail.example":
            raise QueryError("SERVFAIL")
        return list(zone.get((name, rtype), []))

    return answer


@pytest.mark.parametrize(
    ("address", "domain", "result"),
    [
        (V4, "example.com", "pass"),
        ("81.2.69.143", "example.com", "fail"),
        ("2a02:898:0:20::9", "example.com", "pass"),  # within the ip6 network
        ("2a02:898:0:21::9", "example.com", "fail"),
        ("81.2.69.1", "a.example", "pass"),  # a:out.example.com/24
        ("81.2.70.1", "a.example", "fail"),
        ("81.2.69.200", "mx.example", "pass"),  # mx/24 → mail.example.com 81.2.69.10
        ("81.2.70.1", "mx.example", "softfail"),
        (V4, "inc.example", "pass"),
        ("81.2.69.143", "inc.example", "neutral"),  # include fails: on to ?all
        (V4, "inc-none.example", "permerror"),
        (V4, "redir.example", "pass"),
        ("81.2.69.143", "redir.example", "fail"),
        (V4, "redir-none.example", "permerror"),
        (V4, "exists.example", "pass"),  # macros: %{ir}.%{v}._spf.%{d}
        ("81.2.69.143", "exists.example", "fail"),
        (V4, "ptr.example", "pass"),  # PTR out.example.com confirmed, under example.com
        (V6, "ptr.example", "fail"),  # PTR other.example.net
        (V4, "two.example", "permerror"),
        (V4, "bad.example", "pass"),  # matched before the bad term
        ("81.2.69.143", "bad.example", "permerror"),
        (V4, "neutral.example", "neutral"),
        (V4, "nothing.example", "none"),
        (V4, "loop.example", "permerror"),  # over 10 lookups
        (V4, "voids.example", "permerror"),  # 3 void lookups
        (V4, "broken.example", "temperror"),
    ],
)
def test_check_host(address: str, domain: str, result: str) -> None:
    verdict = check_host(address, domain, lookup())
    assert verdict.result == result, verdict.detail


def test_the_deciding_term_is_named() -> None:
    assert check_host("81.2.69.143", "example.com", lookup()).detail == (
        "-all in the SPF of example.com"
    )


def test_ten_lookups_pass_eleven_do_not() -> None:
    zone = dict(ZONE)
    for i in range(11):
        zone[(f"c{i}.example", "TXT")] = [f"v=spf1 include:c{i + 1}.example"]
    zone[("c11.example", "TXT")] = [f"v=spf1 ip4:{V4}"]
    assert check_host(V4, "c1.example", lookup(zone)).result == "pass"  # 10 includes
    assert check_host(V4, "c0.example", lookup(zone)).result == "permerror"  # 11


# --- FCrDNS and the verdict per address ----------------------------------------------------------


def test_an_address_with_fcrdns_and_spf_passes() -> None:
    check = check_address(V4, "out.example.com", "example.com", lookup())
    assert check.ok and check.fcrdns and check.spf == "pass"
    assert check.as_status() == {
        "address": V4,
        "ptr": ["out.example.com"],
        "fcrdns": True,
        "spf": "pass",
    }


def test_a_ptr_naming_another_host_fails_with_the_name() -> None:
    check = check_address(V6, "out.example.com", "example.com", lookup())
    assert (check.failed, check.fcrdns, check.spf) == ("ptr", False, "pass")
    assert check.problem == (
        f"{V6}: its PTR record names other.example.net, not the HELO name out.example.com"
    )


def test_a_helo_name_without_the_address_fails_forward() -> None:
    zone = {**ZONE, ("out.example.com", "A"): ["81.2.69.99"]}
    check = check_address(V4, "out.example.com", "example.com", lookup(zone))
    assert (check.failed, check.fcrdns) == ("forward", False)


def test_spf_not_passing_is_named() -> None:
    zone = {**ZONE, ("example.com", "TXT"): ["v=spf1 mx -all"]}
    check = check_address(V4, "out.example.com", "example.com", lookup(zone))
    assert (check.failed, check.fcrdns, check.spf) == ("spf", True, "fail")
    assert "the SPF of example.com gives fail" in check.problem


def test_no_ptr_and_failed_lookups() -> None:
    missing = check_address("81.2.69.7", "out.example.com", "example.com", lookup())
    assert missing.failed == "ptr" and "names no name" in missing.problem

    def failing(name: str, rtype: str) -> list[str]:
        raise QueryError("timed out")

    failed = check_address(V4, "out.example.com", "example.com", failing)
    assert (failed.failed, failed.spf) == ("lookup", "temperror")


def test_check_outbound_keeps_the_order() -> None:
    checks = check_outbound((V4, V6), "out.example.com", "example.com", lookup())
    assert [(c.address, c.ok) for c in checks] == [(V4, True), (V6, False)]
