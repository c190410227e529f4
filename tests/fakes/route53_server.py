"""The fake Route 53 behind its REST API (version 2013-04-01, XML in the API's namespace).

``Route53Server`` serves a ``FakeRoute53`` on 127.0.0.1 and checks every request's signature
(``tests.fakes.route53_sigv4``) before it. Refusals are Route 53's: HTTP 403 with an
``ErrorResponse`` for a signature, and a refused change batch in the documented
``<InvalidChangeBatch><Messages>`` form or, with ``change_batch_errors = "error"``, as an
``ErrorResponse``: the service has been seen doing both.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from tests.fakes.local_http import serving
from tests.fakes.route53 import ClientError, FakeRoute53
from tests.fakes.route53_sigv4 import check_signature, percent_decode

NS = "https://route53.amazonaws.com/doc/2013-04-01/"

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
                zone_id = percent_decode(parts[2]).decode()
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
                    kwargs[names[key]] = percent_decode(value).decode()
                answer = fake.list_resource_record_sets(zone_id, **kwargs)
                return "ListResourceRecordSetsResponse", answer

            def do_GET(self) -> None:
                self.handle_any()

            def do_POST(self) -> None:
                self.handle_any()

        return Handler

    @contextmanager
    def running(self) -> Iterator[Route53Server]:
        with serving(self.httpd):
            yield self
