"""Our own domain is not for strangers: envelope senders of ours on port 25, and forwarding.

A client that neither logged in nor connects from the pod itself may use an address of
example.com as envelope sender only from an address of the SPF record we publish
("v=spf1 mx -all": the internet namespace's address is the MX host's, the host's bridge is
not). Mail from strangers that rspamd marks as spam, or that fails example.com's DMARC, is not
forwarded: refused when a recipient only forwards (carol), delivered to the mailbox only when
it keeps a copy (bob). docs/operator.md, "Our domain on port 25" and "Forwarding".
"""

from __future__ import annotations

import json
import re
import secrets

from tests.mail.conftest import PASSWORDS, Stack
from tests.mail.messages import MTA, SENDER, raw_text_message, token

REFUSAL = (
    "5.7.1 This domain's addresses send through the submission port (587 or 465) with a login: "
    "this client's address is not in the domain's SPF record"
)

# One transaction from the internet namespace (example.net's server, the MX host's address):
# the replies as JSON. The message is given as text, sent with CRLF line ends.
_RAW_CLIENT = r"""
import json, smtplib, ssl, sys
host, port, sender, rcpt, raw = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
raw = raw.replace("\r\n", "\n").replace("\n", "\r\n").encode()
out = {}
with smtplib.SMTP(host, port, local_hostname="sink.example.net", timeout=30) as smtp:
    smtp.starttls(context=ssl._create_unverified_context())
    smtp.ehlo("sink.example.net")
    out["mail"] = smtp.mail(sender)
    out["rcpt"] = smtp.rcpt(rcpt)
    if out["rcpt"][0] == 250:
        out["data"] = smtp.data(raw)
print(json.dumps(out, default=lambda b: b.decode()))
"""


def from_internet(stack: Stack, sender: str, rcpt: str, raw: bytes) -> dict[str, list[object]]:
    reply = stack.run_in_internet(
        _RAW_CLIENT,
        stack.internet.host_ip,
        str(stack.port("smtp")),
        sender,
        rcpt,
        raw.decode(),
    )
    return json.loads(reply)  # type: ignore[no-any-return]


def queue_id(data_reply: list[object]) -> str:
    match = re.search(r"queued as ([0-9A-Za-z]+)", str(data_reply[1]))
    assert match, data_reply
    return match.group(1)


def postfix_lines(stack: Stack, needle: str) -> list[str]:
    return [ln for ln in stack.log(MTA, "postfix").splitlines() if needle in ln]


def wait_until_done(stack: Stack, qid: str) -> list[str]:
    """Postfix's delivery lines of a message once every recipient is handled."""
    stack.wait_for(f"{qid} removed", lambda: postfix_lines(stack, f"{qid}: removed"))
    return postfix_lines(stack, f"{qid}: to=<")


def in_sink(stack: Stack, subject: str) -> bool:
    return any(m["Subject"] == subject for m in stack.sink_messages())


# --- envelope senders of ours on port 25 ------------------------------------------------------


def test_a_stranger_with_our_domain_as_envelope_sender_is_refused(stack: Stack) -> None:
    subject = token("forged envelope")
    raw = raw_text_message(subject, "alice@example.com", sender="bob@example.com")
    with stack.smtp("smtp") as smtp:
        assert smtp.mail("bob@example.com")[0] == 250
        assert smtp.rcpt("alice@example.com")[0] == 250
        code, text = smtp.data(raw)
    assert (code, text.decode()) == (554, REFUSAL)
    line = stack.wait_for_log(MTA, "rspamd", "MAILSTACK_OWN_SENDER_NOT_IN_SPF")
    assert "example.com:fail" in line, line


def test_our_domain_from_an_address_in_our_spf_is_accepted(stack: Stack) -> None:
    # The internet namespace has the MX host's address: "mx" in our SPF record lists it.
    subject = token("from our mx")
    raw = raw_text_message(subject, "alice@example.com", sender="bob@example.com")
    reply = from_internet(stack, "bob@example.com", "alice@example.com", raw)
    assert reply["data"][0] == 250, reply
    received = stack.wait_for_subject("alice", subject)
    assert "spf=pass" in " ".join(str(received["Authentication-Results"]).split())


def test_a_bounce_from_a_stranger_is_accepted(stack: Stack) -> None:
    subject = token("bounce")
    raw = raw_text_message(subject, "alice@example.com", sender="MAILER-DAEMON@example.net")
    with stack.smtp("smtp") as smtp:
        assert smtp.mail("")[0] == 250  # MAIL FROM:<>
        assert smtp.rcpt("alice@example.com")[0] == 250
        code, text = smtp.data(raw)
    assert code == 250, text
    stack.wait_for(
        "the bounce in alice's INBOX or Junk",
        lambda: any(
            m["Subject"] == subject
            for folder in ("", "Junk")
            for m in stack.messages("alice", folder)
        ),
    )


def test_a_logged_in_user_still_sends_with_our_domain(stack: Stack) -> None:
    subject = token("submitted")
    friend = f"friend-{secrets.token_hex(4)}@example.net"
    raw = raw_text_message(subject, friend, sender="alice@example.com")
    with stack.smtp("submission") as smtp:
        smtp.login("alice@example.com", PASSWORDS["alice"])
        smtp.sendmail("alice@example.com", [friend], raw)
    sent = stack.wait_for_sink(lambda m: m["Subject"] == subject)
    assert sent["X-Sink-Mail-From"] == "alice@example.com"


# --- forwarding -------------------------------------------------------------------------------


def spam(subject: str, to: str, sender: str = SENDER) -> bytes:
    """Scores above add_header and below reject from example.net's server (as in
    test_delivery's Junk test): an upstream spam flag, no Message-ID, no Date."""
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
    return (head + "X-Spam-Flag: YES\r\n\r\nbuy now\r\n").encode()


def test_spam_to_a_mailbox_that_only_forwards_is_refused(stack: Stack) -> None:
    subject = token("spam for carol")
    reply = from_internet(stack, SENDER, "carol@example.com", spam(subject, "carol@example.com"))
    code, text = reply["data"]
    assert code == 554, reply
    assert str(text) == (
        "5.7.1 Not accepted: carol@example.com forwards mail to another server, and this "
        "message is not forwarded because it is marked as spam"
    )
    assert not in_sink(stack, subject)


def test_spam_to_a_mailbox_that_keeps_a_copy_stays_in_its_junk(stack: Stack) -> None:
    subject = token("spam for bob")
    reply = from_internet(stack, SENDER, "bob@example.com", spam(subject, "bob@example.com"))
    assert reply["data"][0] == 250, reply
    lines = wait_until_done(stack, queue_id(reply["data"]))
    assert len(lines) == 1 and "to=<bob+not-forwarded@example.com>" in lines[0], lines
    assert "status=sent" in lines[0], lines
    junk = stack.wait_for_subject("bob", subject, folder="Junk")
    assert junk.get_all("X-Spam") == ["Yes"]
    assert not in_sink(stack, subject)
    # Clean mail from the same server still forwards (and keeps its copy).
    clean = token("clean for bob")
    reply = from_internet(
        stack, SENDER, "bob@example.com", raw_text_message(clean, "bob@example.com")
    )
    assert reply["data"][0] == 250, reply
    stack.wait_for_sink(lambda m: m["Subject"] == clean)
    stack.wait_for_subject("bob", clean)


def test_mail_failing_our_dmarc_is_not_forwarded(stack: Stack) -> None:
    # example.net's server, SPF-authorised for its own envelope sender, writes From: in
    # example.com's name: not aligned, no signature of ours, so our DMARC fails.
    forged = raw_text_message(token("ceo"), "carol@example.com", sender="ceo@example.com")
    reply = from_internet(stack, SENDER, "carol@example.com", forged)
    code, text = reply["data"]
    assert code == 554, reply
    assert "because it fails the DMARC policy of its From: domain" in str(text), reply

    subject = token("ceo to bob")
    forged = raw_text_message(subject, "bob@example.com", sender="ceo@example.com")
    reply = from_internet(stack, SENDER, "bob@example.com", forged)
    assert reply["data"][0] == 250, reply
    lines = wait_until_done(stack, queue_id(reply["data"]))
    assert len(lines) == 1 and "to=<bob+not-forwarded@example.com>" in lines[0], lines
    received = stack.wait_for_subject("bob", subject, folder="Junk")
    assert "dmarc=fail" in " ".join(str(received["Authentication-Results"]).split())
    assert not in_sink(stack, subject)
