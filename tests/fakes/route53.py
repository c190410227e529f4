"""A fake Amazon Route 53 for the route53 provider tests: the hosted zone and the service's rules.

``FakeRoute53`` holds a hosted zone and keeps the service's rules behind boto3's method signatures
(``get_hosted_zone``, ``list_resource_record_sets``, ``change_resource_record_sets``), raising
``ClientError`` as botocore does. ``tests.fakes.route53_server`` puts the same object behind the
REST API, so both the direct and the HTTP path meet the same rules.

Rules of the real service kept: names are absolute (returned with the trailing dot, special
characters as ``\\ddd`` octal); each TXT value is one or more quoted character-strings of at most
255 characters (``InvalidCharacterString`` / ``CharacterStringTooLong``); a change batch is
validated whole and applied atomically; CREATE of an existing set and DELETE of a set whose values
or TTL differ are refused (``InvalidChangeBatch``); at most 1000 records and 32000 characters of
values per request, UPSERT counting twice; listings are paged (``IsTruncated``, ``NextRecordName``,
``NextRecordType``, ``maxitems``) in Route 53's order, and ``type`` needs ``name``; ``Throttling``
happens.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

ZONE_ID = "Z0123456789ABCDEFGHIJ"
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


class ClientError(Exception):
    """What botocore raises: the error code and message in ``response``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"An error occurred ({code}): {message}")
        self.code = code
        self.message = message
        self.response = {"Error": {"Code": code, "Message": message}}


def _sort_key(item: tuple[str, str]) -> tuple[list[str], str]:
    return list(reversed(item[0].rstrip(".").split("."))), item[1]


def txt_strings(value: str) -> list[str]:
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
        return {
            "HostedZone": {
                "Id": f"/hostedzone/{Id}",
                "Name": "example.com.",
                "CallerReference": "mailstack-tests",
                "Config": {"PrivateZone": False},
                "ResourceRecordSetCount": len(self.sets),
            },
            "DelegationSet": {"NameServers": ["ns-1.awsdns-00.com"]},
        }

    def list_resource_record_sets(self, HostedZoneId: str, **kwargs: Any) -> dict[str, Any]:
        self._auth()
        assert set(kwargs) <= {
            "StartRecordName",
            "StartRecordType",
            "StartRecordIdentifier",
            "MaxItems",
        }
        if HostedZoneId != ZONE_ID:
            raise ClientError("NoSuchHostedZone", f"No hosted zone found with ID: {HostedZoneId}")
        if "StartRecordType" in kwargs and "StartRecordName" not in kwargs:
            raise ClientError("InvalidInput", "The input is not valid: type requires name")
        size = min(self.page_size, int(kwargs.get("MaxItems", self.page_size)))
        keys = sorted(self.sets, key=_sort_key)
        if "StartRecordName" in kwargs:
            start = (kwargs["StartRecordName"], kwargs.get("StartRecordType", ""))
            keys = [k for k in keys if _sort_key(k) >= _sort_key(start)]
        self.pages += 1
        page, rest = keys[:size], keys[size:]
        answer: dict[str, Any] = {
            "ResourceRecordSets": [self.sets[k] for k in page],
            "IsTruncated": bool(rest),
            "MaxItems": str(size),
        }
        if rest:
            answer["NextRecordName"], answer["NextRecordType"] = rest[0]
        return answer

    def _check_value(self, rtype: str, value: str) -> None:
        try:
            if rtype == "TXT":
                txt_strings(value)
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
        if HostedZoneId != ZONE_ID:
            raise ClientError("NoSuchHostedZone", f"No hosted zone found with ID: {HostedZoneId}")
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
        return {
            "ChangeInfo": {
                "Id": f"/change/C{len(self.batches)}",
                "Status": "PENDING",
                "SubmittedAt": "2026-01-01T00:00:00.000Z",
                "Comment": ChangeBatch.get("Comment", ""),
            }
        }
