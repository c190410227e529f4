"""Amazon Route 53: one hosted zone, through a boto3-shaped client (``aws.route53_api`` by default).

Owns: listing a hosted zone (``ListResourceRecordSets``, following ``NextRecordName`` /
``NextRecordType`` / ``NextRecordIdentifier`` while ``IsTruncated``) and applying a plan in change
batches (``ChangeResourceRecordSets``). A batch is atomic in Route 53; batches stay below its
limits (1000 ResourceRecord elements and 32000 characters of values per request, an UPSERT
counting twice) and keep the plan's order, so claims precede the records they cover. Creates are
``CREATE``, deletes ``DELETE`` with exactly the values and TTL read (Route 53 refuses anything
else), updates ``UPSERT`` of the whole RRset, with the values that are not ours sent back exactly
as read.

TXT values are quoted character-strings of at most 255 characters each (``"v=DKIM1; ..." "..."``);
Route 53 rejects an unquoted value or a longer string. Names come back absolute with special
characters as ``\\ddd`` octal escapes. ``Throttling``, ``PriorRequestNotComplete``, 5xx answers and
unreachable endpoints are retried with backoff; refused credentials are ``CredentialsError``.

Also owns reading the AWS keys from the credentials Secret (``SECRET_KEYS``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from mailstack.api.dns_models import Route53Settings
from mailstack.api.models import MailDomain, Secret
from mailstack.dns.errors import CredentialsError, DnsConfigError, DnsError, ProviderError
from mailstack.dns.plan import Change, RRset, ZoneState
from mailstack.dns.providers.aws.route53_api import TIMEOUT, make_client
from mailstack.dns.providers.base import MAIL_TYPES, Provider, absolute, relative_name
from mailstack.dns.providers.construction import (
    ProviderOptions,
    credentials_secret,
    settings_of,
)
from mailstack.dns.records import canonical_value, txt_value_from_text, txt_zone_text

MAX_RECORDS = 1000
MAX_CHARS = 32000
MAX_CHANGES = 100  # our own bound: small batches keep error messages readable
RETRY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "PriorRequestNotComplete",
        # Transient failures of the service or the way to it (what boto3 retries too); a change
        # batch retried after a lost answer fails its own CREATE, and the next reconcile, which
        # reads the zone again, finds nothing left to do.
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
        "RequestTimeout",
        "NetworkingError",
    }
)
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

# The keys of the credentials Secret, each under any of its usual spellings: the environment
# variable, the AWS config file and camel case.
SECRET_KEYS = {
    "access_key": ("AWS_ACCESS_KEY_ID", "aws_access_key_id", "accessKeyId"),
    "secret_key": ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", "secretAccessKey"),
    "session_token": ("AWS_SESSION_TOKEN", "aws_session_token", "sessionToken"),
}

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
            except DnsError:
                raise  # already one line (a timeout, the publication's deadline)
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
            # Routing-policy sets share a name and type: the next page starts at one of them.
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
            else:
                kwargs.pop("StartRecordIdentifier", None)
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


def from_domain(
    domain: MailDomain, secrets: Mapping[str, Secret], options: ProviderOptions
) -> Route53Provider:
    settings = settings_of(domain, Route53Settings)
    client = options.route53_client
    if client is None:
        access_key, secret_key, session_token = _credentials(domain, secrets)
        client = make_client(
            settings.region,
            access_key,
            secret_key,
            session_token,
            endpoint=options.route53_endpoint,
            timeout=options.timeout or TIMEOUT,
            reach=options.reach(named_by_tenant=False),
        )
    return Route53Provider(settings.hosted_zone_id, client)


def _credentials(domain: MailDomain, secrets: Mapping[str, Secret]) -> tuple[str, str, str | None]:
    """Access key, secret key and session token (if any) from the credentials Secret."""
    secret = credentials_secret(domain, secrets)
    found: dict[str, str | None] = {}
    for field, keys in SECRET_KEYS.items():
        raw = next((secret.get(k) for k in keys if secret.get(k) is not None), None)
        found[field] = raw.decode().strip() if raw is not None else None
    access_key, secret_key = found["access_key"], found["secret_key"]
    if not access_key or not secret_key:
        raise DnsConfigError(
            f"{domain.ref}: Secret {domain.namespace}/{secret.name} needs the keys "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return access_key, secret_key, found["session_token"] or None
