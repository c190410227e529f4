"""Owns what the client-configuration documents announce: the mail host, the enabled public
ports as client endpoints (protocol, port, implicit TLS or STARTTLS), preferred first, and the
login name.

The ports come from ``render.workloads.enabled_public_ports`` (the port table and
``spec.protocols``), so a document never offers a port the Services do not open. Each port's
preference is its SRV record's priority (``layout.PUBLIC_PORTS``): implicit TLS before STARTTLS
(RFC 8314 §5.1), IMAP before POP3, as the SRV records say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailstack.api.assemble import MailService
from mailstack.render.workloads import enabled_public_ports

ClientProtocol = Literal["imap", "pop3", "smtp"]
Security = Literal["SSL", "STARTTLS"]

# The public ports a mail client is configured with (25 and ManageSieve are not): what each
# speaks and how it starts TLS. Keyed by the port table's names; a test holds every announced
# port of the table to an entry here or to CLIENTLESS_PORTS.
CLIENT_PORTS: dict[str, tuple[ClientProtocol, Security]] = {
    "imaps": ("imap", "SSL"),
    "imap": ("imap", "STARTTLS"),
    "pop3s": ("pop3", "SSL"),
    "pop3": ("pop3", "STARTTLS"),
    "submissions": ("smtp", "SSL"),
    "submission": ("smtp", "STARTTLS"),
}
CLIENTLESS_PORTS = frozenset({"smtp", "sieve"})


@dataclass(frozen=True)
class ClientEndpoint:
    """One port a mail client may use: protocol, host, port number and how TLS starts (every
    one of our client ports requires TLS and a password login)."""

    protocol: ClientProtocol
    host: str
    port: int
    security: Security

    @property
    def incoming(self) -> bool:
        return self.protocol != "smtp"


def client_endpoints(service: MailService) -> list[ClientEndpoint]:
    """The enabled client ports of the MailDomain, the preferred first."""
    host = service.domain.hostname
    ports = [p for p in enabled_public_ports(service) if p.name in CLIENT_PORTS]
    ports.sort(key=lambda p: p.srv.priority if p.srv else 0)
    return [ClientEndpoint(*_kind(p.name, host, p.number)) for p in ports]


def _kind(name: str, host: str, number: int) -> tuple[ClientProtocol, str, int, Security]:
    protocol, security = CLIENT_PORTS[name]
    return protocol, host, number, security


def incoming_endpoints(service: MailService) -> list[ClientEndpoint]:
    return [e for e in client_endpoints(service) if e.incoming]


def outgoing_endpoints(service: MailService) -> list[ClientEndpoint]:
    return [e for e in client_endpoints(service) if not e.incoming]


def configurable(service: MailService) -> bool:
    """Whether a client can be set up from the documents: one way in and one way out. With
    IMAP and POP3 both off, or both submission ports off, the client documents are not served
    (an account without one of them is no account a client can create)."""
    return bool(incoming_endpoints(service)) and bool(outgoing_endpoints(service))


def login_name(address: str) -> str:
    """The login of a mailbox: its address, lowercase, as Dovecot's ``auth_username_format =
    %Lu`` and the passwd-file's keys (render.users) have it."""
    return address.lower()
