"""What the HTTPS endpoint answers (render/web/site.py), Autodiscover's POX and JSON v2
(render/web/autodiscover.py) included: valid requests answered, the others refused clearly."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from mailstack.api.dns_models import Dns, MtaSts
from mailstack.api.models import Protocols
from mailstack.render.web import site
from mailstack.render.web.autodiscover import (
    MAX_REQUEST_BYTES,
    OUTLOOK_RESPONSE_NS,
    AutodiscoverRefused,
    read_request,
)
from mailstack.render.web.mta_sts import mta_sts_policy
from tests.support import example_service, pox_request

SERVICE = example_service(dns=Dns(mta_sts=MtaSts(enabled=True, mode="enforce")))
AUTODISCOVER = "autodiscover.example.com"
POX = "/autodiscover/autodiscover.xml"
NS = {"a": OUTLOOK_RESPONSE_NS}


def post(body: bytes, path: str = POX) -> site.WebResponse:
    return site.respond(SERVICE, site.WebRequest("POST", AUTODISCOVER, path, body=body))


def get(host: str, path: str, query: str = "") -> site.WebResponse:
    return site.respond(SERVICE, site.WebRequest("GET", host, path, query))


def refusal(response: site.WebResponse) -> str:
    assert response.status == 400
    root = ET.fromstring(response.body)
    return root.findtext(".//{*}Error/{*}Message") or ""


def test_a_pox_request_is_answered_with_the_preferred_port_of_each_protocol() -> None:
    response = post(pox_request("Alice@Example.com"))
    assert response.status == 200
    assert response.content_type.startswith("application/xml")
    account = ET.fromstring(response.body).find("a:Response/a:Account", NS)
    assert account is not None
    protocols = {
        p.findtext("a:Type", namespaces=NS): (
            p.findtext("a:Port", namespaces=NS),
            p.findtext("a:Encryption", namespaces=NS),
            p.findtext("a:LoginName", namespaces=NS),
        )
        for p in account.findall("a:Protocol", NS)
    }
    assert protocols == {
        "IMAP": ("993", "SSL", "alice@example.com"),
        "POP3": ("995", "SSL", "alice@example.com"),
        "SMTP": ("465", "SSL", "alice@example.com"),
    }
    assert post(pox_request("alice@example.com"), "/Autodiscover/Autodiscover.xml").status == 200


def test_only_enabled_protocols_are_answered() -> None:
    service = example_service(protocols=Protocols(pop3=False, submissions=False))
    request = site.WebRequest("POST", AUTODISCOVER, POX, body=pox_request("bob@example.com"))
    root = ET.fromstring(site.respond(service, request).body)
    found = {
        (p.findtext("a:Type", namespaces=NS), p.findtext("a:Port", namespaces=NS))
        for p in root.iterfind(".//a:Protocol", NS)
    }
    assert found == {("IMAP", "993"), ("SMTP", "587")}
    assert "<Encryption>TLS</Encryption>" in site.respond(service, request).body.decode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (pox_request("alice@example.net"), "example.net is not served here"),
        (pox_request("not an address"), "no valid email address"),
        (b"<Autodiscover><Request>", "not well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "alice@example.com">]>'
            b"<Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>",
            "DOCTYPE",
        ),
        (
            b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>",
            "DOCTYPE",
        ),
        (
            b'<!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b"<Autodiscover>&b;</Autodiscover>",
            "DOCTYPE",
        ),
        (
            pox_request("alice@example.com").replace(
                b"outlook/responseschema/2006a", b"mobilesync/responseschema/2006"
            ),
            "only the response schema",
        ),
    ],
    ids=["foreign", "no-address", "malformed", "entity", "external", "laughs", "eas"],
)
def test_a_bad_pox_request_is_refused_with_the_reason(body: bytes, reason: str) -> None:
    assert reason in refusal(post(body))


def test_an_oversized_request_is_refused_unread() -> None:
    body = pox_request("a" * MAX_REQUEST_BYTES + "@example.com")
    response = post(body)
    assert response.status == 413 and b"at most 4096 bytes" in response.body
    with pytest.raises(AutodiscoverRefused, match="larger than 4096 bytes"):
        read_request(SERVICE, body)


def test_pox_wants_a_post() -> None:
    assert get(AUTODISCOVER, POX).status == 405


def test_the_json_endpoint_points_at_the_pox_one() -> None:
    for path, query in (
        ("/autodiscover/autodiscover.json", "Email=alice@example.com&Protocol=AutodiscoverV1"),
        ("/autodiscover/autodiscover.json/v1.0/alice%40example.com", "Protocol=autodiscoverv1"),
    ):
        response = get(AUTODISCOVER, path, query)
        assert response.status == 200, response.body
        assert json.loads(response.body) == {
            "Protocol": "AutodiscoverV1",
            "Url": "https://autodiscover.example.com/Autodiscover/Autodiscover.xml",
        }
    for query, reason in (
        ("Email=alice@example.com&Protocol=ActiveSync", "only AutodiscoverV1"),
        ("Email=alice@example.org&Protocol=AutodiscoverV1", "example.org is not served"),
        ("Protocol=AutodiscoverV1", "no valid email address"),
        ("x=" + "y" * 2000, "too long"),
        ("&".join(f"f{n}=1" for n in range(20)), "too many fields"),
    ):
        response = get(AUTODISCOVER, "/autodiscover/autodiscover.json", query)
        assert response.status == 400
        assert reason in json.loads(response.body)["ErrorMessage"]


def test_the_policy_is_served_on_the_mta_sts_host_only() -> None:
    response = get("mta-sts.example.com", "/.well-known/mta-sts.txt")
    assert (response.status, response.body) == (200, mta_sts_policy(SERVICE.domain).encode())
    assert response.content_type.startswith("text/plain")
    assert get("autoconfig.example.com", "/.well-known/mta-sts.txt").status == 404
    without = example_service()
    assert "mta-sts.example.com" not in site.web_hosts(without)
    request = site.WebRequest("GET", "mta-sts.example.com", "/.well-known/mta-sts.txt")
    assert site.respond(without, request).status == 421


def test_the_profile_takes_an_address_of_the_domain_only() -> None:
    path = "/email.mobileconfig"
    assert (
        b"alice@example.com" in get("autoconfig.example.com", path, "email=alice@example.com").body
    )
    refused = get("autoconfig.example.com", path, "email=alice@example.net")
    assert refused.status == 400 and b"not served here" in refused.body
    assert get("autoconfig.example.com", path).status == 200
    assert get("mta-sts.example.com", path, "email=alice@example.com").status == 404
    assert get("autoconfig.example.com", path, "a&" * 20).status == 400


def test_nothing_else_is_served() -> None:
    assert site.web_hosts(SERVICE) == (
        "mta-sts.example.com",
        "autoconfig.example.com",
        "autodiscover.example.com",
    )
    assert get("autoconfig.example.com", "/").status == 404
    assert get("autoconfig.example.com", "/mail/").status == 404
    assert get("www.example.com", "/mail/config-v1.1.xml").status == 421
    assert get("autoconfig.example.com", "/mail/config-v1.1.xml").status == 200
    assert get("Autoconfig.Example.com.", "/mail/config-v1.1.xml").status == 200
    put = site.WebRequest("PUT", "autoconfig.example.com", "/mail/config-v1.1.xml", body=b"x")
    assert site.respond(SERVICE, put).status == 405
    assert get("autoconfig.example.com", "/mail/config-v1.1.xml\r\nX: y").status == 400


def test_every_answer_carries_the_security_headers() -> None:
    for response in (
        get("autoconfig.example.com", "/mail/config-v1.1.xml"),
        get("autoconfig.example.com", "/nothing"),
        post(b"<x/>"),
        get("elsewhere.example", "/"),
    ):
        headers = dict(response.headers)
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert "Strict-Transport-Security" in headers


def test_plain_http_redirects_to_https_for_our_hosts() -> None:
    request = site.WebRequest("GET", "autoconfig.example.com", "/mail/config-v1.1.xml", "a=b")
    response = site.https_redirect(SERVICE, request)
    assert response.status == 301
    assert dict(response.headers)["Location"] == (
        "https://autoconfig.example.com/mail/config-v1.1.xml?a=b"
    )
    assert "Strict-Transport-Security" not in dict(response.headers)  # not over plain HTTP
    assert site.https_redirect(SERVICE, site.WebRequest("GET", "evil.example", "/")).status == 421
