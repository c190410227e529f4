"""A fake Amazon Route 53 for the route53 provider tests, reachable two ways.

``FakeRoute53`` holds a hosted zone and keeps the service's rules behind boto3's method signatures
(``get_hosted_zone``, ``list_resource_record_sets``, ``change_resource_record_sets``), raising
``ClientError`` as botocore does. ``Route53Server`` puts the same object behind the REST API
(version 2013-04-01, XML in the API's namespace) on 127.0.0.1, so both the direct and the HTTP
path meet the same rules.

Rules of the real service kept: names are absolute (returned with the trailing dot, special
characters as ``\\ddd`` octal); each TXT value is one or more quoted character-strings of at most
255 characters (``InvalidCharacterString`` / ``CharacterStringTooLong``); a change batch is
validated whole and applied atomically; CREATE of an existing set and DELETE of a set whose values
or TTL differ are refused (``InvalidChangeBatch``); at most 1000 records and 32000 characters of
values per request, UPSERT counting twice; listings are paged (``IsTruncated``, ``NextRecordName``,
``NextRecordType``, ``maxitems``) in Route 53's order, and ``type`` needs ``name``; ``Throttling``
happens.

The server checks every request's Signature Version 4 on its own, sharing no code with the module
under test: the credential scope (date of ``x-amz-date``, region us-east-1, service route53), the
signed headers (``host``, ``x-amz-date``, and ``x-amz-security-token`` when sent), the session
token a temporary key needs, the time (5 minutes either way, as Route 53), and the signature
recomputed from the request as received. Refusals are Route 53's: HTTP 403 with an
``ErrorResponse`` (``SignatureDoesNotMatch``, ``InvalidClientTokenId``, ...). A refused change
batch is answered in the documented ``<InvalidChangeBatch><Messages>`` form or, with
``change_batch_errors = "error"``, as an ``ErrorResponse``: the service has been seen doing both.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

ZONE_ID = "Z0123456789ABCDEFGHIJ"
NS = "https://route53.amazonaws.com/doc/2013-04-01/"
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


# --- Signature Version 4, checked the server's way (an implementation of its own) ---

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
BAD_TOKEN = "The security token included in the request is invalid."
SKEW = timedelta(minutes=5)


def _percent_decode(text: str) -> bytes:
    out = bytearray()
    raw = text.encode()
    i = 0
    while i < len(raw):
        if raw[i] == ord("%") and re.fullmatch(rb"[0-9A-Fa-f]{2}", raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def _percent_encode(data: bytes, keep: bytes = b"") -> str:
    return "".join(chr(b) if b in _UNRESERVED or b in keep else f"%{b:02X}" for b in data)


def _hmac_sha256(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def expected_signature(
    secret: str,
    method: str,
    target: str,
    headers: Mapping[str, str],
    signed: list[str],
    body: bytes,
    stamp: str,
    scope: tuple[str, str, str],
) -> str:
    """The signature of a request as received: ``target`` is the request line's path and query,
    ``headers`` the received values by lower-case name."""
    path, _, query = target.partition("?")
    # Not S3: the wire path is encoded once more (its "%" become "%25"), slashes kept.
    uri = _percent_encode(path.encode(), keep=b"/")
    params = []
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        params.append(
            (_percent_encode(_percent_decode(name)), _percent_encode(_percent_decode(value)))
        )
    canonical_query = "&".join(f"{n}={v}" for n, v in sorted(params))
    header_lines = "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed)
    canonical = "\n".join(
        [
            method,
            uri,
            canonical_query,
            header_lines,
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    date, region, service = scope
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            stamp,
            f"{date}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = _hmac_sha256(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def check_signature(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, tuple[str, str | None]],
    now: datetime,
) -> ClientError | None:
    """Why Route 53 would refuse this request's signature, or None. ``credentials``: access key
    → (secret, the session token it needs or None)."""
    authorization = headers.get("authorization")
    if not authorization:
        return ClientError("MissingAuthenticationToken", "Missing Authentication Token")
    match = _AUTHORIZATION.fullmatch(authorization.strip())
    if not match:
        return ClientError("IncompleteSignature", f"Authorization header is malformed: {method}")
    if match["key"] not in credentials:
        return ClientError("InvalidClientTokenId", BAD_TOKEN)
    secret, token = credentials[match["key"]]
    if token is not None and headers.get("x-amz-security-token") != token:
        return ClientError("InvalidClientTokenId", BAD_TOKEN)
    stamp = headers.get("x-amz-date", "")
    try:
        sent = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return ClientError("IncompleteSignature", "x-amz-date is missing or malformed")
    if match["date"] != stamp[:8]:
        return ClientError(
            "SignatureDoesNotMatch",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{match['date']}' != '{stamp[:8]}', from '{stamp}'.",
        )
    if match["region"] != "us-east-1":
        return ClientError(
            "SignatureDoesNotMatch",
            f"Credential should be scoped to a valid region, not '{match['region']}'.",
        )
    if match["service"] != "route53":
        return ClientError(
            "SignatureDoesNotMatch",
            f"Credential should be scoped to correct service: 'route53'. ({match['service']})",
        )
    signed = match["signed"].split(";")
    required = {"host", "x-amz-date"} | (
        {"x-amz-security-token"} if "x-amz-security-token" in headers else set()
    )
    if signed != sorted(signed) or not required <= set(signed):
        return ClientError(
            "SignatureDoesNotMatch", f"SignedHeaders {match['signed']} lack {sorted(required)}"
        )
    if any(h not in headers for h in signed):
        return ClientError("SignatureDoesNotMatch", MISMATCH)
    fmt = "%Y%m%dT%H%M%SZ"
    if sent < now - SKEW:
        return ClientError(
            "SignatureDoesNotMatch",
            f"Signature expired: {stamp} is now earlier than {(now - SKEW).strftime(fmt)} "
            f"({now.strftime(fmt)} - 5 min.)",
        )
    if sent > now + SKEW:
        return ClientError(
            "SignatureDoesNotMatch",
            f"Signature not yet current: {stamp} is still later than "
            f"{(now + SKEW).strftime(fmt)} ({now.strftime(fmt)} + 5 min.)",
        )
    want = expected_signature(
        secret,
        method,
        target,
        headers,
        signed,
        body,
        stamp,
        (match["date"], match["region"], match["service"]),
    )
    if not hmac.compare_digest(want, match["signature"]):
        return ClientError("SignatureDoesNotMatch", MISMATCH)
    return None


# --- the REST/XML face ---

_STATUS = {
    "NoSuchHostedZone": 404,
    "MissingAuthenticationToken": 403,
    "IncompleteSignature": 403,
    "InvalidClientTokenId": 403,
    "SignatureDoesNotMatch": 403,
    "AccessDenied": 403,
}
_ITEM = {
    "ResourceRecordSets": "ResourceRecordSet",
    "ResourceRecords": "ResourceRecord",
    "NameServers": "NameServer",
}
# The order of a ResourceRecordSet's children in the API's schema.
_RRSET_ORDER = ["Name", "Type", "SetIdentifier", "Weight", "Region", "GeoLocation", "Failover"]
_RRSET_ORDER += ["MultiValueAnswer", "TTL", "ResourceRecords", "AliasTarget", "HealthCheckId"]


def _add(parent: ET.Element, name: str, value: Any) -> None:
    element = ET.SubElement(parent, name)
    if isinstance(value, dict):
        for key, item in value.items():
            _add(element, key, item)
    elif isinstance(value, list):
        for item in value:
            _add(element, _ITEM[name], item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = str(value)


def answer_xml(root_name: str, answer: Mapping[str, Any]) -> bytes:
    root = ET.Element(root_name, xmlns=NS)
    for key, value in answer.items():
        _add(root, key, value)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def error_xml(err: ClientError, form: Literal["messages", "error"]) -> bytes:
    if err.code == "InvalidChangeBatch" and form == "messages":
        root = ET.Element("InvalidChangeBatch", xmlns=NS)
        messages = ET.SubElement(root, "Messages")
        ET.SubElement(messages, "Message").text = err.message.strip("[]")
    else:
        root = ET.Element("ErrorResponse", xmlns=NS)
        error = ET.SubElement(root, "Error")
        ET.SubElement(error, "Type").text = "Sender"
        ET.SubElement(error, "Code").text = err.code
        ET.SubElement(error, "Message").text = err.message
    ET.SubElement(root, "RequestId").text = "0b5f1f6e-0000-4000-8000-000000000000"
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def parse_change_batch(body: bytes) -> dict[str, Any]:
    """A ``ChangeResourceRecordSetsRequest`` document as boto3's ``ChangeBatch``, or raise
    ``InvalidInput`` as Route 53 does for a document outside its schema."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as err:
        raise ClientError("InvalidInput", f"Invalid XML ; {err}") from None
    q = f"{{{NS}}}"
    if root.tag != f"{q}ChangeResourceRecordSetsRequest":
        raise ClientError(
            "InvalidInput", f"Invalid XML ; cannot find the declaration of element {root.tag}"
        )
    batch = root.find(f"{q}ChangeBatch")
    changes = batch.find(f"{q}Changes") if batch is not None else None
    if batch is None or changes is None or not len(changes):
        raise ClientError("InvalidInput", "Invalid XML ; ChangeBatch/Changes missing or empty")
    result: dict[str, Any] = {"Changes": []}
    comment = batch.find(f"{q}Comment")
    if comment is not None:
        result["Comment"] = comment.text or ""
    for change in changes:
        action = change.find(f"{q}Action")
        rrset = change.find(f"{q}ResourceRecordSet")
        if change.tag != f"{q}Change" or action is None or rrset is None:
            raise ClientError("InvalidInput", "Invalid XML ; a Change needs Action, RRSet")
        names = [child.tag.removeprefix(q) for child in rrset]
        if any(n not in _RRSET_ORDER for n in names) or names != sorted(
            names, key=_RRSET_ORDER.index
        ):
            raise ClientError("InvalidInput", f"Invalid XML ; ResourceRecordSet children {names}")
        item: dict[str, Any] = {}
        for child in rrset:
            name = child.tag.removeprefix(q)
            if name == "ResourceRecords":
                item[name] = [
                    {"Value": record.findtext(f"{q}Value") or ""}
                    for record in child.findall(f"{q}ResourceRecord")
                ]
            elif name == "TTL":
                item[name] = int(child.text or "")
            else:
                item[name] = child.text or ""
        result["Changes"].append({"Action": action.text or "", "ResourceRecordSet": item})
    return result


class Route53Server:
    """``fake`` behind Route 53's REST API on 127.0.0.1; ``url`` is the endpoint to use."""

    def __init__(
        self,
        fake: FakeRoute53,
        credentials: Mapping[str, tuple[str, str | None]],
        change_batch_errors: Literal["messages", "error"] = "messages",
    ) -> None:
        self.fake = fake
        self.credentials = dict(credentials)
        self.change_batch_errors: Literal["messages", "error"] = change_batch_errors
        self.fail_next: list[int] = []  # HTTP statuses answered before anything else, in turn
        self.log: list[tuple[str, str, int, str]] = []  # method, target, status, error code
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def refused(self, code: str) -> int:
        return sum(1 for entry in self.log if entry[3] == code)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, body: bytes, code: str = "") -> None:
                server.log.append((self.command, self.path, status, code))
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("x-amzn-RequestId", "0b5f1f6e-0000-4000-8000-000000000000")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def refuse(self, err: ClientError) -> None:
                status = _STATUS.get(err.code, 400)
                self.reply(status, error_xml(err, server.change_batch_errors), err.code)

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers: dict[str, str] = {}
                for name in self.headers:
                    # Repeated headers are joined with commas, as SigV4 canonicalises them.
                    values = self.headers.get_all(name) or []
                    headers[name.lower()] = ",".join(v.strip() for v in values)
                with server.lock:
                    if server.fail_next:
                        status = server.fail_next.pop(0)
                        code = "ServiceUnavailable" if status == 503 else "InternalFailure"
                        err = ClientError(code, "Service is unavailable, try again later")
                        return self.reply(status, error_xml(err, "error"), code)
                    refusal = check_signature(
                        self.command,
                        self.path,
                        headers,
                        body,
                        server.credentials,
                        datetime.now(UTC),
                    )
                    if refusal is not None:
                        return self.refuse(refusal)
                    server.bodies.append(body)
                    try:
                        root, answer = self.route(body)
                    except ClientError as err:
                        return self.refuse(err)
                    return self.reply(200, answer_xml(root, answer))

            def route(self, body: bytes) -> tuple[str, dict[str, Any]]:
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")
                if parts[:2] != ["2013-04-01", "hostedzone"] or len(parts) not in (3, 4):
                    raise ClientError("InvalidInput", f"no such resource: {path}")
                zone_id = _percent_decode(parts[2]).decode()
                fake = server.fake
                if len(parts) == 3 and self.command == "GET":
                    return "GetHostedZoneResponse", fake.get_hosted_zone(Id=zone_id)
                if parts[3] != "rrset":
                    raise ClientError("InvalidInput", f"no such resource: {path}")
                if self.command == "POST":
                    batch = parse_change_batch(body)
                    answer = fake.change_resource_record_sets(zone_id, batch)
                    return "ChangeResourceRecordSetsResponse", answer
                names = {
                    "name": "StartRecordName",
                    "type": "StartRecordType",
                    "identifier": "StartRecordIdentifier",
                    "maxitems": "MaxItems",
                }
                kwargs: dict[str, Any] = {}
                for pair in filter(None, query.split("&")):
                    key, _, value = pair.partition("=")
                    if key not in names:
                        raise ClientError("InvalidInput", f"unknown parameter {key}")
                    kwargs[names[key]] = _percent_decode(value).decode()
                answer = fake.list_resource_record_sets(zone_id, **kwargs)
                return "ListResourceRecordSetsResponse", answer

            def do_GET(self) -> None:
                self.handle_any()

            def do_POST(self) -> None:
                self.handle_any()

        return Handler

    @contextmanager
    def running(self) -> Iterator[Route53Server]:
        thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()
            thread.join(5)
