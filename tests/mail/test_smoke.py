"""First contact: the stack comes up and one message goes in and is read back."""

from __future__ import annotations

from email.message import EmailMessage

from tests.mail.conftest import Stack


def test_inbound_message_reaches_the_mailbox(stack: Stack) -> None:
    message = EmailMessage()
    message["From"] = "someone@example.net"
    message["To"] = "alice@example.com"
    message["Subject"] = "smoke test"
    message.set_content("hello")
    with stack.smtp("smtp") as smtp:
        smtp.send_message(message)
    received = stack.wait_for_subject("alice", "smoke test")
    assert received.get_payload().strip() == "hello"
