"""Owns the Thunderbird autoconfig document (``clientConfig`` version 1.1), served at
``https://autoconfig.<domain>/mail/config-v1.1.xml`` and at
``/.well-known/autoconfig/mail/config-v1.1.xml`` of the domain.

One ``incomingServer`` per enabled IMAP/POP3 port and one ``outgoingServer`` per enabled
submission port (``clients``), the preferred first: Thunderbird offers the first and lets the
user pick another. Every port wants TLS (``SSL`` or ``STARTTLS``) and a cleartext password inside
it; the username is the whole address (``%EMAILADDRESS%``), as Dovecot's logins are.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mailstack.api.assemble import MailService
from mailstack.render.web.clients import ClientEndpoint, incoming_endpoints, outgoing_endpoints
from mailstack.render.web.xmltext import child, xml_document

AUTOCONFIG_PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")
AUTOCONFIG_HOST_LABEL = "autoconfig"
AUTOCONFIG_CONTENT_TYPE = "application/xml; charset=utf-8"
USERNAME_PLACEHOLDER = "%EMAILADDRESS%"


def _server(provider: ET.Element, endpoint: ClientEndpoint) -> None:
    tag = "incomingServer" if endpoint.incoming else "outgoingServer"
    server = child(provider, tag, type=endpoint.protocol)
    child(server, "hostname", endpoint.host)
    child(server, "port", endpoint.port)
    child(server, "socketType", endpoint.security)
    child(server, "username", USERNAME_PLACEHOLDER)
    child(server, "authentication", "password-cleartext")


def autoconfig_xml(service: MailService) -> bytes:
    domain = service.domain.domain
    root = ET.Element("clientConfig", {"version": "1.1"})
    provider = child(root, "emailProvider", id=domain)
    child(provider, "domain", domain)
    child(provider, "displayName", domain)
    child(provider, "displayShortName", domain)
    for endpoint in incoming_endpoints(service) + outgoing_endpoints(service):
        _server(provider, endpoint)
    return xml_document(root)
