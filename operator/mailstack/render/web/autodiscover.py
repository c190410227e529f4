"""Owns Microsoft Autodiscover for a domain: the POX request (what Outlook POSTs to
``https://autodiscover.<domain>/autodiscover/autodiscover.xml``) read safely, its answer, and the
JSON "v2" endpoint (``/autodiscover/autodiscover.json?Email=...&Protocol=...``) that points
Outlook at the POX one.

The request is untrusted input from anyone: it is bounded in size, parsed by expat with no
DOCTYPE at all (so no entity, internal or external, is ever declared or expanded) and only the
``EMailAddress`` is read from it; an address not of this domain is refused, and one of this
domain is answered whether or not a mailbox has it (the answer is the same for every address,
and a difference would tell strangers which addresses exist).

The answer is the Outlook response schema (2006a) with one ``Protocol`` per type, the preferred
port of each (Outlook takes one server per type): IMAP, POP3, SMTP, with ``SSL`` on and
``Encryption`` saying implicit TLS (``SSL``) or STARTTLS (``TLS``).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.parsers import expat

from mailstack.api.assemble import MailService
from mailstack.api.errors import FieldError
from mailstack.api.validate import own_address
from mailstack.render.web.clients import ClientEndpoint, client_endpoints, login_name
from mailstack.render.web.xmltext import child, xml_document

AUTODISCOVER_HOST_LABEL = "autodiscover"
POX_PATHS = ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml")
JSON_PATH = "/autodiscover/autodiscover.json"
POX_CONTENT_TYPE = "application/xml; charset=utf-8"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
# A real request is about 400 bytes; anything much larger is not one.
MAX_REQUEST_BYTES = 4096

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_RESPONSE_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)
_TYPES = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}
_ENCRYPTION = {"SSL": "SSL", "STARTTLS": "TLS"}


class AutodiscoverRefused(ValueError):
    """A request that is not answered, with the reason given to the client."""


@dataclass(frozen=True)
class AutodiscoverRequest:
    """What a POX request asks: the settings of this address (checked, lowercase)."""

    email: str


def _parse(body: bytes) -> dict[str, str]:
    """The text of the request's elements by local name; refuses any DOCTYPE."""
    if len(body) > MAX_REQUEST_BYTES:
        raise AutodiscoverRefused(f"the request is larger than {MAX_REQUEST_BYTES} bytes")
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    texts: dict[str, str] = {}
    path: list[str] = []

    def doctype(*_: object) -> None:
        raise AutodiscoverRefused("a DOCTYPE (and with it any entity) is not accepted")

    def start(name: str, _attrs: object) -> None:
        path.append(name.rpartition(" ")[2])

    def end(_name: str) -> None:
        path.pop()

    def text(data: str) -> None:
        if path:
            texts[path[-1]] = texts.get(path[-1], "") + data

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(body, True)
    except expat.ExpatError as err:
        raise AutodiscoverRefused(f"the request is not well-formed XML: {err}") from None
    return {name: value.strip() for name, value in texts.items()}


def read_request(service: MailService, body: bytes) -> AutodiscoverRequest:
    """The address a POX request asks for, checked to be of this domain."""
    texts = _parse(body)
    schema = texts.get("AcceptableResponseSchema", OUTLOOK_RESPONSE_NS)
    if schema != OUTLOOK_RESPONSE_NS:
        raise AutodiscoverRefused(f"only the response schema {OUTLOOK_RESPONSE_NS} is served")
    return AutodiscoverRequest(own_email(service, texts.get("EMailAddress", "")))


def own_email(service: MailService, text: str) -> str:
    """``text`` as an address of this domain (lowercase), or AutodiscoverRefused."""
    address = text.strip().lower()
    try:
        _, domain = own_address(address)
    except FieldError as err:
        raise AutodiscoverRefused(f"no valid email address: {err.message}") from None
    if domain != service.domain.domain:
        raise AutodiscoverRefused(f"{domain} is not served here")
    return address


def preferred_per_type(service: MailService) -> list[ClientEndpoint]:
    """The preferred endpoint of each protocol, in the order IMAP, POP3, SMTP."""
    chosen: dict[str, ClientEndpoint] = {}
    for endpoint in client_endpoints(service):
        chosen.setdefault(endpoint.protocol, endpoint)
    return [chosen[p] for p in _TYPES if p in chosen]


def pox_response(service: MailService, request: AutodiscoverRequest) -> bytes:
    root = ET.Element("Autodiscover", {"xmlns": RESPONSE_NS})
    response = child(root, "Response", xmlns=OUTLOOK_RESPONSE_NS)
    account = child(response, "Account")
    child(account, "AccountType", "email")
    child(account, "Action", "settings")
    for endpoint in preferred_per_type(service):
        protocol = child(account, "Protocol")
        child(protocol, "Type", _TYPES[endpoint.protocol])
        child(protocol, "Server", endpoint.host)
        child(protocol, "Port", endpoint.port)
        child(protocol, "LoginName", login_name(request.email))
        child(protocol, "DomainRequired", "off")
        child(protocol, "SPA", "off")
        child(protocol, "SSL", "on")
        child(protocol, "Encryption", _ENCRYPTION[endpoint.security])
        child(protocol, "AuthRequired", "on")
    return xml_document(root)


def pox_error(message: str) -> bytes:
    """An Autodiscover error response (the POX ``Error`` shape) saying why."""
    root = ET.Element("Autodiscover", {"xmlns": RESPONSE_NS})
    error = child(child(root, "Response"), "Error")
    child(error, "ErrorCode", 600)  # "Invalid Request", as Exchange answers
    child(error, "Message", message)
    child(error, "DebugData")
    return xml_document(root)


def json_v2(service: MailService, email: str, protocol: str) -> bytes:
    """The v2 answer: for ``AutodiscoverV1`` the POX URL on our Autodiscover host; every other
    protocol (EWS, ActiveSync, REST) is refused, as nothing here speaks it."""
    own_email(service, email)
    if protocol.lower() != "autodiscoverv1":
        raise AutodiscoverRefused(
            f"the protocol {protocol[:40]!r} is not served; only AutodiscoverV1 is"
        )
    url = f"https://{AUTODISCOVER_HOST_LABEL}.{service.domain.domain}{POX_PATHS[1]}"
    return json.dumps({"Protocol": "AutodiscoverV1", "Url": url}).encode() + b"\n"


def json_error(message: str) -> bytes:
    return json.dumps({"ErrorCode": "InvalidRequest", "ErrorMessage": message}).encode() + b"\n"
