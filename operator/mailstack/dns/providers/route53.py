"""Amazon Route 53 through its REST API (version 2013-04-01), with our own client.

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
unreachable endpoints are retried with backoff.

``Route53RestClient`` speaks the API itself, stdlib only (urllib, XML through ElementTree,
requests signed by ``aws_sigv4``). Its three methods keep boto3's names, keyword arguments and
answer shapes, so the provider drives any client shaped so (the tests' in-process fake too).
Route 53 is global: one endpoint, requests signed for us-east-1 whatever region is configured.
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from mailstack.api.models import MailDomain, Route53Settings, Secret
from mailstack.dns.errors import CredentialsError, DnsConfigError, ProviderError
from mailstack.dns.plan import Change, RRset, ZoneState
from mailstack.dns.providers.aws_sigv4 import ROUTE53_REGION, ROUTE53_SERVICE, sign_request
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
SECRET_KEYS = {
    "access_key": ("AWS_ACCESS_KEY_ID", "aws_access_key_id", "accessKeyId"),
    "secret_key": ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", "secretAccessKey"),
    "session_token": ("AWS_SESSION_TOKEN", "aws_session_token", "sessionToken"),
}
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


ENDPOINT = "https://route53.amazonaws.com"
API_VERSION = "2013-04-01"
NAMESPACE = f"https://route53.amazonaws.com/doc/{API_VERSION}/"
TIMEOUT = 15.0  # seconds per request
# ResourceRecordSet children in the order of the API's XML schema (a sequence: order matters).
_RRSET_FIELDS = (
    "Name",
    "Type",
    "SetIdentifier",
    "Weight",
    "Region",
    "Failover",
    "MultiValueAnswer",
    "TTL",
    "ResourceRecords",
    "AliasTarget",
    "HealthCheckId",
    "TrafficPolicyInstanceId",
)
_ALIAS_FIELDS = ("HostedZoneId", "DNSName", "EvaluateTargetHealth")
_INTEGERS = frozenset({"TTL", "Weight", "ResourceRecordSetCount"})
_BOOLEANS = frozenset({"MultiValueAnswer", "EvaluateTargetHealth", "PrivateZone", "IsTruncated"})


class Route53Error(Exception):
    """A refused or failed Route 53 call, shaped like botocore's ``ClientError``: the provider
    reads ``response["Error"]["Code"]`` and ``["Message"]``."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.response: dict[str, Any] = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    # By local name: answers are in the API's namespace, and matching on the local name also
    # reads an answer that leaves it out.
    return [child for child in element if _local(child.tag) == name]


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    if element is None:
        return None
    found = _children(element, name)
    return found[0] if found else None


def _text(element: ET.Element | None, name: str) -> str:
    child = _child(element, name)
    return (child.text or "") if child is not None else ""


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _scalar(name: str, text: str) -> Any:
    if name in _INTEGERS:
        return int(text)
    if name in _BOOLEANS:
        return text.strip().lower() == "true"
    return text


def _as_dict(element: ET.Element) -> dict[str, Any]:
    """The children of ``element`` as boto3 shapes them: scalars typed, lists of ``Value``."""
    result: dict[str, Any] = {}
    for child in element:
        name = _local(child.tag)
        if name == "ResourceRecords":
            result[name] = [
                {"Value": _text(r, "Value")} for r in _children(child, "ResourceRecord")
            ]
        elif len(child):
            result[name] = _as_dict(child)
        else:
            result[name] = _scalar(name, child.text or "")
    return result


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def change_batch_xml(batch: Mapping[str, Any]) -> bytes:
    """The ``ChangeResourceRecordSetsRequest`` document for a boto3-shaped ``ChangeBatch``.

    ElementTree escapes the text (``&``, ``<``, ``>``); TXT quotes need no escaping in text.
    """
    root = ET.Element("ChangeResourceRecordSetsRequest", xmlns=NAMESPACE)
    change_batch = ET.SubElement(root, "ChangeBatch")
    if batch.get("Comment"):
        ET.SubElement(change_batch, "Comment").text = str(batch["Comment"])
    changes = ET.SubElement(change_batch, "Changes")
    for change in batch["Changes"]:
        element = ET.SubElement(changes, "Change")
        ET.SubElement(element, "Action").text = str(change["Action"])
        rrset = change["ResourceRecordSet"]
        unknown = set(rrset) - set(_RRSET_FIELDS)
        if unknown:
            raise ValueError(f"ResourceRecordSet fields not supported: {sorted(unknown)}")
        rrset_element = ET.SubElement(element, "ResourceRecordSet")
        for field in _RRSET_FIELDS:
            if field not in rrset:
                continue
            value = rrset[field]
            if field == "ResourceRecords":
                if not value:
                    continue  # an alias has none, and an empty list is invalid
                records = ET.SubElement(rrset_element, field)
                for record in value:
                    record_element = ET.SubElement(records, "ResourceRecord")
                    ET.SubElement(record_element, "Value").text = str(record["Value"])
            elif field == "AliasTarget":
                alias = ET.SubElement(rrset_element, field)
                for alias_field in _ALIAS_FIELDS:
                    ET.SubElement(alias, alias_field).text = _xml_text(value[alias_field])
            else:
                ET.SubElement(rrset_element, field).text = _xml_text(value)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def error_from_answer(status: int, body: bytes) -> Route53Error:
    """The error an HTTP error answer carries: ``<ErrorResponse><Error><Code>`` (most calls) or
    ``<InvalidChangeBatch><Messages>`` (a refused change batch), else one made from the status."""
    code = message = ""
    try:
        root: ET.Element | None = ET.fromstring(body) if body.strip() else None
    except ET.ParseError:
        root = None
    if root is not None:
        kind = _local(root.tag)
        if kind == "ErrorResponse":
            error = _child(root, "Error")
            code, message = _text(error, "Code"), _text(error, "Message")
        elif kind == "Error":  # the S3-style form, should a proxy or an emulator answer so
            code, message = _text(root, "Code"), _text(root, "Message")
        elif kind == "InvalidChangeBatch":
            code = "InvalidChangeBatch"
            messages = _children(_child(root, "Messages") or root, "Message")
            message = "; ".join((m.text or "").strip() for m in messages) or _text(root, "Message")
    if not code:
        if status == 403:
            code = "AccessDenied"
        elif status in (502, 503, 504):
            code = "ServiceUnavailable"
        elif status >= 500:
            code = "InternalFailure"
        else:
            code = f"HTTP{status}"
        if not message:
            snippet = body.decode("utf-8", "replace").strip()[:200]
            message = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    return Route53Error(code, _one_line(message or code), status)


def _zone_id(value: str) -> str:
    # Ids are listed as "/hostedzone/Z…"; the path wants the bare id (boto3 strips it too).
    return value.rpartition("/")[2]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Route53RestClient:
    """The Route 53 calls the provider makes, over the REST API, signed with SigV4.

    Answers have boto3's shapes (``SubmittedAt`` stays a string); failures raise
    ``Route53Error``: the API's own code and message, ``ServiceUnavailable`` /
    ``InternalFailure`` for a 5xx without one, ``NetworkingError`` when the endpoint cannot be
    reached or does not answer within ``timeout`` seconds.
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        session_token: str | None = None,
        *,
        endpoint: str = ENDPOINT,
        timeout: float = TIMEOUT,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.clock = clock
        self.requests = 0

    def _request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> ET.Element:
        url = f"{self.endpoint}/{API_VERSION}{path}"
        if query:
            # quote, not quote_plus: a "+" would mean a space to one side and "+" to the other.
            url += "?" + urlencode(query, quote_via=quote, safe="")
        headers = {"Content-Type": "application/xml"} if body is not None else {}
        headers.update(
            sign_request(
                method,
                url,
                headers,
                body or b"",
                access_key=self.access_key,
                secret_key=self.secret_key,
                session_token=self.session_token,
                region=ROUTE53_REGION,
                service=ROUTE53_SERVICE,
                now=self.clock(),
            )
        )
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as err:
            raise error_from_answer(err.code, err.read()) from None
        except (
            urllib.error.URLError,
            TimeoutError,
            ConnectionError,
            http.client.HTTPException,
        ) as err:
            reason = getattr(err, "reason", None) or err
            raise Route53Error(
                "NetworkingError", _one_line(f"cannot reach {self.endpoint}: {reason}")
            ) from None
        try:
            return ET.fromstring(raw)
        except ET.ParseError as err:
            raise Route53Error(
                "MalformedAnswer", f"{method} {path}: the answer is not XML ({err})"
            ) from None

    def get_hosted_zone(self, Id: str) -> dict[str, Any]:
        root = self._request("GET", f"/hostedzone/{quote(_zone_id(Id), safe='')}")
        zone = _child(root, "HostedZone")
        if zone is None:
            raise Route53Error("MalformedAnswer", "GetHostedZone: no HostedZone in the answer")
        answer: dict[str, Any] = {"HostedZone": _as_dict(zone)}
        delegation = _child(root, "DelegationSet")
        if delegation is not None:
            servers = _child(delegation, "NameServers")
            answer["DelegationSet"] = {
                "NameServers": [s.text or "" for s in servers] if servers is not None else []
            }
        return answer

    def list_resource_record_sets(
        self,
        HostedZoneId: str,
        StartRecordName: str | None = None,
        StartRecordType: str | None = None,
        StartRecordIdentifier: str | None = None,
        MaxItems: str | int | None = None,
    ) -> dict[str, Any]:
        query: dict[str, str] = {}
        for key, value in (
            ("name", StartRecordName),
            ("type", StartRecordType),
            ("identifier", StartRecordIdentifier),
            ("maxitems", MaxItems),
        ):
            if value is not None:
                query[key] = str(value)
        root = self._request(
            "GET", f"/hostedzone/{quote(_zone_id(HostedZoneId), safe='')}/rrset", query
        )
        sets = _child(root, "ResourceRecordSets")
        answer: dict[str, Any] = {
            "ResourceRecordSets": [_as_dict(item) for item in _children(sets, "ResourceRecordSet")]
            if sets is not None
            else [],
            "IsTruncated": _text(root, "IsTruncated").strip().lower() == "true",
            "MaxItems": _text(root, "MaxItems"),
        }
        for key in ("NextRecordName", "NextRecordType", "NextRecordIdentifier"):
            if _child(root, key) is not None:
                answer[key] = _text(root, key)
        return answer

    def change_resource_record_sets(
        self, HostedZoneId: str, ChangeBatch: Mapping[str, Any]
    ) -> dict[str, Any]:
        root = self._request(
            "POST",
            f"/hostedzone/{quote(_zone_id(HostedZoneId), safe='')}/rrset",
            body=change_batch_xml(ChangeBatch),
        )
        info = _child(root, "ChangeInfo")
        return {"ChangeInfo": _as_dict(info) if info is not None else {}}


def make_client(
    region: str,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    endpoint: str | None = None,
    timeout: float = TIMEOUT,
) -> Route53RestClient:
    """The Route 53 client for these credentials.

    ``region`` is accepted for the MailDomain setting but changes nothing: Route 53 has one global
    endpoint, and requests to it are signed for us-east-1 (``aws_sigv4.ROUTE53_REGION``).
    ``endpoint`` replaces https://route53.amazonaws.com (a test double, a proxy).
    """
    del region
    return Route53RestClient(
        access_key, secret_key, session_token, endpoint=endpoint or ENDPOINT, timeout=timeout
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
