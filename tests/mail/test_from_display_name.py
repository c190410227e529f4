"""Submission: the From: header's display name or comments show no address but the sender's,
and Sender: and the Resent- headers hold the sender's address.

Found by a check from outside: a logged-in user could put someone else's address where a mail
client shows the author (the display name, a comment, an encoded word) and have the mail signed
with the domain's DKIM key. rspamd's MAILSTACK_FROM_ADDRESS_IN_NAME (rspamd.lua) refuses it.
"""

from __future__ import annotations

import base64
import email.utils

import pytest

from tests.mail.conftest import Stack
from tests.mail.messages import token
from tests.mail.test_submission import PORTS, login, wait_for_raw

ALICE = "alice@example.com"
REFUSED = (
    b"5.7.1 The display name of the From: header must not show an address other than "
    b"your sender address"
)


def _encoded(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def _submit_headers(stack: Stack, port: str, headers: str, subject: str) -> tuple[int, bytes]:
    raw = f"{headers}\r\nTo: erin@example.com\r\nSubject: {subject}\r\n"
    raw += f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n"
    with login(stack, port, "alice") as smtp:
        assert smtp.mail(ALICE)[0] == 250
        assert smtp.rcpt("erin@example.com")[0] == 250
        return smtp.data((raw + "\r\nhello\r\n").encode())


def _submit(stack: Stack, port: str, from_header: str, subject: str) -> tuple[int, bytes]:
    return _submit_headers(stack, port, f"From: {from_header}", subject)


@pytest.mark.parametrize("port", PORTS)
def test_another_address_in_the_display_name_or_a_comment_is_refused(
    stack: Stack, port: str
) -> None:
    forms = [
        f'"bob@example.com" <{ALICE}>',  # a quoted display name
        f"{_encoded('bob@example.com')} <{ALICE}>",  # an encoded word
        f"{ALICE} (bob@example.com)",  # a comment
        f'"BOB@EXAMPLE.COM" <{ALICE}>',  # another case
        f'"Bob <bob@example.com>" <{ALICE}>',  # angle brackets inside the name
        f'"{_encoded("bob@example.com")}" <{ALICE}>',  # an encoded word in quotes
        f'"bob\uff20example.com" <{ALICE}>',  # a full-width at sign
    ]
    for form in forms:
        code, text = _submit(stack, port, form, token("spoofed name"))
        assert (code, text) == (554, REFUSED), (form, code, text)


# Dots a reader takes for the dot of a domain (outside check, 2026-12-07: these passed).
LOOK_ALIKE_DOTS = {
    "one-dot-leader": "\u2024",
    "small-full-stop": "\ufe52",
    "fullwidth-full-stop": "\uff0e",
    "ideographic-full-stop": "\u3002",
    "halfwidth-ideographic-full-stop": "\uff61",
    "middle-dot": "\u00b7",
    "raised-dot": "\u2e33",
    # Outside re-check, 2026-12-07: NFC makes U+0387 a middle dot; U+30FB and the rest are
    # confusable with it or with "." (UTS #39).
    "greek-ano-teleia": "\u0387",
    "katakana-middle-dot": "\u30fb",
    "halfwidth-katakana-middle-dot": "\uff65",
    "bullet-operator": "\u2219",
    "dot-operator": "\u22c5",
    "arabic-full-stop": "\u06d4",
    "vai-full-stop": "\ua60e",
}


@pytest.mark.parametrize("dot", list(LOOK_ALIKE_DOTS))
def test_a_display_name_with_a_look_alike_dot_is_refused(stack: Stack, dot: str) -> None:
    look_alike = LOOK_ALIKE_DOTS[dot]
    forms = [
        f'"bob@example{look_alike}com" <{ALICE}>',
        f"{_encoded(f'bob@example{look_alike}com')} <{ALICE}>",
        f'"bob{look_alike}example@example\uff0ecom" <{ALICE}>',  # with another one
    ]
    for form in forms:
        code, text = _submit(stack, "submission", form, token("look-alike dot"))
        assert (code, text) == (554, REFUSED), (dot, form, code, text)


# Outside re-check, 2026-12-07: a right-to-left override shows "moc.elpmaxe@bob" as
# "bob@example.com"; the rule looked for name@domain.tld in the order stored ("@bob" has no dot).
BIDI_FORMS = {
    "rtl-override": f'"\u202emoc.elpmaxe@bob" <{ALICE}>',
    "rtl-override-encoded": f"{_encoded(chr(0x202E) + 'moc.elpmaxe@bob')} <{ALICE}>",
    "isolate": f'"Alice \u2067moc.elpmaxe@bob\u2069" <{ALICE}>',
    "left-to-right-mark": f'"Alice\u200e" <{ALICE}>',
}


@pytest.mark.parametrize("form", list(BIDI_FORMS))
def test_a_from_header_with_a_bidi_control_is_refused(stack: Stack, form: str) -> None:
    code, text = _submit(stack, "submission", BIDI_FORMS[form], token("bidi"))
    assert (code, text) == (554, REFUSED), (form, code, text)


@pytest.mark.parametrize("port", PORTS)
def test_display_names_without_another_address_are_sent(stack: Stack, port: str) -> None:
    forms = [
        f'"{ALICE}" <{ALICE}>',  # the address itself as the name
        f'"Alice@Example.com" <{ALICE}>',  # ... in another case
        f"{ALICE} (Alice Example)",  # a comment without an address
        f"{_encoded('Jörg Müller')} <{ALICE}>",  # an encoded word
        f'"Alice @ Home (sales)" <{ALICE}>',  # an at sign that makes no address
        f'"alice@example\u2024com" <{ALICE}>',  # the address itself with a look-alike dot
        f"{_encoded('Núria Col·lecció · Sales')} <{ALICE}>",  # middle dots in a name
        f"{_encoded('אליס כהן')} <{ALICE}>",  # a right-to-left name (no control character)
    ]
    for form in forms:
        subject = token("own name")
        code, text = _submit(stack, port, form, subject)
        assert code == 250, (form, code, text)
        wait_for_raw(stack, "erin", lambda r, s=subject: s.encode() in r, "alice's mail")


SENDER_REFUSED = b"5.7.1 The Sender: and Resent- headers must hold your sender address"


@pytest.mark.parametrize("port", PORTS)
def test_a_sender_or_resent_header_naming_a_colleague_is_refused(stack: Stack, port: str) -> None:
    """Outside re-check, 2026-12-07: "Sender: bob@example.com" on alice's mail was sent; a
    client shows it as "bob@example.com on behalf of alice@example.com", DKIM-signed."""
    forms = [
        f"From: {ALICE}\r\nSender: bob@example.com",
        f"From: {ALICE}\r\nSender: Bob <bob@example.com>",
        f'From: {ALICE}\r\nSender: "bob@example.com" <{ALICE}>',  # in the display name
        f"From: {ALICE}\r\nResent-From: bob@example.com",
        f"From: {ALICE}\r\nResent-Sender: bob@example.com",
        f"From: {ALICE}\r\nSender: bob",  # no address: a client shows the text
    ]
    for form in forms:
        code, text = _submit_headers(stack, port, form, token("sender header"))
        assert (code, text) == (554, SENDER_REFUSED), (form, code, text)


def test_sender_and_resent_headers_with_the_own_address_are_sent(stack: Stack) -> None:
    forms = [
        f"From: {ALICE}\r\nSender: {ALICE}",
        f"From: {ALICE}\r\nSender: Alice <{ALICE.upper()}>",
        f"From: {ALICE}\r\nResent-From: {ALICE}\r\nResent-Sender: {ALICE}",
    ]
    for form in forms:
        subject = token("own sender")
        code, text = _submit_headers(stack, "submission", form, subject)
        assert code == 250, (form, code, text)
        wait_for_raw(stack, "erin", lambda r, s=subject: s.encode() in r, "alice's mail")
