"""Owns the Apple configuration profile (``.mobileconfig``) of a domain: an unsigned plist
with one ``com.apple.mail.managed`` payload, the preferred incoming (IMAP, else POP3) and
outgoing ports, TLS on both, password authentication, and no password.

Without an address the profile leaves the address and the logins out and the device asks for
them; with one (checked to be of this domain) it carries them. The UUIDs are derived from the
domain (UUID version 5), so every render is the same profile and installing a newer one
replaces the old rather than adding a second account.
"""

from __future__ import annotations

import plistlib
import uuid
from typing import Any

from mailstack.api.assemble import MailService
from mailstack.render.web.clients import incoming_endpoints, login_name, outgoing_endpoints

MOBILECONFIG_PATH = "/email.mobileconfig"
MOBILECONFIG_CONTENT_TYPE = "application/x-apple-aspen-config"
_ACCOUNT_TYPES = {"imap": "EmailTypeIMAP", "pop3": "EmailTypePOP"}


def _identifier(domain: str) -> str:
    """A reverse-DNS identifier of the profile: the domain's labels reversed."""
    return ".".join(reversed(domain.split("."))) + ".mailstack.mail"


def _uuid(domain: str, part: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{part}.{domain}")).upper()


def mobileconfig(service: MailService, address: str | None = None) -> bytes:
    """The profile; ``address`` must be one of this domain, already checked and lowercase."""
    domain = service.domain.domain
    incoming = incoming_endpoints(service)[0]
    outgoing = outgoing_endpoints(service)[0]
    identifier = _identifier(domain)
    account: dict[str, Any] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.account",
        "PayloadUUID": _uuid(domain, "account"),
        "PayloadDisplayName": f"Mail for {domain}",
        "EmailAccountDescription": domain,
        "EmailAccountType": _ACCOUNT_TYPES[incoming.protocol],
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    if address is not None:
        account["EmailAddress"] = address
        account["IncomingMailServerUsername"] = login_name(address)
        account["OutgoingMailServerUsername"] = login_name(address)
    profile: dict[str, Any] = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": identifier,
        "PayloadUUID": _uuid(domain, "profile"),
        "PayloadDisplayName": f"Mail for {domain}",
        "PayloadDescription": f"The mail servers of {domain}; the password is asked for.",
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [account],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)
