"""Inbound SMTP on port 25: delivery, aliases, recipients, relay protection, size, spam.

Every test talks to the real Postfix of the session stack (STARTTLS, as a remote MTA would) and
asserts on what the client is told and what the mailbox or the remote server really holds.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import secrets
import smtplib
from email.message import EmailMessage, Message

import pytest

from tests.mail.conftest import GTUBE, HOSTNAME, Stack
from tests.mail.messages import MTA, SENDER, text_message, token


def header_block(message: Message) -> str:
    return "".join(f"{name}: {value}\n" for name, value in message.items())


def postfix_hop(message: Message) -> str:
    """The Received header Postfix added when it accepted the message over SMTP."""
    hops = [str(h) for h in message.get_all("Received", []) if f"by {HOSTNAME} (Postfix)" in h]
    assert len(hops) == 1, message.get_all("Received")
    return hops[0]


def subjects(stack: Stack, user: str, folder: str = "") -> list[str]:
    return [str(m["Subject"]) for m in stack.messages(user, folder)]


# --- delivery ---------------------------------------------------------------------------------


def test_inbound_starttls_to_a_mailbox(stack: Stack) -> None:
    subject = token("inbound tls")
    with stack.smtp("smtp") as smtp:
        assert smtp.sock is not None
        tls_version = smtp.sock.version()  # type: ignore[attr-defined]
        assert tls_version in ("TLSv1.2", "TLSv1.3")
        refused = smtp.send_message(text_message(subject, "alice@example.com", "over TLS\n"))
    assert refused == {}
    received = stack.wait_for_subject("alice", subject)
    assert received.get_payload() == "over TLS\n"
    assert received["Delivered-To"] == "alice@example.com"
    # Postfix records the TLS session of the hop it received the message on.
    assert f"(using {tls_version}" in postfix_hop(received), postfix_hop(received)


def test_alias_delivers_to_every_member(stack: Stack) -> None:
    subject = token("to sales")
    with stack.smtp("smtp") as smtp:
        assert smtp.send_message(text_message(subject, "sales@example.com")) == {}
    for user in ("alice", "bob"):
        copy = stack.wait_for_subject(user, subject)
        assert copy["To"] == "sales@example.com"
        assert "for <sales@example.com>" in postfix_hop(copy)
    for user in ("carol", "dave", "erin"):
        assert subject not in subjects(stack, user)


def test_to_cc_and_bcc_recipients_each_get_a_copy_and_bcc_stays_hidden(stack: Stack) -> None:
    subject = token("to cc bcc")
    message = text_message(subject, "alice@example.com", Cc="erin@example.com")
    message["Bcc"] = "bob@example.com"
    with stack.smtp("smtp") as smtp:
        # Like any client, smtplib turns Bcc into an envelope recipient and drops the header.
        assert smtp.send_message(message) == {}
    copies = {user: stack.wait_for_subject(user, subject) for user in ("alice", "erin", "bob")}
    for user, copy in copies.items():
        assert copy["To"] == "alice@example.com"
        assert copy["Cc"] == "erin@example.com"
        assert copy["Bcc"] is None
        assert copy["Delivered-To"] in (None, f"{user}@example.com")
    # The blind recipient is nowhere in the headers the others get (not even in trace headers),
    # and in his own copy only in the trace headers of his own delivery.
    for user in ("alice", "erin"):
        assert "bob@" not in header_block(copies[user]), header_block(copies[user])
    bob_headers = [
        (k, v) for k, v in copies["bob"].items() if k not in ("Delivered-To", "Received")
    ]
    assert not any("bob@" in v for _, v in bob_headers), bob_headers


def test_inbound_from_the_internet_keeps_the_real_client_address(stack: Stack) -> None:
    subject = token("from the internet")
    reply = stack.run_in_internet(
        CLIENT_SCRIPT,
        stack.internet.host_ip,
        str(stack.port("smtp")),
        json.dumps({"from": SENDER, "rcpt": ["alice@example.com"], "subject": subject}),
    )
    assert json.loads(reply)["data"][0] == 250, reply
    received = stack.wait_for_subject("alice", subject)
    assert f"[{stack.internet.ip}]" in postfix_hop(received), postfix_hop(received)


def test_unknown_user_is_refused_at_rcpt(stack: Stack) -> None:
    with stack.smtp("smtp") as smtp:
        assert smtp.mail(SENDER)[0] == 250
        code, text = smtp.rcpt("nobody-here@example.com")
        assert code == 550, text
        assert b"5.1.1" in text
        # The session goes on: a known recipient in the same transaction is still accepted.
        assert smtp.rcpt("alice@example.com")[0] == 250
        smtp.rset()


def test_auth_is_not_offered_on_port_25(stack: Stack) -> None:
    for starttls in (False, True):
        with stack.smtp("smtp", starttls=starttls) as smtp:
            assert not smtp.has_extn("auth"), smtp.esmtp_features
            code, text = smtp.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHg=")
            assert code == 503, (code, text)


# --- not an open relay ------------------------------------------------------------------------

# A remote client: one SMTP transaction, the replies as JSON on stdout. Runs in the internet
# namespace with only the standard library.
CLIENT_SCRIPT = r"""
import json, smtplib, sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
host, port, spec = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
out = {}
with smtplib.SMTP(host, port, timeout=30) as smtp:
    smtp.ehlo("client.example.net")
    out["mail"] = smtp.mail(spec["from"])
    out["rcpt"] = [smtp.rcpt(r) for r in spec["rcpt"]]
    if any(code == 250 for code, _ in out["rcpt"]):
        msg = EmailMessage()
        msg["From"] = spec.get("header_from", spec["from"])
        msg["To"], msg["Subject"] = spec["rcpt"][0], spec["subject"]
        msg["Date"], msg["Message-ID"] = formatdate(), make_msgid(domain="example.net")
        msg.set_content("from far away\n")
        out["data"] = smtp.data(msg.as_bytes())
    else:
        smtp.rset()
print(json.dumps(out, default=lambda b: b.decode()))
"""


def send_as_bob_from_a_stranger(stack: Stack) -> Message:
    """Anyone may connect to port 25 and write From: bob@example.com; where it was filed. (The
    envelope sender is the client's own: one of ours would be refused, test_own_domain.py.)"""
    subject = token("spoofed")
    message = text_message(subject, "alice@example.com", "trust me\n", sender="bob@example.com")
    with stack.smtp("smtp") as smtp:
        smtp.send_message(message, from_addr=SENDER)

    def delivered() -> Message | None:
        for folder in ("", "Junk"):
            found = [m for m in stack.messages("alice", folder) if m["Subject"] == subject]
            if found:
                return found[0]
        return None

    return stack.wait_for(f"{subject!r} in alice's INBOX or Junk", delivered)  # type: ignore[no-any-return]


def test_our_domain_from_a_stranger_is_not_signed_with_our_key(stack: Stack) -> None:
    # A DKIM signature would vouch for the forgery wherever it goes next (bob forwards to
    # example.net): only authenticated users and the pod itself get the domain's signature.
    received = send_as_bob_from_a_stranger(stack)
    assert received["DKIM-Signature"] is None, received["DKIM-Signature"]


def test_our_domain_from_a_stranger_is_checked_by_dmarc(stack: Stack) -> None:
    # The client passes SPF for example.net, which is not aligned with From: example.com, and
    # carries no signature of ours: example.com's DMARC fails, and the mail goes to Junk.
    received = send_as_bob_from_a_stranger(stack)
    results = " ".join(str(received["Authentication-Results"]).split())
    assert "spf=pass" in results, results
    assert "dmarc=fail" in results, results
    assert received.get_all("X-Spam") == ["Yes"]


def test_mail_failing_dmarc_of_a_p_reject_domain_is_refused(stack: Stack) -> None:
    # strict.example publishes p=reject and authorises no server: mail in its name from
    # example.net's server passes SPF for example.net, which is not aligned with the From:.
    subject = token("dmarc reject")
    spec = {"from": SENDER, "header_from": "ceo@strict.example", "rcpt": ["alice@example.com"]}
    reply = json.loads(
        stack.run_in_internet(
            CLIENT_SCRIPT,
            stack.internet.host_ip,
            str(stack.port("smtp")),
            json.dumps({**spec, "subject": subject}),
        )
    )
    code, text = reply["data"]
    assert (code, text) == (554, "5.7.1 Rejected by the DMARC policy of the From: domain"), reply
    # The same mail in example.net's own name is aligned, passes, and is delivered.
    subject = token("dmarc aligned")
    reply = json.loads(
        stack.run_in_internet(
            CLIENT_SCRIPT,
            stack.internet.host_ip,
            str(stack.port("smtp")),
            json.dumps({"from": SENDER, "rcpt": ["alice@example.com"], "subject": subject}),
        )
    )
    assert reply["data"][0] == 250, reply
    stack.wait_for_subject("alice", subject)


def test_not_an_open_relay_from_the_host(stack: Stack) -> None:
    with stack.smtp("smtp") as smtp:
        assert smtp.mail(SENDER)[0] == 250
        code, text = smtp.rcpt("victim@example.org")
        assert code in (454, 554), text
        assert b"Relay access denied" in text
        # Not even with one of our own addresses as the sender.
        smtp.rset()
        assert smtp.mail("alice@example.com")[0] == 250
        code, text = smtp.rcpt("victim@example.net")
        assert code in (454, 554), text


def test_not_an_open_relay_from_the_internet(stack: Stack) -> None:
    victim = f"victim-{secrets.token_hex(4)}@example.org"
    reply = json.loads(
        stack.run_in_internet(
            CLIENT_SCRIPT,
            stack.internet.host_ip,
            str(stack.port("smtp")),
            json.dumps({"from": SENDER, "rcpt": [victim], "subject": "relay?"}),
        )
    )
    code, text = reply["rcpt"][0]
    assert code in (454, 554), reply
    assert "Relay access denied" in text
    # Postfix saw the remote address itself, not a local forwarder's.
    line = stack.wait_for_log(MTA, "postfix", f"<{victim}>: Relay access denied", "NOQUEUE")
    assert f"[{stack.internet.ip}]" in line, line


# --- size -------------------------------------------------------------------------------------

LIMIT = 10 * 1024 * 1024  # limits.messageSize: 10Mi in the test spec


def test_multi_megabyte_attachment_arrives_intact(stack: Stack) -> None:
    subject = token("attachment")
    payload = os.urandom(3 * 1024 * 1024)
    message = text_message(subject, "alice@example.com", "see attached\n")
    message.add_attachment(
        payload, maintype="application", subtype="octet-stream", filename="blob.bin"
    )
    with stack.smtp("smtp") as smtp:
        assert smtp.esmtp_features["size"] == str(LIMIT)
        # smtplib declares SIZE= in MAIL FROM when the server offers it: under the limit.
        assert smtp.send_message(message) == {}
    stack.wait_for_subject("alice", subject)
    raw = next(r for r in stack.raw_messages("alice") if subject.encode() in r)
    received = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(received, EmailMessage)
    attachments = list(received.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["blob.bin"]
    body = attachments[0].get_payload(decode=True)
    assert isinstance(body, bytes)
    assert len(body) == len(payload)
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_declared_size_over_the_limit_is_refused_at_mail_from(stack: Stack) -> None:
    with stack.smtp("smtp") as smtp:
        code, text = smtp.mail(SENDER, [f"SIZE={LIMIT + 1}"])
        assert code == 552, text
        assert smtp.mail(SENDER, [f"SIZE={LIMIT - 1024}"])[0] == 250
        smtp.rset()


def test_a_message_just_under_the_limit_is_delivered_not_bounced_by_dovecot(stack: Stack) -> None:
    # Dovecot refuses to store mail over the same limit (IMAP APPEND), with room for the headers
    # added after acceptance: what Postfix took must still reach the mailbox. Postfix itself
    # refused a message 3 KB under the limit (its queue file holds more than the message); 12 KB
    # under, it takes it.
    subject = token("just under")
    message = text_message(subject, "alice@example.com", "x" * 76 + "\n")
    data = message.as_bytes().replace(b"\n", b"\r\n")
    body = LIMIT - 12_000 - len(data)
    data += (b"y" * 998 + b"\r\n") * (body // 1000) + b"y" * (body % 1000) + b"\r\n"
    with stack.smtp("smtp") as smtp:
        assert smtp.mail(SENDER)[0] == 250
        assert smtp.rcpt("alice@example.com")[0] == 250
        code, text = smtp.data(data)
        assert code == 250, text
    stack.wait_for_subject("alice", subject, timeout=60)


def test_undeclared_size_over_the_limit_is_refused_at_end_of_data(stack: Stack) -> None:
    subject = token("too big")
    message = text_message(subject, "alice@example.com", "x" * 76 + "\n")
    data = message.as_bytes().replace(b"\n", b"\r\n")
    data += (b"y" * 998 + b"\r\n") * (LIMIT // 1000 + 100)
    with stack.smtp("smtp") as smtp:
        assert smtp.mail(SENDER)[0] == 250  # no SIZE= declared
        assert smtp.rcpt("alice@example.com")[0] == 250
        code, text = smtp.data(data)
        assert code == 552, text
    stack.wait_for_log(MTA, "postfix", "queue file size limit exceeded")


# --- spam -------------------------------------------------------------------------------------


def test_gtube_is_rejected_at_end_of_data(stack: Stack) -> None:
    subject = token("gtube")
    spammer = f"spammer-{secrets.token_hex(4)}@example.net"
    message = text_message(subject, "alice@example.com", f"buy now\n{GTUBE}\n", sender=spammer)
    with stack.smtp("smtp") as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.send_message(message)
    assert 500 <= refused.value.smtp_code < 600, refused.value
    # Refused by the milter (rspamd), before anything was queued.
    line = stack.wait_for_log(MTA, "postfix", "milter-reject: END-OF-MESSAGE", f"<{spammer}>")
    assert "to=<alice@example.com>" in line, line
    # The same message without the pattern goes through (the rejection was about GTUBE).
    clean = token("not gtube")
    with stack.smtp("smtp") as smtp:
        assert smtp.send_message(text_message(clean, "alice@example.com", "buy now\n")) == {}
    stack.wait_for_subject("alice", clean)
    assert subject not in subjects(stack, "alice") + subjects(stack, "alice", "Junk")
