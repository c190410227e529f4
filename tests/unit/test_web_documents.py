"""The client-configuration documents (render/web: clients, autoconfig, mobileconfig), checked
against the ports the render opens: every enabled client port appears, no other does."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from mailstack.api.assemble import MailService
from mailstack.api.models import MailDomain, Protocols
from mailstack.render import layout
from mailstack.render.web import site
from mailstack.render.web.autoconfig import autoconfig_xml
from mailstack.render.web.clients import CLIENT_PORTS, CLIENTLESS_PORTS, configurable
from mailstack.render.web.mobileconfig import mobileconfig
from mailstack.render.workloads import enabled_public_ports
from tests.support import example_service

PROTOCOL_SETS = [
    Protocols(),
    Protocols(pop3=False, submissions=False),
    Protocols(imap=False, submission=False, managesieve=True),
    Protocols(imap=True, pop3=False, submission=True, submissions=False),
]


def implied(service: MailService) -> set[tuple[str, str, int, str]]:
    """(element, type, port, socketType) for every enabled client port of the render."""
    result = set()
    for port in enabled_public_ports(service):
        if port.name in CLIENT_PORTS:
            protocol, security = CLIENT_PORTS[port.name]
            tag = "outgoingServer" if protocol == "smtp" else "incomingServer"
            result.add((tag, protocol, port.number, security))
    return result


def test_every_public_port_is_a_client_port_or_named_as_none() -> None:
    names = {port.name for port in layout.PUBLIC_PORTS}
    assert names == set(CLIENT_PORTS) | CLIENTLESS_PORTS
    assert not set(CLIENT_PORTS) & CLIENTLESS_PORTS


@pytest.fixture(params=PROTOCOL_SETS)
def service(request: pytest.FixtureRequest) -> MailService:
    """example.com with each of the protocol sets."""
    protocols: Protocols = request.param
    return example_service(protocols=protocols)


def test_autoconfig_has_an_element_for_each_enabled_port_and_no_other(
    service: MailService,
) -> None:
    root = ET.fromstring(autoconfig_xml(service))
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    [provider] = root.findall("emailProvider")
    assert provider.get("id") == "example.com"
    assert provider.findtext("domain") == "example.com"
    found = set()
    for server in [*provider.findall("incomingServer"), *provider.findall("outgoingServer")]:
        assert server.findtext("hostname") == "mail.example.com"
        assert server.findtext("username") == "%EMAILADDRESS%"
        assert server.findtext("authentication") == "password-cleartext"
        port = int(server.findtext("port") or 0)
        found.add((server.tag, server.get("type"), port, server.findtext("socketType")))
    assert found == implied(service)
    first = provider.find("incomingServer")
    assert first is not None and first.findtext("socketType") == "SSL"  # RFC 8314 preferred


def test_the_profile_is_a_plist_with_the_preferred_ports_and_no_password(
    service: MailService,
) -> None:
    protocols = service.domain.protocols
    profile = plistlib.loads(mobileconfig(service))
    [account] = profile["PayloadContent"]
    assert account["PayloadType"] == "com.apple.mail.managed"
    assert profile["PayloadType"] == "Configuration"
    ports = {p.number for p in enabled_public_ports(service)}
    assert account["IncomingMailServerPortNumber"] in ports
    assert account["OutgoingMailServerPortNumber"] in ports
    preferred_in = 993 if protocols.imap else 995
    preferred_out = 465 if protocols.submissions else 587
    assert account["IncomingMailServerPortNumber"] == preferred_in
    assert account["OutgoingMailServerPortNumber"] == preferred_out
    assert account["EmailAccountType"] == ("EmailTypeIMAP" if protocols.imap else "EmailTypePOP")
    assert account["IncomingMailServerUseSSL"] and account["OutgoingMailServerUseSSL"]
    assert not {"IncomingPassword", "OutgoingPassword"} & set(account)
    assert b"<key>IncomingPassword" not in mobileconfig(service)
    assert "EmailAddress" not in account


def test_the_profile_is_stable_per_domain_and_names_an_address_when_asked() -> None:
    one, again = example_service(), example_service()
    assert mobileconfig(one) == mobileconfig(again)
    other = MailService(
        MailDomain(name="o", namespace="mail", domain="example.net", hostname="mail.example.net"),
        (),
    )
    uuids = plistlib.loads(mobileconfig(one))["PayloadUUID"]
    assert uuids != plistlib.loads(mobileconfig(other))["PayloadUUID"]
    [account] = plistlib.loads(mobileconfig(one, "alice@example.com"))["PayloadContent"]
    assert account["EmailAddress"] == "alice@example.com"
    assert account["IncomingMailServerUsername"] == "alice@example.com"


def test_without_a_way_in_or_out_no_client_document_is_served() -> None:
    for protocols in (
        Protocols(imap=False, pop3=False),
        Protocols(submission=False, submissions=False),
    ):
        service = example_service(protocols=protocols)
        assert not configurable(service)
        assert site.web_hosts(service) == ()
        assert site.static_documents(service) == {}


def thunderbird_lookup(address: str, get: Callable[[str], bytes | None]) -> ET.Element | None:
    """Thunderbird's lookup order for a domain's own configuration (before its ISPDB and MX
    guesses): the autoconfig host with the address, then the domain's ``.well-known``, each
    over HTTPS and then HTTP. ``get`` is the network: a URL's body on 200, else None."""
    domain = address.rpartition("@")[2]
    for scheme in ("https", "http"):
        for url in (
            f"{scheme}://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={address}",
            f"{scheme}://{domain}/.well-known/autoconfig/mail/config-v1.1.xml",
        ):
            body = get(url)
            if body is None:
                continue
            root = ET.fromstring(body)
            if root.find(f"emailProvider/domain[.='{domain}']") is not None:
                return root
    return None


def test_thunderbird_finds_the_settings_from_the_address_alone() -> None:
    service = example_service()
    asked = []

    def get(url: str) -> bytes | None:
        asked.append(url)
        parts = urlsplit(url)
        if parts.hostname not in site.web_hosts(service):
            return None  # the domain's own web site is not ours
        request = site.WebRequest("GET", parts.hostname or "", parts.path, parts.query)
        assert parts.scheme == "https", "plain HTTP only redirects"
        response = site.respond(service, request)
        return response.body if response.status == 200 else None

    root = thunderbird_lookup("alice@example.com", get)
    assert root is not None and len(asked) == 1
    server = root.find("emailProvider/incomingServer")
    assert server is not None
    assert (server.findtext("hostname"), server.findtext("port")) == ("mail.example.com", "993")
