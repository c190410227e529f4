"""Owns what the HTTPS endpoint of a domain answers, as a pure function of the MailService and
the request: the host names it serves (``web_hosts``, the names its certificate must cover),
the documents at their paths, the errors, the security headers, and the plain-HTTP redirect.
The server in front of it (not built yet) only reads requests, bounds their bodies to
``MAX_BODY_BYTES`` and writes these answers.

- ``mta-sts.<domain>``: the MTA-STS policy (when ``spec.dns.mtaSts.enabled``);
- ``autoconfig.<domain>``: Thunderbird's autoconfig (both paths; Thunderbird asks the domain
  itself for the ``.well-known`` one, which the domain's web site may forward here) and the Apple
  profile (``?email=`` fills in the address);
- ``autodiscover.<domain>``: the Autodiscover POX answer (POST) and the JSON v2 endpoint.

The client documents are served only when a client can be set up (``clients.configurable``);
nothing else is served: every other path is a 404, every other method a 405.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from mailstack.api.assemble import MailService
from mailstack.render.web import autoconfig, autodiscover, mobileconfig, mta_sts
from mailstack.render.web.clients import configurable

MAX_BODY_BYTES = autodiscover.MAX_REQUEST_BYTES
MAX_QUERY_CHARACTERS = 1024
MAX_QUERY_FIELDS = 16
# Every answer carries these: nothing here is a page to render, frame or guess the type of.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Strict-Transport-Security", "max-age=31536000"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class WebRequest:
    """A request as the server read it: method, host (the Host header without a port), the
    path and the query string as sent, and the body (at most ``MAX_BODY_BYTES + 1``)."""

    method: str
    host: str
    path: str
    query: str = ""
    body: bytes = b""


@dataclass(frozen=True)
class WebResponse:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(default=SECURITY_HEADERS)


def web_hosts(service: MailService) -> tuple[str, ...]:
    """The host names the endpoint answers for, the certificate's extra names."""
    domain = service.domain
    hosts = []
    if domain.dns.mta_sts.enabled:
        hosts.append(mta_sts.policy_host(domain))
    if configurable(service):
        hosts.append(f"{autoconfig.AUTOCONFIG_HOST_LABEL}.{domain.domain}")
        hosts.append(f"{autodiscover.AUTODISCOVER_HOST_LABEL}.{domain.domain}")
    return tuple(hosts)


def static_documents(service: MailService) -> dict[tuple[str, str], tuple[str, bytes]]:
    """The documents the same for every request: (host, path) → (content type, body)."""
    domain = service.domain
    documents: dict[tuple[str, str], tuple[str, bytes]] = {}
    if domain.dns.mta_sts.enabled:
        policy = mta_sts.mta_sts_policy(domain).encode()
        documents[mta_sts.policy_host(domain), mta_sts.POLICY_PATH] = (
            mta_sts.POLICY_CONTENT_TYPE,
            policy,
        )
    if configurable(service):
        host = f"{autoconfig.AUTOCONFIG_HOST_LABEL}.{domain.domain}"
        xml = autoconfig.autoconfig_xml(service)
        for path in autoconfig.AUTOCONFIG_PATHS:
            documents[host, path] = (autoconfig.AUTOCONFIG_CONTENT_TYPE, xml)
        documents[host, mobileconfig.MOBILECONFIG_PATH] = (
            mobileconfig.MOBILECONFIG_CONTENT_TYPE,
            mobileconfig.mobileconfig(service),
        )
    return documents


def _text(status: int, message: str) -> WebResponse:
    return WebResponse(status, _TEXT, f"{message}\n".encode())


def _query(request: WebRequest) -> dict[str, str]:
    """The query's parameters, names lowercase (clients differ in case); refused when long."""
    if len(request.query) > MAX_QUERY_CHARACTERS:
        raise autodiscover.AutodiscoverRefused("the query string is too long")
    try:
        fields = parse_qsl(request.query, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:  # more fields than that
        raise autodiscover.AutodiscoverRefused("the query has too many fields") from None
    return {k.lower(): v for k, v in fields}


def _autodiscover_json(service: MailService, request: WebRequest) -> WebResponse:
    try:
        params = _query(request)
        # Also the path form: /autodiscover/autodiscover.json/v1.0/<address>?Protocol=...
        tail = request.path[len(autodiscover.JSON_PATH) :].strip("/").split("/")
        email = unquote(tail[-1]) if tail[0] else params.get("email", "")
        body = autodiscover.json_v2(service, email, params.get("protocol", ""))
    except autodiscover.AutodiscoverRefused as err:
        return WebResponse(400, autodiscover.JSON_CONTENT_TYPE, autodiscover.json_error(str(err)))
    return WebResponse(200, autodiscover.JSON_CONTENT_TYPE, body)


def _autodiscover_pox(service: MailService, request: WebRequest) -> WebResponse:
    try:
        answer = autodiscover.read_request(service, request.body)
    except autodiscover.AutodiscoverRefused as err:
        error = autodiscover.pox_error(str(err))
        return WebResponse(400, autodiscover.POX_CONTENT_TYPE, error)
    return WebResponse(
        200, autodiscover.POX_CONTENT_TYPE, autodiscover.pox_response(service, answer)
    )


def _mobileconfig(service: MailService, request: WebRequest) -> WebResponse:
    try:
        email = _query(request).get("email")
        address = None if email is None else autodiscover.own_email(service, email)
    except autodiscover.AutodiscoverRefused as err:
        return _text(400, str(err))
    return WebResponse(
        200, mobileconfig.MOBILECONFIG_CONTENT_TYPE, mobileconfig.mobileconfig(service, address)
    )


def _misdirected(service: MailService, request: WebRequest) -> WebResponse | None:
    """The refusal of a request that is not ours or that a URL cannot hold (control
    characters and spaces: what could split a header line of the redirect)."""
    if any(ord(c) <= 32 or ord(c) == 127 for c in request.path + request.query):
        return _text(400, "the request target has control characters or spaces")
    host = request.host.lower().rstrip(".")
    if host not in web_hosts(service):
        return _text(421, f"{host[:80]!r} is not served here")
    return None


def respond(service: MailService, request: WebRequest) -> WebResponse:
    """The answer to one HTTPS request (for HEAD the server sends the headers only)."""
    refused = _misdirected(service, request)
    if refused is not None:
        return refused
    host = request.host.lower().rstrip(".")
    if len(request.body) > MAX_BODY_BYTES:
        return _text(413, f"a request body is at most {MAX_BODY_BYTES} bytes")
    path = request.path
    dynamic = host.startswith(autodiscover.AUTODISCOVER_HOST_LABEL + ".")
    if dynamic and path in autodiscover.POX_PATHS:
        if request.method != "POST":
            return _text(405, "Autodiscover answers a POSTed request")
        return _autodiscover_pox(service, request)
    if request.method not in ("GET", "HEAD"):
        return _text(405, "only GET and HEAD are served here")
    if dynamic and (
        path == autodiscover.JSON_PATH or path.startswith(autodiscover.JSON_PATH + "/")
    ):
        return _autodiscover_json(service, request)
    on_autoconfig = host.startswith(autoconfig.AUTOCONFIG_HOST_LABEL + ".")
    if on_autoconfig and path == mobileconfig.MOBILECONFIG_PATH and request.query:
        return _mobileconfig(service, request)
    document = static_documents(service).get((host, path))
    if document is None:
        return _text(404, "not found")
    return WebResponse(200, *document)


def https_redirect(service: MailService, request: WebRequest) -> WebResponse:
    """The answer on plain HTTP: a redirect to the same URL over HTTPS, for our hosts only."""
    refused = _misdirected(service, request)
    if refused is not None:
        return refused
    host = request.host.lower().rstrip(".")
    query = f"?{request.query}" if request.query else ""
    location = f"https://{host}{request.path}{query}"
    return WebResponse(301, _TEXT, b"", (*SECURITY_HEADERS[1:], ("Location", location)))
