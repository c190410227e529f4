"""The desired record set of a MailDomain and the canonical value forms (dns/records.py)."""

from __future__ import annotations

import dns.rdatatype
import dns.zone
import pytest

from mailstack.dns.records import (
    Record,
    caa_issuer,
    canonical_value,
    desired_records,
    managed_names,
    rdata_value,
    render_zone,
    txt_strings,
    txt_value_from_text,
    txt_zone_text,
)
from mailstack.material.dkim import DkimKey, generate_dkim_key
from mailstack.render.web.mta_sts import mta_sts_id
from tests.dns_inputs import maildomain


@pytest.fixture(scope="module")
def dkim() -> DkimKey:
    return generate_dkim_key("mailstack", "rsa2048")


def by_key(records: list[Record]) -> dict[tuple[str, str], Record]:
    result = {(r.name, r.type): r for r in records}
    assert len(result) == len(records), "one record per (name, type)"
    return result


def test_the_full_set_for_a_default_domain(dkim: DkimKey) -> None:
    records = by_key(desired_records(maildomain(), dkim))
    assert set(records) == {
        ("example.com", "MX"),
        ("mail.example.com", "A"),
        ("mail.example.com", "AAAA"),
        ("example.com", "TXT"),
        ("mail.example.com", "TXT"),
        ("mailstack._domainkey.example.com", "TXT"),
        ("_dmarc.example.com", "TXT"),
        ("_submissions._tcp.example.com", "SRV"),
        ("_submission._tcp.example.com", "SRV"),
        ("_imaps._tcp.example.com", "SRV"),
        ("_imap._tcp.example.com", "SRV"),
        ("_pop3s._tcp.example.com", "SRV"),
        ("_pop3._tcp.example.com", "SRV"),
        ("_sieve._tcp.example.com", "SRV"),
    }
    assert records[("example.com", "MX")].values == ("10 mail.example.com.",)
    assert records[("mail.example.com", "A")].values == ("192.0.2.10",)
    assert records[("mail.example.com", "AAAA")].values == ("2001:db8::10",)
    spf = records[("example.com", "TXT")]
    assert spf.values == ("v=spf1 mx -all",)
    assert spf.value_prefix == "v=spf1"
    assert spf.owns_value("v=spf1 a -all") and not spf.owns_value("google-site-verification=x")
    helo = records[("mail.example.com", "TXT")]
    assert helo.values == ("v=spf1 a -all",), "the HELO name: its own addresses (RFC 7208 §2.3)"
    assert helo.value_prefix == "v=spf1" and not helo.owns_value("asset tag 42")
    assert records[("mailstack._domainkey.example.com", "TXT")].values == (dkim.dns_value(),)
    assert records[("_dmarc.example.com", "TXT")].values == (
        "v=DMARC1; p=quarantine; adkim=r; aspf=r",
    )
    assert records[("_submissions._tcp.example.com", "SRV")].values == (
        "0 1 465 mail.example.com.",
    )
    # implicit TLS preferred over STARTTLS, IMAP over POP3 (RFC 8314, RFC 6186)
    assert records[("_submission._tcp.example.com", "SRV")].values == (
        "10 1 587 mail.example.com.",
    )
    assert records[("_pop3._tcp.example.com", "SRV")].values == ("30 1 110 mail.example.com.",)
    # ManageSieve is off by default: "not offered" (RFC 2782's "." target), as for POP3 when off.
    assert records[("_sieve._tcp.example.com", "SRV")].values == ("0 0 0 .",)
    for record in records.values():
        assert record.reason, record
        assert record.ttl == 3600
        for value in record.values:
            assert canonical_value(record.type, value) == value, "desired values are canonical"


def test_managesieve_is_published_for_sieve_clients_when_enabled(dkim: DkimKey) -> None:
    records = by_key(desired_records(maildomain(protocols={"managesieve": True}), dkim))
    sieve = records[("_sieve._tcp.example.com", "SRV")]
    assert sieve.values == ("0 1 4190 mail.example.com.",)  # RFC 5804 §1.8
    assert "RFC 5804" in sieve.reason


def test_every_name_is_in_managed_names(dkim: DkimKey) -> None:
    domain = maildomain(
        dns={"mtaSts": {"enabled": True}, "tlsRpt": {"enabled": True}},
        tls={"issuer": "acme", "acme": {"email": "a@example.net"}},
    )
    names = set(managed_names(domain))
    assert {r.name for r in desired_records(domain, dkim)} <= names


def test_disabled_protocols_publish_the_not_offered_srv(dkim: DkimKey) -> None:
    domain = maildomain(protocols={"pop3": False, "submission": False})
    records = by_key(desired_records(domain, dkim))
    for label in ("_pop3._tcp", "_pop3s._tcp", "_submission._tcp"):
        record = records[(f"{label}.example.com", "SRV")]
        assert record.values == ("0 0 0 .",)
        assert "not offered" in record.reason
    assert records[("_imap._tcp.example.com", "SRV")].values == ("10 1 143 mail.example.com.",)


def test_dmarc_tls_rpt_and_spf_options(dkim: DkimKey) -> None:
    domain = maildomain(
        dns={
            "spf": {"policy": "~all", "includes": ["spf.relay.example.net"]},
            "dmarc": {
                "policy": "reject",
                "subdomainPolicy": "none",
                "rua": ["dmarc@example.com"],
                "pct": 50,
                "alignment": {"dkim": "strict"},
            },
            "tlsRpt": {"enabled": True},
        }
    )
    records = by_key(desired_records(domain, dkim))
    assert records[("example.com", "TXT")].values == (
        "v=spf1 mx include:spf.relay.example.net ~all",
    )
    assert records[("_dmarc.example.com", "TXT")].values == (
        "v=DMARC1; p=reject; sp=none; rua=mailto:dmarc@example.com; pct=50; adkim=s; aspf=r",
    )
    assert records[("_smtp._tls.example.com", "TXT")].values == (
        "v=TLSRPTv1; rua=mailto:postmaster@example.com",
    )
    assert ("_mta-sts.example.com", "TXT") not in records


def test_mta_sts_id_changes_exactly_with_the_policy(dkim: DkimKey) -> None:
    testing = maildomain(dns={"mtaSts": {"enabled": True}})
    again = maildomain(dns={"mtaSts": {"enabled": True}}, aliases={"x": ["a@example.net"]})
    enforce = maildomain(dns={"mtaSts": {"enabled": True, "mode": "enforce"}})
    assert mta_sts_id(testing) == mta_sts_id(again)
    assert mta_sts_id(testing) != mta_sts_id(enforce)
    record = by_key(desired_records(enforce, dkim))[("_mta-sts.example.com", "TXT")]
    assert record.values == (f"v=STSv1; id={mta_sts_id(enforce)}",)


@pytest.mark.parametrize(
    ("server", "issuer"),
    [
        ("https://acme-v02.api.letsencrypt.org/directory", "letsencrypt.org"),
        ("https://acme-staging-v02.api.letsencrypt.org/directory", "letsencrypt.org"),
        ("https://acme.zerossl.com/v2/DV90", "sectigo.com"),
        ("https://dv.acme-v02.api.pki.goog/directory", "pki.goog"),
        ("https://127.0.0.1:14000/dir", None),
        ("https://letsencrypt.org.evil.example/dir", None),
    ],
)
def test_caa_issuer_from_the_acme_server(server: str, issuer: str | None) -> None:
    assert caa_issuer(server) == issuer


def test_caa_at_the_hostname_only_with_a_known_acme_ca(dkim: DkimKey) -> None:
    acme = maildomain(tls={"issuer": "acme", "acme": {"email": "a@example.net"}})
    caa = by_key(desired_records(acme, dkim))[("mail.example.com", "CAA")]
    assert caa.values == ('0 issue "letsencrypt.org"',)
    unknown = maildomain(
        tls={"issuer": "acme", "acme": {"email": "a@example.net", "server": "https://ca.test/d"}}
    )
    assert all(r.type != "CAA" for r in desired_records(unknown, dkim))
    assert all(r.type != "CAA" for r in desired_records(maildomain(), dkim))
    at_apex = maildomain(
        hostname="example.com", tls={"issuer": "acme", "acme": {"email": "a@example.net"}}
    )
    assert all(r.type != "CAA" for r in desired_records(at_apex, dkim))


def test_service_addresses_only_without_spec_addresses(dkim: DkimKey) -> None:
    bare = maildomain(dns={"addresses": None})
    assert all(r.type not in ("A", "AAAA") for r in desired_records(bare, dkim))
    records = by_key(desired_records(bare, dkim, ["198.51.100.7", "2001:DB8:0::7"]))
    assert records[("mail.example.com", "A")].values == ("198.51.100.7",)
    assert records[("mail.example.com", "AAAA")].values == ("2001:db8::7",)
    assert "Service" in records[("mail.example.com", "A")].reason
    given = by_key(desired_records(maildomain(), dkim, ["198.51.100.7"]))
    assert given[("mail.example.com", "A")].values == ("192.0.2.10",)


def test_no_autoconfig_or_autodiscover_records(dkim: DkimKey) -> None:
    names = {r.name for r in desired_records(maildomain(), dkim)}
    assert not any(n.startswith(("autoconfig.", "autodiscover.")) for n in names)


@pytest.mark.parametrize("length", [0, 1, 254, 255, 256, 410, 800])
def test_txt_strings_are_at_most_255_bytes_and_join_back(length: int) -> None:
    value = "".join(chr(ord("a") + i % 26) for i in range(length))
    parts = txt_strings(value)
    assert all(len(p.encode()) <= 255 for p in parts)
    assert "".join(parts) == value
    assert txt_value_from_text(txt_zone_text(value)) == value


def test_txt_strings_never_split_a_utf8_character() -> None:
    value = "é" * 200  # 400 bytes
    parts = txt_strings(value)
    assert all(len(p.encode()) <= 255 for p in parts)
    assert "".join(parts) == value


def test_txt_zone_text_escapes_quotes_and_backslashes() -> None:
    value = 'say "hi" \\ bye'
    assert txt_zone_text(value) == '"say \\"hi\\" \\\\ bye"'
    assert txt_value_from_text(txt_zone_text(value)) == value


@pytest.mark.parametrize(
    ("rtype", "given", "canonical"),
    [
        ("A", " 192.0.2.1 ", "192.0.2.1"),
        ("AAAA", "2001:DB8:0:0::1", "2001:db8::1"),
        ("MX", "10 Mail.Example.COM.", "10 mail.example.com."),
        ("MX", "10 mail.example.com", "10 mail.example.com."),
        ("SRV", "0 1 993 MAIL.example.com", "0 1 993 mail.example.com."),
        ("SRV", "0 0 0 .", "0 0 0 ."),
        ("CNAME", "Mail.Example.com.", "mail.example.com."),
        ("CAA", '0 issue "letsencrypt.org"', '0 issue "letsencrypt.org"'),
        ("TXT", "v=spf1  mx -all", "v=spf1  mx -all"),
    ],
)
def test_canonical_value(rtype: str, given: str, canonical: str) -> None:
    assert canonical_value(rtype, given) == canonical


def test_canonical_value_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        canonical_value("MX", "mail.example.com")
    with pytest.raises(ValueError):
        canonical_value("A", "300.1.1.1")


def test_render_zone_parses_back_to_the_same_records(dkim: DkimKey) -> None:
    domain = maildomain(
        dns={"mtaSts": {"enabled": True}, "tlsRpt": {"enabled": True}},
        tls={"issuer": "acme", "acme": {"email": "a@example.net"}},
    )
    records = desired_records(domain, dkim)
    text = render_zone(records)
    zone = dns.zone.from_text(
        "@ 60 IN SOA ns. h. 1 1 1 1 1\n@ 60 IN NS ns.\n" + text,
        origin="example.com.",
        relativize=False,
        check_origin=False,
    )
    for record in records:
        rdataset = zone.find_rdataset(record.name + ".", dns.rdatatype.from_text(record.type))
        assert rdataset.ttl == record.ttl
        assert sorted(rdata_value(r) for r in rdataset) == sorted(record.values)
    dkim_line = next(line for line in text.splitlines() if "._domainkey." in line)
    assert dkim_line.count('"') >= 4, "the DKIM key is split into several strings"
    assert text.count("\n; ") + text.startswith("; ") == len(records), "one reason per record"
