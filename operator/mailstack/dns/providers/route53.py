"""Amazon Route 53 through boto3's ``route53`` client (``ChangeResourceRecordSets``).

Owns: listing a hosted zone (``ListResourceRecordSets``, following ``NextRecordName`` /
``NextRecordType`` while ``IsTruncated``) and applying a plan in change batches. A batch is atomic
in Route 53; batches stay below its limits (1000 ResourceRecord elements and 32000 characters of
values per request, an UPSERT counting twice) and keep the plan's order, so claims precede the
records they cover. Creates are ``CREATE``, deletes ``DELETE`` with exactly the values and TTL read
(Route 53 refuses anything else), updates ``UPSERT`` of the whole RRset, with the values that are
not ours sent back exactly as read.

TXT values are quoted character-strings of at most 255 characters each (``"v=DKIM1; ..." "..."``);
Route 53 rejects an unquoted value or a longer string. Names come back absolute with special
characters as ``\\ddd`` octal escapes. ``Throttling`` and ``PriorRequestNotComplete`` are retried
with backoff. boto3 is imported only when a real client is built (``make_client``): the provider
works with any object that has boto3's method signatures, which is how the tests drive it. boto3
is not a dependency: botocore (1.44) pins python-dateutil<3 while kubernetes 37 requires >=3.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from mailstack.dns.errors import CredentialsError, DnsConfigError, ProviderError
from mailstack.dns.plan import Change, RRset, ZoneState
from mailstack.dns.providers.base import MAIL_TYPES, Provider, absolute, relative_name
from mailstack.dns.records import canonical_value, txt_value_from_text, txt_zone_text

MAX_RECORDS = 1000
MAX_CHARS = 32000
MAX_CHANGES = 100  # our own bound: small batches keep error messages readable
RETRY_CODES = frozenset({"Throttling", "ThrottlingException", "PriorRequestNotComplete"})
CREDENTIAL_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "UnrecognizedClientException",
    }
)

_OCTAL = re.compile(r"\\([0-7]{3})")


def decode_name(name: str) -> str:
    """A name as Route 53 lists it (``\\052.example.com.``) in canonical form."""
    return relative_name(_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), name))


def record_value(rtype: str, value: str) -> str:
    if rtype == "TXT":
        return txt_value_from_text(value)
    return canonical_value(rtype, value)


def value_text(rtype: str, value: str) -> str:
    return txt_zone_text(value) if rtype == "TXT" else value


def make_client(
    region: str, access_key: str | None, secret_key: str | None, session_token: str | None
) -> Any:
    """A boto3 Route 53 client (boto3 is optional: only this provider needs it)."""
    try:
        boto3 = importlib.import_module("boto3")
    except ImportError:
        raise DnsConfigError(
            "the route53 provider needs boto3, which is not installed (note: botocore 1.44 pins "
            "python-dateutil<3 and kubernetes 37 needs >=3, so it cannot share the operator's "
            "environment; run `mailstack dns apply` from one that has boto3)"
        ) from None
    return boto3.client(
        "route53",
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
    )


def _error_code(err: Exception) -> tuple[str, str] | None:
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error") or {}
    return str(error.get("Code", "")), str(error.get("Message", ""))


class Route53Provider(Provider):
    kind = "route53"
    supports = MAIL_TYPES

    def __init__(
        self,
        hosted_zone_id: str,
        client: Any,
        zone: str | None = None,
        attempts: int = 5,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        max_changes: int = MAX_CHANGES,
    ) -> None:
        self.hosted_zone_id = hosted_zone_id
        self.client = client
        self.attempts = attempts
        self.backoff = backoff
        self.sleep = sleep
        self.max_changes = max_changes
        super().__init__(zone or self._zone_name())
        self._raw: dict[tuple[str, str], dict[str, str]] = {}

    def describe(self) -> str:
        return f"route53 zone {self.zone} ({self.hosted_zone_id})"

    def _call(self, method: str, **kwargs: Any) -> Any:
        for attempt in range(self.attempts):
            try:
                return getattr(self.client, method)(**kwargs)
            except Exception as err:
                code = _error_code(err)
                if code is None:
                    raise ProviderError(f"Route 53: {method}: {err}") from None
                if code[0] in CREDENTIAL_CODES:
                    raise CredentialsError(f"Route 53: {method}: {code[0]}: {code[1]}") from None
                if code[0] not in RETRY_CODES or attempt + 1 == self.attempts:
                    raise ProviderError(f"Route 53: {method}: {code[0]}: {code[1]}") from None
            self.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _zone_name(self) -> str:
        answer = self._call("get_hosted_zone", Id=self.hosted_zone_id)
        return decode_name(answer["HostedZone"]["Name"])

    def read(self, names: Collection[str]) -> ZoneState:
        self._raw = {}
        rrsets: list[RRset] = []
        kwargs: dict[str, Any] = {"HostedZoneId": self.hosted_zone_id}
        while True:
            page = self._call("list_resource_record_sets", **kwargs)
            for item in page.get("ResourceRecordSets", []):
                if "AliasTarget" in item or "SetIdentifier" in item:
                    continue  # alias and routing-policy records are never ours
                name, rtype = decode_name(item["Name"]), str(item["Type"])
                raw: dict[str, str] = {}
                for record in item.get("ResourceRecords", []):
                    try:
                        raw[record_value(rtype, record["Value"])] = record["Value"]
                    except ValueError:
                        continue
                self._raw[(name, rtype)] = raw
                if raw:
                    rrsets.append(RRset(name, rtype, int(item.get("TTL", 0)), tuple(raw)))
            if not page.get("IsTruncated"):
                break
            kwargs["StartRecordName"] = page["NextRecordName"]
            kwargs["StartRecordType"] = page["NextRecordType"]
        return ZoneState(self.zone, tuple(sorted(rrsets)), complete=True)

    def _record_set(self, rrset: RRset) -> dict[str, Any]:
        raw = self._raw.get(rrset.key, {})
        return {
            "Name": absolute(rrset.name),
            "Type": rrset.type,
            "TTL": rrset.ttl,
            "ResourceRecords": [
                {"Value": raw.get(v) or value_text(rrset.type, v)} for v in rrset.values
            ],
        }

    def _changes(self, change: Change) -> dict[str, Any]:
        if change.after is None:
            assert change.before is not None
            return {"Action": "DELETE", "ResourceRecordSet": self._record_set(change.before)}
        action = "CREATE" if change.before is None else "UPSERT"
        return {"Action": action, "ResourceRecordSet": self._record_set(change.after)}

    def batches(self, changes: Sequence[Change]) -> list[list[dict[str, Any]]]:
        """The changes in Route 53 requests, in order, each within the service's limits."""
        result: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        records = chars = 0
        for change in changes:
            item = self._changes(change)
            values = [r["Value"] for r in item["ResourceRecordSet"]["ResourceRecords"]]
            weight = 2 if item["Action"] == "UPSERT" else 1
            n, c = len(values) * weight, sum(len(v) for v in values) * weight
            if current and (
                records + n > MAX_RECORDS
                or chars + c > MAX_CHARS
                or len(current) >= self.max_changes
            ):
                result.append(current)
                current, records, chars = [], 0, 0
            current.append(item)
            records += n
            chars += c
        if current:
            result.append(current)
        return result

    def apply(self, changes: Sequence[Change]) -> None:
        for batch in self.batches(changes):
            self.writes += 1
            self._call(
                "change_resource_record_sets",
                HostedZoneId=self.hosted_zone_id,
                ChangeBatch={"Comment": "mailstack", "Changes": batch},
            )
