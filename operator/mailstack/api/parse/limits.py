"""``spec.limits`` of a MailDomain: the size of a message, and what one client address may do.

Owns: the bounds of each limit. ``perClient`` holds the defences against hostile clients that a
user may want to tune (docs/operator.md, "Hostile clients"); the fixed ones (the tarpit for
unknown recipients, the login processes) live in the templates.
"""

from __future__ import annotations

import ipaddress

from mailstack.api import models, validate
from mailstack.api.errors import FieldError
from mailstack.api.reader import Reader, integer, join

# The per-client counters, by field name: 0 turns one off (Postfix's and Dovecot's meaning).
_CLIENT_COUNTS = {
    "smtpConnections": "smtp_connections",
    "smtpConnectionsPerMinute": "smtp_connections_per_minute",
    "smtpMessagesPerMinute": "smtp_messages_per_minute",
    "smtpRecipientsPerMinute": "smtp_recipients_per_minute",
    "smtpLoginsPerMinute": "smtp_logins_per_minute",
    "sessionsPerUser": "sessions_per_user",
}
MAX_CLIENT_COUNT = 100000
MAX_EXEMPT_NETWORKS = 32


def _message_size(value: object) -> int:
    size = validate.size_bytes(value)
    if not 1024 <= size <= 2 * 1024**3:
        raise FieldError(f"{value!r} is out of range: expected 1Ki to 2Gi")
    return size


def ip_network(value: object) -> str:
    """An IP address or a CIDR range, in its canonical text form (host bits cleared; a single
    address is a /32 or /128 range)."""
    if not isinstance(value, str):
        raise FieldError("expected an IP address or a CIDR range (string)")
    try:
        parsed = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise FieldError(f"{value!r} is not an IP address or a CIDR range") from None
    return str(parsed)


def parse_limits(r: Reader, value: object) -> models.Limits:
    path = "spec.limits"
    limits = r.mapping(value, path, {"messageSize", "recipientsPerMessage", "perClient"})
    return models.Limits(
        message_size=r.field(
            limits, "messageSize", path, _message_size, models.Limits.message_size
        ),
        recipients_per_message=r.field(
            limits,
            "recipientsPerMessage",
            path,
            integer(1, 10000),
            models.Limits.recipients_per_message,
        ),
        per_client=_per_client(r, limits.get("perClient"), join(path, "perClient")),
    )


def _per_client(r: Reader, value: object, path: str) -> models.ClientLimits:
    fields = r.mapping(value, path, {*_CLIENT_COUNTS, "exemptNetworks"})
    default = models.ClientLimits()
    counts = {
        attribute: r.field(
            fields, key, path, integer(0, MAX_CLIENT_COUNT), getattr(default, attribute)
        )
        for key, attribute in _CLIENT_COUNTS.items()
    }
    exempt = r.items(fields, "exemptNetworks", path, ip_network, MAX_EXEMPT_NETWORKS)
    return models.ClientLimits(**counts, exempt_networks=exempt)
