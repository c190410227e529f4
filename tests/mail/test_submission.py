"""Message submission: 587 (STARTTLS) and 465 (implicit TLS), DKIM, delivery reports.

Users log in at Dovecot's submission service, which relays to Postfix (mda-relay, XCLIENT naming
the login); they may send only as their own addresses, and
mail they send to other domains leaves through the smarthost (the sink in the test's internet
namespace) signed with the domain's DKIM key, which a verifier checks against the key published
in DNS. Delivery status notifications and bounces come back to the sender's INBOX.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
import secrets
import smtplib
from collections.abc import Callable
from email.message import EmailMessage, Message

import dkim
import pytest

from tests.mail.conftest import HOSTNAME, PASSWORDS, Stack, txt_lookup, without_sink_envelope
from tests.mail.messages import text_message, token

PORTS = ["submission", "submissions"]


def connect(stack: Stack, port: str, starttls: bool = True) -> smtplib.SMTP:
    """An SMTP client on a submission port, TLS verified against ca.crt and the mail hostname."""
    if port == "submissions":
        # Implicit TLS: the handshake happens in the constructor, so the name to check must be
        # given to the context (the clients connect to 127.0.0.1).
        conn: smtplib.SMTP = smtplib.SMTP_SSL(
            "127.0.0.1", stack.port(port), context=stack._named_context(), timeout=30
        )
        conn.ehlo("client.example.net")
        return conn
    return stack.smtp(port, starttls=starttls)


def login(stack: Stack, port: str, user: str) -> smtplib.SMTP:
    conn = connect(stack, port)
    conn.login(f"{user}@example.com", PASSWORDS[user])
    return conn


def wait_for_raw(
    stack: Stack, user: str, predicate: Callable[[bytes], bool], what: str
) -> EmailMessage:
    def find() -> bytes | None:
        return next((raw for raw in stack.raw_messages(user) if predicate(raw)), None)

    raw: bytes = stack.wait_for(f"{what} in {user}'s INBOX", find)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def status_groups(report: EmailMessage) -> list[Message]:
    """The field groups of a multipart/report DSN (RFC 3464): the first describes the message,
    each further one a recipient."""
    assert report.get_content_type() == "multipart/report", report.get_content_type()
    assert report.get_param("report-type") == "delivery-status"
    part = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    groups = part.get_payload()
    assert isinstance(groups, list)
    assert all(isinstance(g, Message) for g in groups)
    return [g for g in groups if isinstance(g, Message)]


def delivery_status(report: EmailMessage) -> list[Message]:
    """The per-recipient field groups of a DSN."""
    return status_groups(report)[1:]


# --- authentication ---------------------------------------------------------------------------


def test_auth_is_refused_before_starttls_on_587(stack: Stack) -> None:
    with stack.smtp("submission", starttls=False) as smtp:
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth"), smtp.esmtp_features
        code, text = smtp.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHg=")
        assert code == 530, (code, text)
        # Nor can mail be sent without TLS.
        code, text = smtp.mail("alice@example.com")
        assert code == 530, (code, text)
    with stack.smtp("submission") as smtp:
        assert "PLAIN" in smtp.esmtp_features["auth"].upper().split()


@pytest.mark.parametrize("port", PORTS)
def test_wrong_password_is_refused_with_535(stack: Stack, port: str) -> None:
    with connect(stack, port) as smtp:
        assert smtp.has_extn("auth")
        # One AUTH PLAIN (login() would retry with every other mechanism, each failure costing
        # Dovecot's auth_failure_delay).
        smtp.user, smtp.password = "alice@example.com", PASSWORDS["alice"] + "x"
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.auth("PLAIN", smtp.auth_plain)
        assert refused.value.smtp_code == 535
        assert b"5.7.8" in refused.value.smtp_error
        # The right password on the same connection works: the refusal was about the password.
        assert smtp.login("alice@example.com", PASSWORDS["alice"])[0] == 235


@pytest.mark.parametrize("port", PORTS)
def test_unauthenticated_submission_is_refused(stack: Stack, port: str) -> None:
    """Dovecot refuses the transaction at MAIL FROM (Postfix did at RCPT, with 554)."""
    with connect(stack, port) as smtp:
        code, text = smtp.mail("alice@example.com")
        assert (code, text) == (530, b"5.7.0 Authentication required."), (code, text)
        assert smtp.rcpt("erin@example.com")[0] >= 500


@pytest.mark.parametrize("port", PORTS)
def test_sending_as_another_user_is_refused_with_553(stack: Stack, port: str) -> None:
    with login(stack, port, "alice") as smtp:
        assert smtp.mail("bob@example.com")[0] == 250
        code, text = smtp.rcpt("erin@example.com")
        assert code == 553, (code, text)
        assert b"not owned by user alice@example.com" in text
        smtp.rset()
        # An alias that reaches alice is hers to send as.
        assert smtp.mail("sales@example.com")[0] == 250
        assert smtp.rcpt("erin@example.com")[0] == 250
        smtp.rset()


@pytest.mark.parametrize("port", PORTS)
def test_a_from_header_naming_someone_else_is_refused(stack: Stack, port: str) -> None:
    # The envelope is alice's own (Postfix checks that); the From: header must say the same,
    # or the domain's DKIM signature would vouch for mail in bob's (or anyone's) name.
    for forged in ("bob@example.com", "ceo@bank.example", "Alice <sales@example.com>"):
        subject = token("forged from")
        msg = text_message(subject, "erin@example.com", sender="alice@example.com")
        msg.replace_header("From", forged)
        with login(stack, port, "alice") as smtp:
            assert smtp.mail("alice@example.com")[0] == 250
            assert smtp.rcpt("erin@example.com")[0] == 250
            code, text = smtp.data(msg.as_bytes(policy=email.policy.SMTP))
        # One enhanced status code: rspamd adds it, the rule's message has none of its own.
        assert (code, text) == (554, b"5.7.1 The From: header must be your sender address"), (
            forged,
            code,
            text,
        )
    # The same address in both, with a display name and in other letter case: sent.
    subject = token("own from")
    msg = text_message(subject, "erin@example.com", sender="alice@example.com")
    msg.replace_header("From", "Alice Example <Alice@Example.com>")
    with login(stack, port, "alice") as smtp:
        assert smtp.sendmail("alice@example.com", ["erin@example.com"], msg.as_bytes()) == {}
    wait_for_raw(stack, "erin", lambda r: subject.encode() in r, "alice's own mail")
    # An alias that is hers, in both: sent too.
    subject = token("alias from")
    msg = text_message(subject, "erin@example.com", sender="sales@example.com")
    with login(stack, port, "alice") as smtp:
        assert smtp.sendmail("sales@example.com", ["erin@example.com"], msg.as_bytes()) == {}
    wait_for_raw(stack, "erin", lambda r: subject.encode() in r, "mail from her alias")


def test_inbound_mail_whose_from_differs_from_its_envelope_still_arrives(stack: Stack) -> None:
    # The From: rule is for logged-in users only: inbound, the two differ all the time (lists,
    # bounces, services).
    subject = token("list mail")
    msg = text_message(subject, "erin@example.com", sender="announce@lists.example.net")
    stack.send_from_internet("erin@example.com", msg.as_bytes(), "bounces+x@example.net")
    wait_for_raw(stack, "erin", lambda r: subject.encode() in r, "inbound list mail")


@pytest.mark.parametrize("port", PORTS)
def test_no_second_author_hides_in_the_from_header_or_a_null_sender(
    stack: Stack, port: str
) -> None:
    # Found by a check from outside: each of these got bob's address shown as the author of
    # mail that the domain's key signed.
    alice, bob = "alice@example.com", "bob@example.com"
    single = b"554 5.7.1 The From: header must hold one address: your sender address"
    repeated = b"554 5.7.1 A header that may appear only once (RFC 5322 3.6) appears twice"
    cases = [
        (f"From: {alice}, {bob}", {single}),
        (f"From: <{alice}> <{bob}>", {single}),
        # Both rules match a second From: header; which reply wins is rspamd's choice.
        (f"From: {alice}\r\nFrom: {bob}", {single, repeated}),
        (f"From: {alice}\r\nSubject: and another", {repeated}),
    ]
    for header, expected in cases:
        raw = f"{header}\r\nTo: erin@example.com\r\nSubject: {token('two authors')}\r\n"
        raw += f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n"
        with login(stack, port, "alice") as smtp:
            assert smtp.mail(alice)[0] == 250
            assert smtp.rcpt("erin@example.com")[0] == 250
            code, text = smtp.data((raw + "\r\nhello\r\n").encode())
        assert f"{code} ".encode() + text in expected, (header, code, text)
    # The null sender: Postfix's login check does not look at it, and rspamd has no envelope
    # sender to compare the From: with. Refused at once.
    with login(stack, port, "alice") as smtp:
        assert smtp.mail("")[0] == 250
        code, text = smtp.rcpt("erin@example.com")
        # Dovecot relays Postfix's reply with the recipient in front.
        assert (code, text) == (
            554,
            b"5.7.1 <erin@example.com> <>: Sender address rejected: After login, mail "
            b"needs your address as its sender",
        ), (code, text)


# --- relay through the smarthost, DKIM --------------------------------------------------------


@pytest.mark.parametrize("port", PORTS)
def test_authenticated_relay_is_dkim_signed_with_the_published_key(stack: Stack, port: str) -> None:
    friend = f"{token('friend', '-')}@example.net"
    subject = token(f"relayed via {port}")
    with login(stack, port, "alice") as smtp:
        refused = smtp.send_message(
            text_message(subject, friend, "signed\n", sender="alice@example.com")
        )
    assert refused == {}
    stack.wait_for_sink(lambda m: m["X-Sink-Rcpt-To"] == friend)
    raw = next(r for r in stack.sink_raw_messages() if f"X-Sink-Rcpt-To: {friend}".encode() in r)
    sent = email.message_from_bytes(raw)
    assert sent["X-Sink-Mail-From"] == "alice@example.com"
    assert sent["Subject"] == subject
    signature = sent["DKIM-Signature"]
    assert signature is not None, sent.keys()
    tags = {k.strip(): v.strip() for k, v in (t.split("=", 1) for t in signature.split(";") if t)}
    assert (tags["d"], tags["s"]) == ("example.com", "test")

    dnsfunc = txt_lookup(stack.internet.ip)
    assert dnsfunc(b"test._domainkey.example.com.") is not None
    wire = without_sink_envelope(raw)
    assert dkim.verify(wire, dnsfunc=dnsfunc)
    # The verifier really checks: the same message with its body changed fails.
    assert not dkim.verify(wire.replace(b"signed", b"forged"), dnsfunc=dnsfunc)


# --- delivery reports -------------------------------------------------------------------------


def test_notify_success_gives_the_sender_a_dsn(stack: Stack) -> None:
    envid = token("envid", "-")
    subject = token("dsn please")
    with login(stack, "submission", "alice") as smtp:
        refused = smtp.sendmail(
            "alice@example.com",
            ["erin@example.com"],
            text_message(subject, "erin@example.com", sender="alice@example.com").as_bytes(),
            mail_options=["RET=HDRS", f"ENVID={envid}"],
            rcpt_options=["NOTIFY=SUCCESS"],
        )
    assert refused == {}
    stack.wait_for_subject("erin", subject)
    report = wait_for_raw(stack, "alice", lambda r: envid.encode() in r, "a success DSN")
    assert "MAILER-DAEMON" in str(report["From"])
    (recipient,) = delivery_status(report)
    assert recipient["Final-Recipient"].lower() == "rfc822; erin@example.com"
    # Dovecot's LMTP does not announce DSN, so Postfix reports the hand-over as "relayed"
    # (RFC 3464: delivered to a system that sends no further notifications).
    assert recipient["Action"] in ("delivered", "relayed")
    assert str(recipient["Status"]).startswith("2.")


def test_undeliverable_relay_bounces_to_the_sender(stack: Stack) -> None:
    nobody = f"{token('reject', '-')}@example.net"
    subject = token("will bounce")
    with login(stack, "submissions", "bob") as smtp:
        # Accepted here: only the remote server knows the address does not exist.
        assert smtp.send_message(text_message(subject, nobody, sender="bob@example.com")) == {}
    bounce = wait_for_raw(stack, "bob", lambda r: nobody.encode() in r, "a bounce")
    assert "MAILER-DAEMON" in str(bounce["From"])
    (recipient,) = delivery_status(bounce)
    assert recipient["Final-Recipient"].lower() == f"rfc822; {nobody}"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    diagnostic = " ".join(str(recipient["Diagnostic-Code"]).split())  # unfolded
    assert diagnostic == f"smtp; 550 5.1.1 <{nobody}>: no such user here"
    # The bounce returns the original message (or its headers) so the sender can tell which.
    assert subject in bounce.as_string()
    # And the bounce came from the stack itself: it names the mail host as the reporting MTA.
    assert status_groups(bounce)[0]["Reporting-MTA"] == f"dns; {HOSTNAME}"
    # bob keeps a copy and forwards to bob@example.net: the outside world gets the bounce as
    # well, and it must pass the domain's DMARC policy there, so it is DKIM-signed.
    assert bounce["From"].addresses[0].domain == "example.com"
    forwarded = stack.wait_for(
        "the forwarded bounce at the remote server",
        lambda: next(
            (
                r
                for r in stack.sink_raw_messages()
                if b"X-Sink-Rcpt-To: bob@example.net" in r and nobody.encode() in r
            ),
            None,
        ),
    )
    assert dkim.verify(without_sink_envelope(forwarded), dnsfunc=txt_lookup(stack.internet.ip))


@pytest.mark.parametrize("port", ["smtp", "submission"])
def test_smtputf8_is_not_offered_so_no_mail_is_accepted_only_to_bounce(
    stack: Stack, port: str
) -> None:
    # Dovecot's LMTP cannot take SMTPUTF8 mail: Postfix would accept it, then bounce it (and the
    # bounce, which quotes the UTF-8 headers). The client must hear it at once instead.
    with stack.smtp(port) as smtp:
        assert not smtp.has_extn("smtputf8"), smtp.esmtp_features
        sender = "someone@example.net"
        if port == "submission":  # Dovecot takes no MAIL before a login
            smtp.login("alice@example.com", PASSWORDS["alice"])
            sender = "alice@example.com"
        code, text = smtp.docmd("MAIL", f"FROM:<{sender}> SMTPUTF8")
        # Dovecot's reply does not name the parameter: "555 5.5.4 Unsupported parameters".
        assert code == 555 and (b"SMTPUTF8" in text or port == "submission"), (code, text)


@pytest.mark.parametrize("port", ["smtp", "submission"])
def test_etrn_is_neither_offered_nor_taken(stack: Stack, port: str) -> None:
    # ETRN asks a backup MX to flush mail it holds for the client's site: there is none here.
    with stack.smtp(port) as smtp:
        assert not smtp.has_extn("etrn"), smtp.esmtp_features
        assert smtp.has_extn("dsn"), smtp.esmtp_features  # the other keywords stay
        code, text = smtp.docmd("ETRN", "example.net")
        # Postfix refuses it (554), Dovecot does not know it ("500 5.5.1 Unknown command").
        assert code == (554 if port == "smtp" else 500), (code, text)


def test_utf8_headers_and_body_sent_as_8bitmime_arrive_intact(stack: Stack) -> None:
    subject = f"Grüße aus Köln {secrets.token_hex(4)}"
    msg = text_message(
        subject, "erin@example.com", "Straße, café, 東京\n", sender="alice@example.com"
    )
    raw = msg.as_bytes(policy=email.policy.SMTPUTF8)  # raw UTF-8 in the Subject header
    assert subject.encode() in raw
    with login(stack, "submission", "alice") as smtp:
        assert smtp.has_extn("8bitmime"), smtp.esmtp_features
        refused = smtp.sendmail("alice@example.com", ["erin@example.com"], raw, ["BODY=8BITMIME"])
        assert refused == {}
    arrived = wait_for_raw(stack, "erin", lambda r: subject.encode() in r, "the UTF-8 message")
    assert arrived["Subject"] == subject
    assert arrived.get_content().strip() == "Straße, café, 東京"
    assert arrived["DKIM-Signature"] is not None  # signed as any other mail from a user


def test_submission_gets_message_id_and_date_before_signing(stack: Stack) -> None:
    """A client that leaves out Message-ID and Date (scripts do): many receivers refuse such
    mail, so the submission service adds them, and the signature covers them."""
    friend = f"{token('friend', '-')}@example.net"
    bare = (
        f"From: alice@example.com\r\nTo: {friend}\r\nSubject: bare\r\n\r\nno headers\r\n"
    ).encode()
    with login(stack, "submission", "alice") as smtp:
        assert smtp.sendmail("alice@example.com", [friend], bare) == {}
    stack.wait_for_sink(lambda m: m["X-Sink-Rcpt-To"] == friend)
    raw = next(r for r in stack.sink_raw_messages() if f"X-Sink-Rcpt-To: {friend}".encode() in r)
    sent = email.message_from_bytes(raw)
    assert sent["Message-ID"] is not None, sent.keys()
    assert sent["Date"] is not None, sent.keys()
    signed = sent["DKIM-Signature"]
    assert signed is not None
    assert "message-id" in " ".join(signed.split()).lower()
    assert dkim.verify(without_sink_envelope(raw), dnsfunc=txt_lookup(stack.internet.ip))


@pytest.mark.parametrize("port", PORTS)
def test_forged_verdict_headers_from_a_user_do_not_reach_a_colleague(
    stack: Stack, port: str
) -> None:
    """rspamd adds no verdict to a user's mail, so one the user wrote would read as this
    server's (outside check, 2026-12-07): the submission ports' cleanup removes them, and the
    sender's Authentication-Results (rspamd's own replaces them). Other headers stay."""
    subject = token("forged verdicts")
    raw = (
        f"From: alice@example.com\r\nTo: erin@example.com\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n"
        "Authentication-Results: mail.example.com; dkim=pass header.d=bank.example\r\n"
        "X-Spam-Status: No, score=-10.00\r\nX-Spam: No\r\nX-Spam-Flag : NO\r\n"
        "x-spamd-bar: /\r\nX-Spamd-Result: default: False [-10.00 / 15.00]\r\n"
        "X-Rspamd-Action: no action\r\nX-Rspamd-Server: forged\r\n"
        "X-Spamming-Notes: kept\r\n\r\nhello\r\n"
    )
    with login(stack, port, "alice") as smtp:
        assert smtp.sendmail("alice@example.com", ["erin@example.com"], raw.encode()) == {}

    def find() -> bytes | None:
        return next((r for r in stack.raw_messages("erin") if subject.encode() in r), None)

    stored: bytes = stack.wait_for("alice's mail in erin's INBOX", find)
    head = stored.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode()
    assert not re.search(r"(?im)^x-(spam|spamd|rspamd)(-[^:\s]*)?\s*:", head), head
    assert "bank.example" not in head, head
    assert "X-Spamming-Notes: kept" in head.splitlines(), head
