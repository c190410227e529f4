"""The MTA-STS policy and its id (render/web/mta_sts.py), read by a strict RFC 8461 parser."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from mailstack.api.models import MailDomain
from mailstack.dns.records import desired_records
from mailstack.material.dkim import DkimKey, generate_dkim_key
from mailstack.render.web.mta_sts import mta_sts_id, mta_sts_policy, mx_hosts
from tests.dns_inputs import maildomain

# RFC 8461 §3.2's ABNF, line by line: "name:" *WSP value, then CRLF (or LF, which we do not
# write). Domain is RFC 5321's: labels of letters, digits and inner hyphens.
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
_FIELDS = {
    "version": re.compile(r"STSv1"),
    "mode": re.compile(r"testing|enforce|none"),
    "mx": re.compile(rf"(?:\*\.)?{_DOMAIN}"),
    "max_age": re.compile(r"[0-9]{1,10}"),
}
_LINE = re.compile(r"([A-Za-z0-9_.-]{1,32}):[ \t]*([\x21-\x7e]+)[ \t]*")


@dataclass(frozen=True)
class Policy:
    mode: str
    mx: tuple[str, ...]
    max_age: int


def parse_policy(text: str) -> Policy:
    """RFC 8461 §3.2, strictly: CRLF after every line, each known field in its syntax, version
    first, version/mode/max_age exactly once, mx at least once unless the mode is none,
    max_age at most 31557600."""
    assert text.endswith("\r\n"), "the last line ends in CRLF"
    lines = text[:-2].split("\r\n")
    assert not any("\n" in line or "\r" in line for line in lines), "bare CR or LF"
    fields: dict[str, list[str]] = {}
    for line in lines:
        match = _LINE.fullmatch(line)
        assert match, f"not a policy field: {line!r}"
        name, value = match.groups()
        if name in _FIELDS:
            assert _FIELDS[name].fullmatch(value), f"{name}: {value!r}"
        fields.setdefault(name, []).append(value)
    assert lines[0].startswith("version:"), "version comes first"
    for once in ("version", "mode", "max_age"):
        assert len(fields.get(once, [])) == 1, f"{once} exactly once"
    assert fields["mode"] == ["none"] or fields.get("mx"), "mx at least once"
    max_age = int(fields["max_age"][0])
    assert max_age <= 31557600
    return Policy(fields["mode"][0], tuple(fields.get("mx", ())), max_age)


@pytest.fixture(scope="module")
def dkim() -> DkimKey:
    return generate_dkim_key("mailstack", "rsa2048")


def sts(**fields: object) -> MailDomain:
    return maildomain(dns={"mtaSts": {"enabled": True, **fields}})


@pytest.mark.parametrize("mode", ["none", "testing", "enforce"])
def test_the_policy_parses_strictly_with_the_spec_values(mode: str) -> None:
    domain = sts(mode=mode, maxAge=86400)
    policy = parse_policy(mta_sts_policy(domain))
    assert policy == Policy(mode, ("mail.example.com",), 86400)


def test_the_policy_names_the_hosts_of_the_mx_record(dkim: DkimKey) -> None:
    domain = maildomain(hostname="mx1.example.com", dns={"mtaSts": {"enabled": True}})
    [mx] = [r for r in desired_records(domain, dkim) if r.type == "MX"]
    assert mx.values == tuple(f"10 {host}." for host in parse_policy(mta_sts_policy(domain)).mx)
    assert mx_hosts(domain) == ("mx1.example.com",)


def test_the_id_is_1_to_32_alphanumerics() -> None:
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", mta_sts_id(sts()))


def test_the_id_changes_exactly_with_the_policy() -> None:
    base = sts(mode="testing", maxAge=604800)
    same = [
        sts(mode="testing", maxAge=604800),
        maildomain(dns={"mtaSts": {"enabled": True}, "ttl": 60}, aliases={"x": ["a@example.net"]}),
        maildomain(dns={"mtaSts": {"enabled": True}, "tlsRpt": {"enabled": True}}),
    ]
    changed = [
        sts(mode="enforce"),
        sts(maxAge=86400),
        maildomain(hostname="mx.example.com", dns={"mtaSts": {"enabled": True}}),
    ]
    for domain in same:
        assert mta_sts_policy(domain) == mta_sts_policy(base)
        assert mta_sts_id(domain) == mta_sts_id(base)
    ids = {mta_sts_id(domain) for domain in changed}
    assert len(ids) == len(changed) and mta_sts_id(base) not in ids


def test_the_txt_record_carries_the_policy_id(dkim: DkimKey) -> None:
    for domain in (sts(), sts(mode="enforce")):
        [txt] = [r for r in desired_records(domain, dkim) if r.name == "_mta-sts.example.com"]
        assert txt.values == (f"v=STSv1; id={mta_sts_id(domain)}",)


def test_the_parser_refuses_what_the_rfc_does() -> None:
    good = mta_sts_policy(sts())
    for bad in (
        good.replace("\r\n", "\n"),  # our own output is CRLF; the parser is held to it
        good.replace("mode: testing", "mode: Testing"),
        good.replace("max_age: 604800", "max_age: 1e6"),
        good.replace("mx: mail.example.com", "mx: mail..example.com"),
        good.replace("version: STSv1\r\n", "") + "version: STSv1\r\n",
        good + "mode: enforce\r\n",
        good.rstrip("\n"),
    ):
        with pytest.raises(AssertionError):
            parse_policy(bad)
