"""First contact: the stack comes up and one message goes in and is read back."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from tests.mail.conftest import Stack


def test_inbound_message_reaches_the_mailbox(stack: Stack) -> None:
    message = EmailMessage()
    message["From"] = "someone@example.net"
    message["To"] = "alice@example.com"
    message["Subject"] = "smoke test"
    message["Date"] = formatdate()
    message["Message-ID"] = make_msgid(domain="example.net")
    message.set_content("hello")
    stack.send_from_internet("alice@example.com", message.as_bytes())
    received = stack.wait_for_subject("alice", "smoke test")
    assert received.get_payload().strip() == "hello"
    # rspamd checked the sender's SPF against the internet namespace's DNS.
    assert "spf=pass" in str(received["Authentication-Results"])
