"""AWS Signature Version 4 for one HTTP request, stdlib only (hashlib, hmac).

Owns: the canonical request (method, URI-encoded path, sorted query, signed headers, payload
hash), the string to sign (``AWS4-HMAC-SHA256``, timestamp, credential scope, hash of the
canonical request), the signing key (the HMAC-SHA256 chain secret → date → region → service →
``aws4_request``) and the headers a request carries: ``x-amz-date``, ``x-amz-security-token`` when
the credentials are temporary (signed, as AWS requires), ``x-amz-content-sha256`` on request, and
``Authorization``. Pure functions of their arguments, the time included, so the published AWS
examples and test suite vectors check them exactly.

Every header passed in is signed, with ``host`` and ``x-amz-date`` always among them. The URL is
the one put on the wire: its path is URI-encoded once more (all services but S3 sign the path
encoded twice) and its query is decoded and re-encoded the AWS way (RFC 3986 unreserved
characters kept, everything else ``%XX``) before sorting.

Route 53 is a global service with one endpoint (https://route53.amazonaws.com): requests to it are
signed for region ``us-east-1`` and service ``route53`` whatever region the rest of an account
uses (``ROUTE53_REGION``, ``ROUTE53_SERVICE``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
ROUTE53_REGION = "us-east-1"
ROUTE53_SERVICE = "route53"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_SPACES = re.compile(r"\s+")


def amz_date(now: datetime) -> str:
    """``now`` as ``x-amz-date`` wants it (``20150830T123600Z``); a naive time is taken as UTC."""
    utc = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return utc.strftime("%Y%m%dT%H%M%SZ")


def _encode(text: str, safe: str = "") -> str:
    # RFC 3986 unreserved characters stay as they are; quote() already keeps "-_.~" and letters
    # and digits, and encodes UTF-8 bytes as upper-case %XX, as SigV4 requires.
    return quote(text, safe=safe)


def canonical_uri(path: str) -> str:
    """The path as signed: the wire path URI-encoded again, slashes kept (not S3's rule)."""
    return _encode(path or "/", safe="/")


def canonical_query(query: str) -> str:
    """The query string as signed: each name and value encoded the AWS way, sorted by name, then
    by value (a name without ``=`` has an empty value)."""
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _header_value(value: str) -> str:
    # Leading and trailing spaces trimmed, inner runs of white space made one space.
    return _SPACES.sub(" ", value.strip())


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """(canonical headers block, signed headers list) of ``headers``, all of them signed."""
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        merged.setdefault(name.strip().lower(), []).append(_header_value(value))
    names = sorted(merged)
    block = "".join(f"{name}:{','.join(merged[name])}\n" for name in names)
    return block, ";".join(names)


def canonical_request(
    method: str, url: str, headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """(canonical request, signed headers list). ``headers`` are the ones to sign, host included."""
    parts = urlsplit(url)
    block, signed = canonical_headers(headers)
    text = "\n".join(
        (
            method.upper(),
            canonical_uri(parts.path),
            canonical_query(parts.query),
            block,
            signed,
            payload_hash,
        )
    )
    return text, signed


def credential_scope(stamp: str, region: str, service: str) -> str:
    """``20150830/us-east-1/iam/aws4_request`` for ``x-amz-date`` ``stamp``."""
    return f"{stamp[:8]}/{region}/{service}/{TERMINATOR}"


def string_to_sign(stamp: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{stamp}\n{scope}\n{digest}"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The key that signs: HMAC-SHA256 chained over the date (``YYYYMMDD``), region, service."""
    key = _hmac(("AWS4" + secret_key).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    region: str,
    service: str,
    now: datetime,
    content_sha256: bool = False,
) -> dict[str, str]:
    """The headers to add to the request so that AWS accepts it as signed at ``now``.

    ``url`` and ``body`` are exactly what is sent; ``headers`` are the caller's own, all signed.
    ``Host`` is the URL's ``host[:port]`` unless given (it is what urllib sends). Returns
    ``x-amz-date``, ``x-amz-security-token`` (with a session token), ``x-amz-content-sha256``
    (with ``content_sha256``) and ``Authorization``; the caller's headers are not repeated.
    """
    stamp = amz_date(now)
    payload_hash = hashlib.sha256(body).hexdigest()
    added: dict[str, str] = {"x-amz-date": stamp}
    if session_token:
        added["x-amz-security-token"] = session_token
    if content_sha256:
        added["x-amz-content-sha256"] = payload_hash
    signed_headers = {**headers, **added}
    if not any(name.lower() == "host" for name in headers):
        signed_headers["host"] = urlsplit(url).netloc.rpartition("@")[2]
    canonical, signed = canonical_request(method, url, signed_headers, payload_hash)
    scope = credential_scope(stamp, region, service)
    key = signing_key(secret_key, stamp[:8], region, service)
    signature = hmac.new(
        key, string_to_sign(stamp, scope, canonical).encode(), hashlib.sha256
    ).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )
    return added
