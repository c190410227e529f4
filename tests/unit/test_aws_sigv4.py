"""The SigV4 signer against AWS's published examples, never against values of our own.

Sources of the expected values:

- The IAM ``ListUsers`` example of the AWS General Reference, "Create a signed AWS API request"
  (formerly "Signature Version 4 signing process": sigv4-create-canonical-request,
  sigv4-create-string-to-sign, sigv4-calculate-signature): ``GET
  https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08`` with ``Content-Type:
  application/x-www-form-urlencoded; charset=utf-8`` at 20150830T123600Z; canonical request hash
  ``f536975d…``, signing key ``c4afb1cc…``, signature ``5d672d79…``.
- The signing key example of "Examples of how to derive a signing key for Signature Version 4"
  (signature-v4-examples): date 20120215, us-east-1, iam → ``f4780e2d…``.
- The AWS Signature Version 4 test suite (aws-sig-v4-test-suite, signature-v4-test-suite.html;
  also shipped as fixtures by aws-c-auth and the AWS SDK for JavaScript's ``signature-v4``):
  service ``service``, region us-east-1, the same key pair and time; cases ``get-vanilla``
  (with its canonical request and string to sign), ``get-vanilla-query-order-key-case``,
  ``post-vanilla``, ``post-x-www-form-urlencoded`` and ``post-sts-header-before`` (a session
  token, signed).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailstack.dns.providers.aws.sigv4 import (
    EMPTY_SHA256,
    amz_date,
    canonical_query,
    canonical_request,
    credential_scope,
    sign_request,
    signing_key,
    string_to_sign,
)

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WHEN = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
SUITE_SCOPE = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
# The session token of the suite's post-sts-header-before case.
STS_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSP"
    "fIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7"
    "WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlz"
    "m8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
)


def sign(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    token: str | None = None,
    service: str = "service",
    content_sha256: bool = False,
) -> dict[str, str]:
    """Signed with the reference vectors' key, in us-east-1, at their time (the test suite's
    service is called "service")."""
    return sign_request(
        method,
        url,
        headers or {},
        body,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        session_token=token,
        region="us-east-1",
        service=service,
        now=WHEN,
        content_sha256=content_sha256,
    )


IAM_URL = "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08"
IAM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def test_the_iam_list_users_example() -> None:
    headers = {**IAM_HEADERS, "Host": "iam.amazonaws.com", "X-Amz-Date": amz_date(WHEN)}
    canonical, signed = canonical_request("GET", IAM_URL, headers, EMPTY_SHA256)
    assert canonical == (
        "GET\n/\nAction=ListUsers&Version=2010-05-08\n"
        "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
        "host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
        "content-type;host;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert signed == "content-type;host;x-amz-date"
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    )
    scope = credential_scope("20150830T123600Z", "us-east-1", "iam")
    assert string_to_sign("20150830T123600Z", scope, canonical) == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n"
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    )
    assert signing_key(SECRET_KEY, "20150830", "us-east-1", "iam").hex() == (
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    )
    added = sign("GET", IAM_URL, IAM_HEADERS, service="iam")
    assert added == {
        "x-amz-date": "20150830T123600Z",
        "Authorization": "AWS4-HMAC-SHA256 "
        "Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
    }


def test_the_documented_signing_key_derivation() -> None:
    assert signing_key(SECRET_KEY, "20120215", "us-east-1", "iam").hex() == (
        "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    )


def test_suite_get_vanilla_step_by_step() -> None:
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
    canonical, _ = canonical_request("GET", "https://example.amazonaws.com/", headers, EMPTY_SHA256)
    assert canonical == (
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
        "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    scope = credential_scope("20150830T123600Z", "us-east-1", "service")
    assert string_to_sign("20150830T123600Z", scope, canonical) == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    )


SUITE_VECTORS: list[tuple[str, str, str, dict[str, str], bytes, str, str]] = [
    (
        "get-vanilla",
        "GET",
        "https://example.amazonaws.com/",
        {},
        b"",
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    (
        "get-vanilla-query-order-key-case",
        "GET",
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        {},
        b"",
        "host;x-amz-date",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    (
        "post-vanilla",
        "POST",
        "https://example.amazonaws.com/",
        {},
        b"",
        "host;x-amz-date",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    (
        "post-x-www-form-urlencoded",
        "POST",
        "https://example.amazonaws.com/",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"Param1=value1",
        "content-type;host;x-amz-date",
        "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "url", "headers", "body", "signed", "signature"),
    [pytest.param(*vector, id=vector[0]) for vector in SUITE_VECTORS],
)
def test_suite_vectors(
    name: str,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    signed: str,
    signature: str,
) -> None:
    added = sign(method, url, headers, body)
    assert added["Authorization"] == (
        f"AWS4-HMAC-SHA256 {SUITE_SCOPE}, SignedHeaders={signed}, Signature={signature}"
    ), name
    assert added["x-amz-date"] == "20150830T123600Z"
    assert "x-amz-security-token" not in added


def test_suite_session_token_is_sent_and_signed() -> None:
    added = sign("POST", "https://example.amazonaws.com/", token=STS_TOKEN)
    assert added["x-amz-security-token"] == STS_TOKEN
    assert added["Authorization"] == (
        f"AWS4-HMAC-SHA256 {SUITE_SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, "
        "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
    )


def test_query_and_time_canonical_forms() -> None:
    assert canonical_query("Param2=value2&Param1=value1") == "Param1=value1&Param2=value2"
    # Decoded, then encoded the AWS way: unreserved characters plain, the rest upper-case %XX.
    assert canonical_query("name=%5c052.example.com.&type=TXT&flag") == (
        "flag=&name=%5C052.example.com.&type=TXT"
    )
    assert canonical_query("a=%7E*") == "a=~%2A"
    later = datetime(2015, 8, 30, 14, 36, 0, tzinfo=timezone(timedelta(hours=2)))
    assert amz_date(later) == "20150830T123600Z"
    assert amz_date(WHEN.replace(tzinfo=None)) == "20150830T123600Z"


def test_content_hash_and_host_port() -> None:
    url = "http://127.0.0.1:8053/2013-04-01/hostedzone/Z1/rrset"
    headers = {"Content-Type": "application/xml"}
    added = sign("POST", url, headers, b"<x/>", service="route53", content_sha256=True)
    assert added["x-amz-content-sha256"] == hashlib.sha256(b"<x/>").hexdigest()
    assert (
        "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date,"
        in (added["Authorization"])
    )
    assert "/20150830/us-east-1/route53/aws4_request," in added["Authorization"]
    # The port is part of the signed host, as urllib sends it.
    with_host = {**headers, "Host": "127.0.0.1:8053"}
    explicit = sign("POST", url, with_host, b"<x/>", service="route53", content_sha256=True)
    assert explicit["Authorization"] == added["Authorization"]
