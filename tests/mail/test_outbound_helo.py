"""The HELO name Postfix gives other servers: the host name by default (Postfix's
``$myhostname``), ``spec.outbound.heloName`` when set (``smtp_helo_name``), as the session's
smarthost (the sink, which records the name it was greeted with) sees it."""

from __future__ import annotations

from tests.mail.conftest import HOSTNAME, Stack, stack_documents
from tests.mail.messages import raw_text_message, token
from tests.mail.test_delivery import send

ALICE = "alice@example.com"


def greeted_with(stack: Stack) -> str:
    friend = f"{token('friend', '-')}@example.net"
    subject = token("which helo")
    send(stack, friend, raw_text_message(subject, friend, sender=ALICE), ALICE, "submission")
    return str(stack.wait_for_sink(lambda m: m["Subject"] == subject)["X-Sink-Helo"])


def greeted_once_up(stack: Stack) -> str:
    """``greeted_with`` once submission relays again (a new main.cf rolls the MTA pod)."""

    def attempt() -> str | None:
        try:
            return greeted_with(stack)
        except OSError:  # refused while the pod restarts
            return None
        except AssertionError as err:
            # 587 is Dovecot's: while the MTA pod restarts, it answers MAIL FROM with a transient
            # reply ("4.4.0 ... Failed to connect to relay server", "4.3.0 Try again later").
            if str(err).startswith("b'4."):
                return None
            raise

    return str(stack.wait_for("submission after the roll", attempt, timeout=120))


def test_the_helo_name_is_the_host_name_then_the_one_given(stack: Stack) -> None:
    assert greeted_with(stack) == HOSTNAME
    outbound = {"outbound": {"heloName": "out1.example.com"}}
    stack.write_inputs(stack_documents(stack.internet.ip, outbound))
    stack.rerender()
    try:
        assert greeted_once_up(stack) == "out1.example.com"
    finally:
        stack.write_inputs(stack_documents(stack.internet.ip))
        stack.rerender()
    assert greeted_once_up(stack) == HOSTNAME
