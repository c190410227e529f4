"""The route53 provider against a fake boto3 Route 53 client that enforces the service's rules.

Rules of the real service kept by the fake: names are absolute (returned with the trailing dot,
special characters as ``\\ddd`` octal); each TXT value is one or more quoted character-strings
of at most 255 characters (``InvalidCharacterString`` / ``CharacterStringTooLong``); a change
batch is validated whole and applied atomically; CREATE of an existing set and DELETE of a set
whose values or TTL differ are refused (``InvalidChangeBatch``); at most 1000 records and 32000
characters of values per request, UPSERT counting twice; listings are paged (``IsTruncated``,
``NextRecordName``, ``NextRecordType``) in Route 53's order; ``Throttling`` happens.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest

from mailstack.dns.errors import CredentialsError, ProviderError
from mailstack.dns.plan import RRset
from mailstack.dns.providers import build_provider
from mailstack.dns.providers.route53 import Route53Provider, decode_name
from mailstack.dns.reconcile import cleanup_dns, plan_dns, reconcile_dns
from mailstack.dns.records import txt_value_from_text
from mailstack.material.dkim import DkimKey, generate_dkim_key
from tests.e2e.dnsservers import maildomain, secret

ZONE_ID = "Z0123456789ABCDEFGHIJ"
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


class ClientError(Exception):
    """What botocore raises: the error code and message in ``response``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"An error occurred ({code}): {message}")
        self.response = {"Error": {"Code": code, "Message": message}}


def _sort_key(item: tuple[str, str]) -> tuple[list[str], str]:
    return list(reversed(item[0].rstrip(".").split("."))), item[1]


def _strings(value: str) -> list[str]:
    """The character-strings of a TXT value, or raise as Route 53 does."""
    rest = value.strip()
    if not rest.startswith('"'):
        raise ClientError(
            "InvalidChangeBatch",
            f"[Invalid Resource Record: 'FATAL problem: InvalidCharacterString (Value should be "
            f"enclosed in quotation marks) encountered with '{value[:40]}'']",
        )
    found = []
    while rest:
        match = _QUOTED.match(rest)
        if not match:
            raise ClientError("InvalidChangeBatch", f"[Invalid Resource Record: {value[:40]}]")
        text = re.sub(r"\\(.)", r"\1", match.group(1))
        if len(text) > 255:
            raise ClientError(
                "InvalidChangeBatch",
                "[Invalid Resource Record: 'FATAL problem: CharacterStringTooLong (Value is too "
                f"long) encountered with '{value[:40]}'']",
            )
        found.append(text)
        rest = rest[match.end() :].lstrip()
    return found


class FakeRoute53:
    def __init__(self, page_size: int = 4, credentials_ok: bool = True) -> None:
        self.sets: dict[tuple[str, str], dict[str, Any]] = {}
        self.page_size = page_size
        self.credentials_ok = credentials_ok
        self.throttle_next = 0
        self.batches: list[list[dict[str, Any]]] = []
        self.pages = 0
        self._put("example.com.", "NS", 172800, ["ns-1.awsdns-00.com."])
        self._put("example.com.", "TXT", 300, ['"google-site-" "verification=abc123"'])
        self._put("www.example.com.", "A", 300, ["192.0.2.80"])
        self._put("mail.example.com.", "TXT", 300, ['"asset tag 42"'])
        self._put("\\052.example.com.", "A", 300, ["192.0.2.99"])

    def _put(self, name: str, rtype: str, ttl: int, values: list[str]) -> None:
        self.sets[(name, rtype)] = {
            "Name": name,
            "Type": rtype,
            "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in values],
        }

    def _auth(self) -> None:
        if not self.credentials_ok:
            raise ClientError(
                "InvalidClientTokenId", "The security token included in the request is invalid."
            )

    def get_hosted_zone(self, Id: str) -> dict[str, Any]:
        self._auth()
        if Id != ZONE_ID:
            raise ClientError("NoSuchHostedZone", f"No hosted zone found with ID: {Id}")
        return {"HostedZone": {"Id": f"/hostedzone/{Id}", "Name": "example.com."}}

    def list_resource_record_sets(self, HostedZoneId: str, **kwargs: Any) -> dict[str, Any]:
        self._auth()
        assert set(kwargs) <= {"StartRecordName", "StartRecordType", "MaxItems"}
        keys = sorted(self.sets, key=_sort_key)
        if "StartRecordName" in kwargs:
            start = (kwargs["StartRecordName"], kwargs.get("StartRecordType", ""))
            keys = [k for k in keys if _sort_key(k) >= _sort_key(start)]
        self.pages += 1
        page, rest = keys[: self.page_size], keys[self.page_size :]
        answer: dict[str, Any] = {
            "ResourceRecordSets": [self.sets[k] for k in page],
            "IsTruncated": bool(rest),
            "MaxItems": str(self.page_size),
        }
        if rest:
            answer["NextRecordName"], answer["NextRecordType"] = rest[0]
        return answer

    def _check_value(self, rtype: str, value: str) -> None:
        try:
            if rtype == "TXT":
                _strings(value)
            elif rtype == "A":
                ipaddress.IPv4Address(value)
            elif rtype == "AAAA":
                ipaddress.IPv6Address(value)
            elif rtype == "MX":
                priority, _host = value.split()
                int(priority)
            elif rtype == "SRV":
                *numbers, _target = value.split()
                assert len(numbers) == 3 and all(n.isdigit() for n in numbers)
            elif rtype == "CAA":
                flags, _tag, quoted = value.split(" ", 2)
                assert flags.isdigit() and quoted.startswith('"') and quoted.endswith('"')
        except (ValueError, AssertionError):
            raise ClientError(
                "InvalidChangeBatch", f"[Invalid Resource Record: 'FATAL problem: {value}']"
            ) from None

    def change_resource_record_sets(
        self, HostedZoneId: str, ChangeBatch: dict[str, Any]
    ) -> dict[str, Any]:
        self._auth()
        if self.throttle_next:
            self.throttle_next -= 1
            raise ClientError("Throttling", "Rate exceeded")
        changes = ChangeBatch["Changes"]
        records = chars = 0
        staged = dict(self.sets)
        seen: set[tuple[str, str]] = set()
        for change in changes:
            rrs = change["ResourceRecordSet"]
            name, rtype = rrs["Name"].lower(), rrs["Type"]
            if not name.endswith("."):
                name += "."
            key = (name, rtype)
            if key in seen:
                raise ClientError("InvalidChangeBatch", f"[Duplicate change for {key}]")
            seen.add(key)
            if not (name == "example.com." or name.endswith(".example.com.")):
                raise ClientError(
                    "InvalidChangeBatch",
                    f"[RRSet with DNS name {name} is not permitted in zone example.com.]",
                )
            values = [r["Value"] for r in rrs["ResourceRecords"]]
            weight = 2 if change["Action"] == "UPSERT" else 1
            records += len(values) * weight
            chars += sum(len(v) for v in values) * weight
            for value in values:
                self._check_value(rtype, value)
            label = f"[name='{name}', type='{rtype}']"
            if change["Action"] == "CREATE":
                if key in staged:
                    raise ClientError(
                        "InvalidChangeBatch",
                        f"[Tried to create resource record set {label} but it already exists]",
                    )
            elif change["Action"] == "DELETE":
                held = staged.get(key)
                if held is None:
                    raise ClientError(
                        "InvalidChangeBatch",
                        f"[Tried to delete resource record set {label} but it was not found]",
                    )
                if held["TTL"] != rrs["TTL"] or sorted(
                    r["Value"] for r in held["ResourceRecords"]
                ) != sorted(values):
                    raise ClientError(
                        "InvalidChangeBatch",
                        f"[Tried to delete resource record set {label} but the values provided "
                        "do not match the current values]",
                    )
                del staged[key]
                continue
            elif change["Action"] != "UPSERT":
                raise ClientError("InvalidInput", f"bad action {change['Action']}")
            staged[key] = {**rrs, "Name": name}
        if records > 1000 or chars > 32000:
            raise ClientError(
                "InvalidChangeBatch", "[Number of records or characters limit exceeded]"
            )
        self.sets = staged
        self.batches.append(changes)
        return {"ChangeInfo": {"Id": "/change/C1", "Status": "PENDING"}}


@pytest.fixture(scope="module")
def keys() -> tuple[DkimKey, DkimKey]:
    return generate_dkim_key("mail2026", "rsa2048"), generate_dkim_key("mail2026", "rsa2048")


DOMAIN = maildomain(
    {"route53": {"hostedZoneId": ZONE_ID, "credentialsSecretRef": {"name": "aws"}}},
    dkim={"selector": "mail2026"},
    tls={"issuer": "acme", "acme": {"email": "hostmaster@example.net"}},
)


def provider(fake: FakeRoute53, **kwargs: Any) -> Route53Provider:
    built = Route53Provider(ZONE_ID, fake, sleep=lambda _: None, **kwargs)
    assert built.zone == "example.com"
    return built


def test_the_fake_keeps_route53s_txt_rules() -> None:
    fake = FakeRoute53()
    for bad in ("v=spf1 -all", '"' + "x" * 256 + '"'):
        change = {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": "t.example.com.",
                "Type": "TXT",
                "TTL": 60,
                "ResourceRecords": [{"Value": bad}],
            },
        }
        with pytest.raises(ClientError):
            fake.change_resource_record_sets(ZONE_ID, {"Changes": [change]})
    assert ("t.example.com.", "TXT") not in fake.sets


def test_first_apply_then_nothing(keys: tuple[DkimKey, DkimKey]) -> None:
    fake = FakeRoute53()
    foreign = dict(fake.sets)
    statuses = reconcile_dns(DOMAIN, keys[0], {}, provider=provider(fake))
    assert {s.state for s in statuses} == {"Published"}
    assert fake.pages > 1, "the listing was paged"
    dkim = fake.sets[("mail2026._domainkey.example.com.", "TXT")]["ResourceRecords"][0]["Value"]
    strings = _strings(dkim)
    assert len(strings) > 1 and all(len(s) <= 255 for s in strings)
    assert "".join(strings) == keys[0].dns_value()
    apex = [r["Value"] for r in fake.sets[("example.com.", "TXT")]["ResourceRecords"]]
    assert apex == ['"google-site-" "verification=abc123"', '"v=spf1 mx -all"'], "theirs as it was"
    for key, rrset in foreign.items():
        if key != ("example.com.", "TXT"):
            assert fake.sets[key] == rrset
    assert decode_name("\\052.example.com.") == "*.example.com"

    again = provider(fake)
    reconcile_dns(DOMAIN, keys[0], {}, provider=again)
    assert again.writes == 0


def test_batches_stay_within_limits_and_keep_order(keys: tuple[DkimKey, DkimKey]) -> None:
    fake = FakeRoute53()
    small = provider(fake, max_changes=5)
    reconcile_dns(DOMAIN, keys[0], {}, provider=small)
    assert small.writes == len(fake.batches) > 3
    assert all(len(batch) <= 5 for batch in fake.batches)
    claims_first = [
        c["ResourceRecordSet"]["Name"].startswith("_mailstack-owner.")
        for b in fake.batches
        for c in b
    ]
    assert claims_first == sorted(claims_first, reverse=True), "every claim precedes every record"
    assert reconcile_dns(DOMAIN, keys[0], {}, provider=provider(fake))


def test_throttling_is_retried(keys: tuple[DkimKey, DkimKey]) -> None:
    fake = FakeRoute53()
    fake.throttle_next = 2
    statuses = reconcile_dns(DOMAIN, keys[0], {}, provider=provider(fake))
    assert {s.state for s in statuses} == {"Published"}
    fake.throttle_next = 9
    with pytest.raises(ProviderError, match="Throttling: Rate exceeded"):
        reconcile_dns(DOMAIN, keys[1], {}, provider=provider(fake, attempts=3))


def test_a_changed_key_is_one_upsert_and_cleanup_deletes_exactly(
    keys: tuple[DkimKey, DkimKey],
) -> None:
    fake = FakeRoute53()
    foreign = dict(fake.sets)
    reconcile_dns(DOMAIN, keys[0], {}, provider=provider(fake))
    changed, _, the_plan = plan_dns(DOMAIN, keys[1], {}, provider=provider(fake))
    changed.apply(the_plan.changes)
    assert [c["Action"] for c in fake.batches[-1]] == ["UPSERT"]
    cleanup_dns(DOMAIN, {}, provider=provider(fake))
    assert fake.sets == foreign


def test_a_conflict_is_left_alone(keys: tuple[DkimKey, DkimKey]) -> None:
    fake = FakeRoute53()
    fake._put("_dmarc.example.com.", "TXT", 300, ['"v=DMARC1; p=none"'])
    statuses = {
        (s.name, s.type): s.state
        for s in reconcile_dns(DOMAIN, keys[0], {}, provider=provider(fake))
    }
    assert statuses[("_dmarc.example.com", "TXT")] == "Conflict"
    assert fake.sets[("_dmarc.example.com.", "TXT")]["ResourceRecords"] == [
        {"Value": '"v=DMARC1; p=none"'}
    ]


def test_refused_credentials_and_missing_keys(keys: tuple[DkimKey, DkimKey]) -> None:
    with pytest.raises(CredentialsError, match="InvalidClientTokenId"):
        provider(FakeRoute53(credentials_ok=False))
    from mailstack.dns.errors import DnsConfigError

    with pytest.raises(DnsConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        build_provider(DOMAIN, {"aws": secret("aws", AWS_ACCESS_KEY_ID="AKIA")})
    built = build_provider(DOMAIN, {}, route53_client=FakeRoute53())
    assert isinstance(built, Route53Provider)


def test_values_read_back_canonical() -> None:
    fake = FakeRoute53()
    fake._put("example.com.", "MX", 300, ["10 Mail.Example.com"])
    state = provider(fake).read([])
    rrsets = {r.key: r for r in state.rrsets}
    assert rrsets[("example.com", "MX")] == RRset(
        "example.com", "MX", 300, ("10 mail.example.com.",)
    )
    assert rrsets[("example.com", "TXT")].values == ("google-site-verification=abc123",)
    assert txt_value_from_text('"a" "b"') == "ab"
