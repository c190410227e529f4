"""Signature Version 4 checked the way Route 53 checks it, for the fake's REST API.

An implementation of its own, sharing no code with the module under test: the credential scope
(date of ``x-amz-date``, region us-east-1, service route53), the signed headers (``host``,
``x-amz-date``, and ``x-amz-security-token`` when sent), the session token a temporary key needs,
the time (5 minutes either way, as Route 53), and the signature recomputed from the request as
received. Refusals are Route 53's ``ClientError`` codes (``SignatureDoesNotMatch``,
``InvalidClientTokenId``, ...).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from tests.fakes.route53 import ClientError

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


def percent_decode(text: str) -> bytes:
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
            (_percent_encode(percent_decode(name)), _percent_encode(percent_decode(value)))
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
