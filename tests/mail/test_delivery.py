"""What happens to mail after Postfix accepted it: quota, forwarding, Sieve, Junk, durability.

Every test sends through the real Postfix (and rspamd) of the session stack and asserts on what
the mailbox, the sender's bounce, the remote server or the Postfix queue really hold.
"""

from __future__ import annotations

import base64
import email
import imaplib
import itertools
import os
import re
import secrets
import signal
import smtplib
import socket
import time
from datetime import UTC, datetime
from email.message import Message
from email.utils import formatdate, make_msgid
from pathlib import Path

import dkim
import pytest

from mailstack.agent.daemons import DOVECOT_CONF, expunge_commands
from mailstack.material.pki import generate_client_certificate
from tests.mail.conftest import (
    CLIENT_CONTEXT_SOURCE,
    GTUBE,
    HOSTNAME,
    PASSWORDS,
    LineSocket,
    Stack,
    txt_lookup,
    without_sink_envelope,
)
from tests.mail.messages import MTA, SENDER, raw_text_message, token


def send(stack: Stack, to: str, raw: bytes, sender: str = SENDER, port: str = "smtp") -> str:
    """Send one message; the Postfix queue id from the 250 reply to DATA.

    Inbound mail (port 25) comes from example.net's own server, as real inbound mail would: from
    the host it would fail SPF and score as spam. Submission logs in as the sender.
    """
    if port == "smtp":
        return stack.send_from_internet(to, raw, sender)
    with stack.smtp(port) as smtp:
        smtp.login(sender, PASSWORDS[sender.split("@")[0]])
        code, text = smtp.mail(sender)
        assert code == 250, text
        code, text = smtp.rcpt(to)
        assert code == 250, text
        code, text = smtp.data(raw)
        assert code == 250, text
    match = re.search(rb"queued as ([0-9A-Za-z]+)", text)
    assert match, text
    return match.group(1).decode()


def subjects(stack: Stack, user: str, folder: str = "") -> list[str]:
    return [str(m["Subject"]) for m in stack.messages(user, folder)]


def wait_for_postfix_log(stack: Stack, needle: str, timeout: float = 30) -> str:
    def find() -> str | None:
        return next((ln for ln in stack.log(MTA, "postfix").splitlines() if needle in ln), None)

    return stack.wait_for(f"{needle!r} in the postfix log", find, timeout)  # type: ignore[no-any-return]


def rspamd_verdict(stack: Stack, queue_id: str) -> str:
    def find() -> str | None:
        lines = stack.log(MTA, "rspamd").splitlines()
        return next((ln for ln in lines if f"qid: <{queue_id}>" in ln), None)

    return stack.wait_for(f"rspamd's verdict on {queue_id}", find)  # type: ignore[no-any-return]


# --- quota ------------------------------------------------------------------------------------


def bounce_about(stack: Stack, user: str, subject: str) -> Message | None:
    """The delivery status notification in ``user``'s INBOX about the message ``subject``."""
    for message in stack.messages(user):
        if message.get_content_type() != "multipart/report":
            continue
        for part in message.walk():
            if part.get_content_type() in ("text/rfc822-headers", "message/rfc822"):
                payload = part.get_payload()
                text = payload if isinstance(payload, str) else str(payload[0])
                if f"Subject: {subject}" in text:
                    return message
    return None


def test_over_quota_mail_bounces_to_the_sender(stack: Stack) -> None:
    # dave's quota is 1Mi: ~600 KB messages fill it within two deliveries (plus 10% grace).
    filler = "".join(f"{i:06d} {'x' * 69}\n" for i in range(8000))
    refused = None
    for attempt in range(6):
        subject = token(f"quota filler {attempt}")
        raw = raw_text_message(subject, "dave@example.com", filler, sender="alice@example.com")
        send(stack, "dave@example.com", raw, sender="alice@example.com", port="submission")

        def outcome(subject: str = subject) -> str | None:
            if subject in subjects(stack, "dave"):
                return "delivered"
            return "bounced" if bounce_about(stack, "alice", subject) else None

        if stack.wait_for(f"{subject!r} delivered or bounced", outcome) == "bounced":
            refused = subject
            break
    assert refused is not None, "dave's mailbox never filled up"
    assert refused not in subjects(stack, "dave")

    dsn = bounce_about(stack, "alice", refused)
    assert dsn is not None
    assert dsn["From"].startswith("Mail Delivery System <MAILER-DAEMON@example.com>"), dsn["From"]
    assert dsn["To"] == "alice@example.com"
    status = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    fields = "\n".join(str(block) for block in status.get_payload())
    assert "Final-Recipient: rfc822; dave@example.com" in fields, fields
    assert "Action: failed" in fields, fields
    assert "Status: 5.2.2" in fields, fields
    diagnostic = re.search(r"Diagnostic-Code: (.*(?:\n\s+.*)*)", fields)
    assert diagnostic, fields
    assert "552" in diagnostic.group(1) and re.search(
        r"full|quota", diagnostic.group(1), re.IGNORECASE
    ), diagnostic.group(1)
    # One enhanced status code, not the server's code repeated inside the text.
    assert diagnostic.group(1).count("5.2.2") == 1, diagnostic.group(1)

    conn = stack.imap("dave")
    try:
        typ, data = conn.getquotaroot("INBOX")
        assert typ == "OK", data
        roots, quotas = data
        assert roots == [b'INBOX "User quota"'], roots
        usage = re.fullmatch(rb'"User quota" \(STORAGE (\d+) (\d+)\)', quotas[0])  # type: ignore[arg-type]
        assert usage, quotas
        used_kb, limit_kb = int(usage.group(1)), int(usage.group(2))
        assert limit_kb == 1024
        assert 600 <= used_kb <= limit_kb * 1.1, (used_kb, limit_kb)
        # IMAP clients are refused too, with the OVERQUOTA response code.
        typ, data = conn.append("INBOX", None, None, filler.replace("\n", "\r\n").encode())
        assert typ == "NO" and b"[OVERQUOTA]" in data[0], (typ, data)
    finally:
        conn.logout()


def storage_used_kib(conn: imaplib.IMAP4) -> int:
    """The STORAGE usage (KiB) that Dovecot reports for the user's quota root."""
    typ, data = conn.getquotaroot("INBOX")
    assert typ == "OK", data
    usage = re.fullmatch(rb'"User quota" \(STORAGE (\d+) \d+\)', data[1][0])  # type: ignore[arg-type]
    assert usage, data
    return int(usage.group(1))


def maildir_kib(stack: Stack, user: str) -> int:
    """What the user's mail takes on disk: the message files of every folder, in KiB."""
    root = stack.maildir(user)
    folders = [root, *(p for p in root.iterdir() if p.name.startswith(".") and p.is_dir())]
    files = [
        f
        for d in folders
        for sub in ("new", "cur")
        if (d / sub).is_dir()
        for f in (d / sub).iterdir()
    ]
    return sum(f.stat().st_size for f in files) // 1024


def test_quota_usage_follows_deliveries_appends_and_expunges_and_survives_a_recount(
    stack: Stack,
) -> None:
    # The usage is a running count (Maildir++), not recounted from the folders on each delivery:
    # deliveries, IMAP appends to other folders and expunges must all move it, and a full
    # recount (Dovecot does one whenever the count file grows) must find the same figure.
    body = "".join(f"{i:06d} {'q' * 69}\n" for i in range(2600))  # ~200 KB
    conn = stack.imap("grace")

    def settled(what: str) -> int:
        # A delivery's file is in new/ a moment before Dovecot commits its quota update.
        def agreed() -> tuple[int] | None:
            used = storage_used_kib(conn)
            return (used,) if abs(used - maildir_kib(stack, "grace")) <= 1 else None

        used: int = stack.wait_for(what, agreed)[0]
        return used

    try:
        empty = settled("an empty mailbox")
        subject = token("quota count")
        send(stack, "grace@example.com", raw_text_message(subject, "grace@example.com", body))
        stack.wait_for_subject("grace", subject)
        delivered = settled("the delivery counted")
        assert delivered - empty >= 190, (empty, delivered)

        draft = raw_text_message(
            token("quota draft"), "someone@example.net", body[: len(body) // 2]
        )
        typ, data = conn.append("Drafts", None, None, draft)
        assert typ == "OK", data
        appended = settled("the append counted")
        assert appended - delivered >= 95, (delivered, appended)

        typ, data = conn.select("INBOX")
        assert typ == "OK", data
        typ, data = conn.search(None, "SUBJECT", f'"{subject}"')
        assert typ == "OK" and data[0], data
        conn.store(data[0].decode().replace(" ", ","), "+FLAGS", "\\Deleted")
        typ, data = conn.expunge()
        assert typ == "OK", data
        expunged = settled("the expunge counted")
        assert appended - expunged >= 190, (appended, expunged)

        recount = stack.in_container(
            "dovecot", "doveadm", "-c", DOVECOT_CONF, "quota", "recalc", "-u", "grace@example.com"
        )
        assert recount.returncode == 0, recount.stderr
        assert storage_used_kib(conn) == expunged
    finally:
        conn.logout()


# --- forwarding -------------------------------------------------------------------------------


def test_forward_with_keep_copy_reaches_the_remote_and_the_mailbox(stack: Stack) -> None:
    subject = token("for bob")
    queue_id = send(stack, "bob@example.com", raw_text_message(subject, "bob@example.com"))
    copy = stack.wait_for_subject("bob", subject)
    assert copy["Delivered-To"] == "bob@example.com"
    remote = stack.wait_for_sink(lambda m: m["Subject"] == subject)
    assert remote.get_all("X-Sink-Rcpt-To") == ["bob@example.net"]
    assert remote["To"] == "bob@example.com"
    wait_for_postfix_log(stack, f"{queue_id}: removed")
    assert subjects(stack, "bob").count(subject) == 1
    assert len([m for m in stack.sink_messages() if m["Subject"] == subject]) == 1


def test_forward_without_copy_leaves_nothing_in_the_mailbox(stack: Stack) -> None:
    subject = token("for carol")
    queue_id = send(stack, "carol@example.com", raw_text_message(subject, "carol@example.com"))
    remote = stack.wait_for_sink(lambda m: m["Subject"] == subject)
    assert remote.get_all("X-Sink-Rcpt-To") == ["carol@example.net"]
    # Postfix is done with the message (every recipient handled): nothing went to Dovecot.
    wait_for_postfix_log(stack, f"{queue_id}: removed")
    log = [ln for ln in stack.log(MTA, "postfix").splitlines() if f"{queue_id}: to=<" in ln]
    assert len(log) == 1 and "to=<carol@example.net>" in log[0], log
    assert "orig_to=<carol@example.com>" in log[0] and "status=sent" in log[0], log
    assert subject not in subjects(stack, "carol")


# --- sieve ------------------------------------------------------------------------------------


def test_spec_sieve_script_files_into_a_folder(stack: Stack) -> None:
    filed = token("[proj] status")
    other = token("lunch")
    send(stack, "erin@example.com", raw_text_message(filed, "erin@example.com"))
    send(stack, "erin@example.com", raw_text_message(other, "erin@example.com"))
    stack.wait_for_subject("erin", filed, folder="Projects")
    stack.wait_for_subject("erin", other)
    assert filed not in subjects(stack, "erin")
    assert other not in subjects(stack, "erin", "Projects")
    # Created on first use and subscribed, so clients show it.
    conn = stack.imap("erin")
    try:
        typ, data = conn.lsub('""', "Projects")
        assert typ == "OK" and data and data[0] and b"Projects" in data[0], data
    finally:
        conn.logout()


class ManageSieve:
    """A ManageSieve (RFC 5804) client: STARTTLS then AUTHENTICATE PLAIN."""

    def __init__(self, stack: Stack) -> None:
        raw = socket.create_connection(("127.0.0.1", stack.port("sieve")), timeout=30)
        plain = LineSocket(raw)
        self.greeting = plain.until(b"OK")
        plain.send(b"STARTTLS")
        assert plain.readline().startswith(b"OK"), "STARTTLS refused"
        self.conn = LineSocket(stack.tls_context().wrap_socket(raw, server_hostname=HOSTNAME))
        self.capabilities = self.conn.until(b"OK")

    def command(self, line: bytes) -> list[bytes]:
        self.conn.send(line)
        lines = []
        while True:
            lines.append(self.conn.readline())
            if re.match(rb"(OK|NO|BYE)\b", lines[-1]):
                return lines

    def login(self, user: str) -> list[bytes]:
        blob = base64.b64encode(f"\0{user}@example.com\0{PASSWORDS[user]}".encode())
        return self.command(b'AUTHENTICATE "PLAIN" "' + blob + b'"')

    def putscript(self, name: str, script: str) -> list[bytes]:
        data = script.encode()
        return self.command(f'PUTSCRIPT "{name}" {{{len(data)}+}}\r\n'.encode() + data)

    def close(self) -> None:
        self.command(b"LOGOUT")
        self.conn.close()


def remove_sieve_script(stack: Stack, user: str, name: str) -> None:
    """Deactivate the user's scripts and delete ``name`` (a test's clean-up)."""
    client = ManageSieve(stack)
    try:
        client.login(user)
        client.command(b'SETACTIVE ""')
        client.command(f'DELETESCRIPT "{name}"'.encode())
    finally:
        client.close()


def test_managesieve_script_files_deliveries(stack: Stack) -> None:
    script = (
        'require ["fileinto", "mailbox", "imap4flags"];\r\n'
        'if header :contains "Subject" "[invoice]" {\r\n'
        '  addflag "$invoice";\r\n  fileinto :create "Invoices";\r\n}\r\n'
    )
    client = ManageSieve(stack)
    try:
        assert b'"SASL" ""' in client.greeting  # no password before TLS
        assert any(line.startswith(b'"SASL" "PLAIN') for line in client.capabilities)
        assert client.login("erin")[-1].startswith(b"OK"), "login refused"
        broken = client.putscript("broken", 'require "fileinto";\r\nfileinto "x"\r\n')
        assert broken[-1].startswith(b"NO"), broken  # syntax errors are refused at upload
        assert client.putscript("invoices", script)[-1].startswith(b"OK")
        assert client.command(b'SETACTIVE "invoices"')[-1].startswith(b"OK")
        assert b'"invoices" ACTIVE' in client.command(b"LISTSCRIPTS")
    finally:
        client.close()
    try:
        invoice = token("[invoice] March")
        project = token("[proj] kickoff")
        plain = token("hello erin")
        for subject in (invoice, project, plain):
            send(stack, "erin@example.com", raw_text_message(subject, "erin@example.com"))
        stack.wait_for_subject("erin", invoice, folder="Invoices")
        # The user's script runs after the spec's script, which still files its own mail.
        stack.wait_for_subject("erin", project, folder="Projects")
        stack.wait_for_subject("erin", plain)
        assert invoice not in subjects(stack, "erin")
        # The flag set by the script is a keyword the IMAP client sees.
        conn = stack.imap("erin")
        try:
            assert conn.select("Invoices", readonly=True)[0] == "OK"
            typ, data = conn.search(None, "KEYWORD", "$invoice")
            assert typ == "OK" and data[0], data
        finally:
            conn.logout()
    finally:
        remove_sieve_script(stack, "erin", "invoices")
    # Deactivated: the same subject stays in the INBOX now.
    again = token("[invoice] April")
    send(stack, "erin@example.com", raw_text_message(again, "erin@example.com"))
    stack.wait_for_subject("erin", again)


def activate_sieve_script(stack: Stack, user: str, name: str, script: str) -> None:
    client = ManageSieve(stack)
    try:
        assert client.login(user)[-1].startswith(b"OK"), "login refused"
        assert client.putscript(name, script)[-1].startswith(b"OK")
        assert client.command(f'SETACTIVE "{name}"'.encode())[-1].startswith(b"OK")
    finally:
        client.close()


def test_a_sieve_redirect_and_a_vacation_reply_leave_through_postfix_and_the_reply_is_signed(
    stack: Stack,
) -> None:
    """Dovecot hands what a script sends to Postfix's mda-submit port (its client certificate
    is what lets it relay): the redirect as it came (From: and envelope sender); the vacation
    reply from the user, with the user as envelope sender, DKIM-signed."""
    carol = f"carol-{secrets.token_hex(4)}@example.net"
    friend = f"friend-{secrets.token_hex(4)}@example.net"
    script = (
        'require ["copy", "vacation"];\r\n'
        f'redirect :copy "{carol}";\r\n'
        'vacation :days 1 :subject "Away" "Back on Monday.";\r\n'
    )
    activate_sieve_script(stack, "erin", "away", script)
    try:
        subject = token("while away")
        raw = raw_text_message(subject, "erin@example.com", sender=friend)
        send(stack, "erin@example.com", raw, sender=friend)
        stack.wait_for_subject("erin", subject)  # :copy keeps it
        redirected = stack.wait_for_sink(lambda m: m["X-Sink-Rcpt-To"] == carol)
        assert redirected["Subject"] == subject
        assert redirected["From"] == friend
        assert redirected["X-Sink-Mail-From"] == friend  # its own, as forwardTo keeps it
        assert redirected["DKIM-Signature"] is None  # not ours to vouch for

        reply = stack.wait_for_sink(lambda m: m["X-Sink-Rcpt-To"] == friend)
        assert reply["X-Sink-Mail-From"] == "erin@example.com"
        assert reply["Subject"] == "Away"
        assert str(reply["Auto-Submitted"]).startswith("auto-replied")
        assert "erin@example.com" in reply["From"]
        original_id = re.search(rb"^Message-ID: (.+?)\r?$", raw, re.M | re.I)
        assert original_id and reply["In-Reply-To"] == original_id.group(1).decode()
        wire = next(
            without_sink_envelope(r)
            for r in stack.sink_raw_messages()
            if f"X-Sink-Rcpt-To: {friend}".encode() in r
        )
        signature = email.message_from_bytes(wire)["DKIM-Signature"]
        assert signature is not None and "d=example.com" in signature.replace(" ", "")
        assert dkim.verify(wire, dnsfunc=txt_lookup(stack.internet.ip))

        # Once per :days and sender: the next message is redirected, not answered again.
        again = token("still away")
        raw = raw_text_message(again, "erin@example.com", sender=friend)
        send(stack, "erin@example.com", raw, sender=friend)
        stack.wait_for_sink(lambda m: m["X-Sink-Rcpt-To"] == carol and m["Subject"] == again)
        time.sleep(2)
        replies = [m for m in stack.sink_messages() if m["X-Sink-Rcpt-To"] == friend]
        assert len(replies) == 1, [m["Subject"] for m in replies]
    finally:
        remove_sieve_script(stack, "erin", "away")


@pytest.mark.parametrize(
    "script",
    [
        'vacation :from "alice@example.com" "Not me.";',
        "vacation :mime text:\r\nFrom: alice@example.com\r\n"
        "Content-Type: text/plain\r\n\r\nNot me either.\r\n.\r\n;",
        # Dressed as a redirect: Dovecot's marks do not decide, the envelope sender does.
        'vacation :from "alice@example.com" :mime text:\r\nX-Sieve-Redirected-From: x\r\n'
        "Content-Type: text/plain\r\n\r\nStill not me.\r\n.\r\n;",
        # A From: built at run time with a line break folds a second address into it.
        'require ["variables", "encoded-character"];\r\n'
        'set "f" "erin@example.com${hex:0d 0a}From: alice@example.com";\r\n'
        'vacation :from "${f}" "Folded.";',
        'vacation :from "\\"alice@example.com\\" <erin@example.com>" "Look-alike.";',
    ],
    ids=["from", "mime-header", "as-redirect", "folded", "display-name"],
)
def test_a_vacation_reply_in_another_users_name_is_not_sent(stack: Stack, script: str) -> None:
    """A script's vacation :from may name any address, and :mime may add headers; our key would
    sign the reply under them. rspamd holds vacation replies to the sender rules of submission,
    so nothing leaves; the message itself is delivered."""
    friend = f"friend-{secrets.token_hex(4)}@example.net"
    activate_sieve_script(stack, "erin", "forged", f'require "vacation";\r\n{script}\r\n')
    try:
        subject = token("who answers")
        raw = raw_text_message(subject, "erin@example.com", sender=friend)
        send(stack, "erin@example.com", raw, sender=friend)
        stack.wait_for_subject("erin", subject)
        refused = stack.wait_for_log(MTA, "postfix", "milter-reject", f"to=<{friend}>")
        # Several rules may match (a second address is also one in the display name).
        reasons = ("5.7.1 The From: header must", "5.7.1 The display name", "appears twice")
        assert any(reason in refused for reason in reasons), refused
        assert not [m for m in stack.sink_messages() if m["X-Sink-Rcpt-To"] == friend]
    finally:
        remove_sieve_script(stack, "erin", "forged")


def test_sieve_notify_is_not_offered(stack: Stack) -> None:
    # enotify's mailto :from would set the envelope sender and From: to any address.
    client = ManageSieve(stack)
    try:
        assert client.login("erin")[-1].startswith(b"OK"), "login refused"
        sieve = next(line for line in client.capabilities if line.startswith(b'"SIEVE"'))
        assert b"vacation" in sieve and b"enotify" not in sieve, sieve
        script = 'require "enotify";\r\nnotify "mailto:carol@example.net";\r\n'
        assert client.putscript("notify", script)[-1].startswith(b"NO")
    finally:
        client.close()


def test_a_sieve_reject_notifies_the_sender_from_postmaster_unsigned(stack: Stack) -> None:
    friend = f"friend-{secrets.token_hex(4)}@example.net"
    activate_sieve_script(stack, "erin", "refuse", 'require "reject";\r\nreject "no thanks";\r\n')
    try:
        subject = token("take this")
        raw = raw_text_message(subject, "erin@example.com", sender=friend)
        send(stack, "erin@example.com", raw, sender=friend)
        notice = stack.wait_for_sink(lambda m: m["X-Sink-Rcpt-To"] == friend)
        assert notice["X-Sink-Mail-From"] == ""
        assert "postmaster@example.com" in str(notice["From"])
        assert str(notice["Auto-Submitted"]).startswith("auto-replied")
        assert notice["DKIM-Signature"] is None
        assert "no thanks" in notice.as_string()
        assert subject not in subjects(stack, "erin")
    finally:
        remove_sieve_script(stack, "erin", "refuse")


@pytest.mark.parametrize(
    "extra", ["", "Auto-Submitted: auto-replied (vacation)\r\n"], ids=["plain", "as-vacation"]
)
def test_a_redirect_is_not_signed_again_with_our_key(stack: Stack, extra: str) -> None:
    """Our key vouches for what users send and for the vacation replies the server writes for
    them. A redirect passes someone else's message on: signed here, a forgery in our domain's
    name that reached an INBOX would leave vouched for. bob's signed mail, redirected by erin,
    leaves with bob's one signature, still valid; also when it looks like a vacation reply
    (envelope sender and From: the same address of ours)."""
    carol = f"carol-{secrets.token_hex(4)}@example.net"
    activate_sieve_script(stack, "erin", "onward", f'redirect "{carol}";\r\n')
    try:
        subject = token("for carol")
        raw = raw_text_message(subject, "erin@example.com", sender="bob@example.com")
        raw = raw.replace(b"Subject:", extra.encode() + b"Subject:", 1)
        send(stack, "erin@example.com", raw, sender="bob@example.com", port="submission")
        stack.wait_for_sink(lambda m: m["X-Sink-Rcpt-To"] == carol)
        wire = next(
            without_sink_envelope(r)
            for r in stack.sink_raw_messages()
            if f"X-Sink-Rcpt-To: {carol}".encode() in r
        )
        assert len(email.message_from_bytes(wire).get_all("DKIM-Signature") or []) == 1
        assert dkim.verify(wire, dnsfunc=txt_lookup(stack.internet.ip))
    finally:
        remove_sieve_script(stack, "erin", "onward")


# What the mda-submit port answers a client inside the MDA pod, by the certificate it shows.
MDA_SUBMIT_PROBE = (
    CLIENT_CONTEXT_SOURCE
    + """
import smtplib, sys
context = client_context(sys.argv[1], sys.argv[2])
with smtplib.SMTP("example-com-mta", 10587, timeout=20) as smtp:
    smtp.starttls(context=context)
    smtp.ehlo("probe")
    print(smtp.mail("")[0], smtp.rcpt("someone@example.net")[0])
"""
)


def test_the_mda_submit_port_relays_only_for_dovecots_certificate(stack: Stack) -> None:
    own = stack.in_container("dovecot", "cat", "/etc/mailstack/mda-client/tls.crt")
    own_key = stack.in_container("dovecot", "cat", "/etc/mailstack/mda-client/tls.key")
    assert own.returncode == 0 and own_key.returncode == 0, own.stderr + own_key.stderr
    other = generate_client_certificate("example-com-mda", datetime.now(UTC))

    def probe(cert: str, key: str) -> str:
        result = stack.in_container("dovecot", "python3", "-c", MDA_SUBMIT_PROBE, cert, key)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout.strip()

    assert probe(own.stdout, own_key.stdout) == "250 250"
    # The same name, another key: refused, as is a client without a certificate.
    assert probe(other.cert_pem, other.key_pem) == "250 554"
    assert probe("", "") == "250 554"


# --- spam to Junk -----------------------------------------------------------------------------


def test_message_between_add_header_and_reject_goes_to_junk(stack: Stack) -> None:
    """rspamd scores it above add_header (6) and below reject (15); Dovecot files it to Junk.

    Offline and deterministic: an upstream spam flag (SPAM_FLAG, 5) and no Message-ID or Date
    (MISSING_MID 2.5, MISSING_DATE 1), from the sender's SPF-authorised server without reverse
    DNS (~3.5), give ~12. A header the client wrote does not decide: rspamd's verdict does.
    """
    spammy = token("spammy offer")
    head = f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {spammy}\r\n"
    raw = (head + "X-Spam-Flag: YES\r\n\r\nbuy now\r\n").encode()
    spam_id = stack.send_from_internet("alice@example.com", raw)
    junk = stack.wait_for_subject("alice", spammy, folder="Junk")
    verdict = rspamd_verdict(stack, spam_id)
    score = re.search(r"\(add header\): \[([\d.]+)/15\.00\]", verdict)
    assert score and 6 <= float(score.group(1)) < 15, verdict
    assert junk.get_all("X-Spam") == ["Yes"]  # added by rspamd, read by the global Sieve script
    assert spammy not in subjects(stack, "alice")

    # A client cannot file mail to Junk by writing the header itself: rspamd removes it when
    # its own verdict is "no action" (here: a user's own mail, whose flag alone scores 5).
    clean = token("clean with fake header")
    headers = f"Date: {formatdate()}\r\nMessage-ID: {make_msgid(domain='example.com')}\r\n"
    raw = (
        f"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: {clean}\r\n{headers}"
        "X-Spam: Yes\r\n\r\nhello\r\n"
    ).encode()
    clean_id = send(stack, "alice@example.com", raw, sender="bob@example.com", port="submission")
    inbox = stack.wait_for_subject("alice", clean)
    assert "(no action)" in rspamd_verdict(stack, clean_id)
    assert inbox.get_all("X-Spam") is None
    assert clean not in subjects(stack, "alice", "Junk")


def test_a_users_own_mail_is_never_marked_as_spam_but_spam_from_a_login_is_refused(
    stack: Stack,
) -> None:
    """Marking is for mail from strangers: what a logged-in user sends reaches colleagues'
    INBOX and other domains without "X-Spam: Yes", whatever it scores below reject. Above
    reject it is still refused (an account sending spam).

    Deterministic: a forged Outlook Express boundary (SUSPICIOUS_BOUNDARY, 5) and no To: header
    (MISSING_TO, 2) score 7, above add_header (6); rspamd checks no client address or HELO of a
    login. (An upstream ``X-Spam-Flag: YES`` no longer serves: the submission services drop a
    user's own verdict headers.)
    """
    subject = token("own mail")
    friend = f"friend-{secrets.token_hex(4)}@example.net"
    boundary = "----=_NextPart_000_0001_00EBFFA4.01ABCDEF"
    raw = (
        f"From: bob@example.com\r\nSubject: {subject}\r\nDate: {formatdate()}\r\n"
        f"Message-ID: {make_msgid(domain='example.com')}\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
    ).encode()
    with stack.smtp("submission") as smtp:
        smtp.login("bob@example.com", PASSWORDS["bob"])
        for rcpt in (None, "alice@example.com", friend):
            code, text = smtp.mail("bob@example.com") if rcpt is None else smtp.rcpt(rcpt)
            assert code == 250, text
        code, text = smtp.data(raw)
        assert code == 250, text
        match = re.search(rb"queued as ([0-9A-Za-z]+)", text)
        assert match, text
        spam = raw.replace(b"hello", GTUBE.encode())
        with pytest.raises(smtplib.SMTPDataError) as refusal:
            smtp.sendmail("bob@example.com", ["alice@example.com", friend], spam)
    assert refusal.value.smtp_code == 554, refusal.value
    verdict = rspamd_verdict(stack, match.group(1).decode())
    score = re.search(r"\(no action\): \[([\d.]+)/15\.00\]", verdict)
    assert score and 6 <= float(score.group(1)) < 15, verdict
    inbox = stack.wait_for_subject("alice", subject)
    assert inbox.get_all("X-Spam") is None
    assert subject not in subjects(stack, "alice", "Junk")
    sent = stack.wait_for_sink(lambda m: m["X-Sink-Rcpt-To"] == friend)
    assert sent["Subject"] == subject
    assert sent.get_all("X-Spam") is None


def test_the_agents_daily_sweep_expunges_old_junk_and_keeps_young_junk(stack: Stack) -> None:
    """LMTP deliveries no longer autoexpunge; the Dovecot agent runs ``expunge_commands`` daily.

    Run here in the MDA pod as the agent runs them: they must succeed against the rendered
    config and keep a fresh message. The Junk command with its age cut to one second (and the
    query narrowed to this test's message) then shows that the same form reaches every user's
    folder (-A over the passwd-file) and expunges what is old enough.
    """
    spammy = token("old spam")
    head = f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {spammy}\r\n"
    stack.send_from_internet("alice@example.com", (head + "X-Spam-Flag: YES\r\n\r\nx\r\n").encode())
    stack.wait_for_subject("alice", spammy, folder="Junk")
    commands = expunge_commands()
    assert {c[c.index("mailbox") + 1] for c in commands} == {"Junk", "Trash"}
    for command in commands:
        result = stack.in_container("dovecot", *command)
        assert result.returncode == 0, result.stderr
    assert spammy in subjects(stack, "alice", "Junk")  # 30 days to go

    time.sleep(2)
    junk = next(c for c in commands if c[c.index("mailbox") + 1] == "Junk")
    aged = [*junk[:-1], "1secs", "subject", spammy]
    result = stack.in_container("dovecot", *aged)
    assert result.returncode == 0, result.stderr
    assert spammy not in subjects(stack, "alice", "Junk")


# --- durability ---------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _queue_entry(stack: Stack, queue_id: str) -> dict[str, object] | None:
    return next((e for e in stack.postfix_queue() if e.get("queue_id") == queue_id), None)


def _restarts(up_log: Path) -> list[int]:
    pattern = r"mail/example-com-mda-0/dovecot exited with -?\d+; restarting in (\d+) s"
    return [int(d) for d in re.findall(pattern, up_log.read_text())]


def test_mail_waits_in_the_queue_while_dovecot_is_down(stack: Stack) -> None:
    up_log = stack.workdir / "up.log"
    waiting: dict[str, str] = {}  # queue id -> subject
    try:
        # Stop Dovecot (its master: the container exits and ``up`` restarts it after a back-off)
        # and send at once. Should the restart win the race, stop it again: the back-off doubles.
        for attempt in range(5):
            (dovecot,) = stack.own_daemon_pids()["dovecot"]
            restarts_before = len(_restarts(up_log))
            os.kill(dovecot, signal.SIGTERM)
            stack.wait_for("dovecot to stop", lambda pid=dovecot: not _alive(pid), 20)
            subject = token(f"while dovecot is down {attempt}")
            queue_id = send(
                stack, "alice@example.com", raw_text_message(subject, "alice@example.com")
            )

            def deferred_or_delivered(queue_id: str = queue_id, subject: str = subject) -> str:
                entry = _queue_entry(stack, queue_id)
                if entry is not None and entry.get("queue_name") == "deferred":
                    return "deferred"
                return "delivered" if subject in subjects(stack, "alice") else ""

            outcome = stack.wait_for("deferral or delivery", deferred_or_delivered)
            stack.wait_for(
                "the restart announced", lambda n=restarts_before: len(_restarts(up_log)) > n
            )
            if outcome == "deferred":
                waiting[queue_id] = subject
                break
        assert waiting, "Dovecot came back before Postfix tried to deliver, every time"
        # More mail while the destination is known to be down: accepted, and queued too.
        for number in range(3):
            subject = token(f"queued behind {number}")
            queue_id = send(
                stack, "alice@example.com", raw_text_message(subject, "alice@example.com")
            )
            waiting[queue_id] = subject
        for queue_id in waiting:
            stack.wait_for(
                f"{queue_id} deferred",
                lambda q=queue_id: (_queue_entry(stack, q) or {}).get("queue_name") == "deferred",
            )
        entry = _queue_entry(stack, next(iter(waiting)))
        assert entry is not None
        reasons = " ".join(str(r.get("delay_reason")) for r in entry["recipients"])  # type: ignore[attr-defined]
        assert re.search(r"refused|timed out|suspended", reasons), reasons

        # ``up`` restarts the container after its back-off: a new Dovecot master serves again.
        stack.wait_for(
            "dovecot back",
            lambda: (pids := stack.own_daemon_pids()["dovecot"]) and dovecot not in pids,
            timeout=90,
        )
        restarts = _restarts(up_log)
        assert restarts and all(b > a for a, b in itertools.pairwise(restarts)), restarts
        conn = stack.wait_for("IMAP login", lambda: _try_imap(stack, "alice"), timeout=60)
        conn.logout()
        # Still only in the queue: Postfix waits for its retry time.
        for subject in waiting.values():
            assert subject not in subjects(stack, "alice")
        queued = {e["queue_id"] for e in stack.postfix_queue()}
        assert set(waiting) <= queued, (waiting, queued)
    finally:
        stack.flush_queue()
    for subject in waiting.values():
        stack.wait_for_subject("alice", subject, timeout=60)
    stack.wait_for(
        "an empty queue",
        lambda: not ({e["queue_id"] for e in stack.postfix_queue()} & set(waiting)),
    )
    # No mail lost, none duplicated.
    delivered = subjects(stack, "alice")
    assert all(delivered.count(subject) == 1 for subject in waiting.values()), waiting


def _try_imap(stack: Stack, user: str) -> imaplib.IMAP4 | None:
    try:
        return stack.imap(user)
    except (OSError, imaplib.IMAP4.error):
        return None
