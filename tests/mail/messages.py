"""Owns what the mail tests write: the pod names, the remote sender, unique subjects and the
plain-text messages a remote MTA or a user sends.

The tests share one stack, so every subject carries a random token: a test finds its own mail
among everything the others delivered.
"""

from __future__ import annotations

import secrets
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

MTA = "example-com-mta-0"  # Postfix and rspamd
MDA = "example-com-mda-0"  # Dovecot
SENDER = "someone@example.net"  # remote: example.net's SPF authorises the test's internet


def token(prefix: str, separator: str = " ") -> str:
    """``prefix`` made unique; ``separator="-"`` where it must be one word (address, ENVID)."""
    return f"{prefix}{separator}{secrets.token_hex(4)}"


def text_message(
    subject: str, to: str, body: str = "hello\n", sender: str = SENDER, **headers: str
) -> EmailMessage:
    """A plain-text message; ``headers`` are extra ones (``Reply_To="..."`` is ``Reply-To``)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    # What a real remote MTA would carry: without them rspamd rightly scores the mail as spammy.
    message["Date"] = formatdate()
    message["Message-ID"] = make_msgid(domain=sender.split("@")[-1])
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def raw_text_message(subject: str, to: str, body: str = "hello\n", sender: str = SENDER) -> bytes:
    """``text_message`` as it goes over the wire (CRLF line ends), for SMTP DATA and IMAP APPEND."""
    return text_message(subject, to, body, sender).as_bytes(policy=SMTP)
