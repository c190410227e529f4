"""The Route 53 REST API (version 2013-04-01), spoken by our own client, stdlib only.

Owns: ``Route53RestClient`` (urllib, XML through ElementTree, requests signed by ``aws.sigv4``),
the XML of a change batch (``change_batch_xml``) and of answers, and the errors an answer carries
(``error_from_answer``). The client's three methods keep boto3's names, keyword arguments and
answer shapes, and its failures are shaped like botocore's ``ClientError``, so the provider
(``providers.route53``) drives it, boto3 or the tests' in-process fake alike.

Route 53 is global: one endpoint, requests signed for us-east-1 whatever region is configured.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from mailstack.dns.errors import ProviderTimeoutError
from mailstack.dns.providers.aws.sigv4 import ROUTE53_REGION, ROUTE53_SERVICE, sign_request
from mailstack.dns.providers.http import OPENER
from mailstack.dns.providers.reach import Reach, opener

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
        reach: Reach | None = None,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.clock = clock
        self.reach = reach or Reach()
        self.opener = opener(self.reach) if reach is not None else OPENER
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
        deadline = self.reach.deadline
        timeout = deadline.cap(self.timeout, self.endpoint) if deadline else self.timeout
        started = time.monotonic()
        try:
            with self.opener.open(request, timeout=timeout) as answer:  # no redirects
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
            if isinstance(reason, TimeoutError) or time.monotonic() - started >= timeout:
                raise ProviderTimeoutError(
                    f"Route 53: {method} {path}: {self.endpoint} did not answer within "
                    f"{timeout:g} s"
                ) from None
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
    reach: Reach | None = None,
) -> Route53RestClient:
    """The Route 53 client for these credentials.

    ``region`` is accepted for the MailDomain setting but changes nothing: Route 53 has one global
    endpoint, and requests to it are signed for us-east-1 (``sigv4.ROUTE53_REGION``).
    ``endpoint`` replaces https://route53.amazonaws.com (a test double, a proxy).
    """
    del region
    return Route53RestClient(
        access_key,
        secret_key,
        session_token,
        endpoint=endpoint or ENDPOINT,
        timeout=timeout,
        reach=reach,
    )
