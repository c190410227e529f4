"""Reading mail: IMAP (143 STARTTLS, 993) and POP3 (110 STLS, 995) against the real Dovecot.

Clients connect to 127.0.0.1 through the DNAT of ``mailstack up``, so Dovecot sees the bridge
address (``endpoints.json`` ``hostAddress``), not its own: it must treat them as remote clients.
Asserts are on what the client is told and on what the Maildir on disk really holds.
"""

from __future__ import annotations

import imaplib
import json
import poplib
import re
import secrets
import socket
import time

import pytest

from tests.mail.conftest import HOSTNAME, PASSWORDS, LineSocket, Stack
from tests.mail.messages import MDA, raw_text_message, token


def deliver(stack: Stack, user: str, subject: str, body: str = "hello\n") -> None:
    """Inbound mail as example.net's server sends it (SPF-authorised, well-formed headers)."""
    address = f"{user}@example.com"
    stack.send_from_internet(address, raw_text_message(subject, address, body))


def endpoints(stack: Stack) -> dict[str, object]:
    return json.loads((stack.state / "endpoints.json").read_text())  # type: ignore[no-any-return]


def untagged(conn: imaplib.IMAP4, command: str, *args: str) -> list[bytes]:
    """Run a command imaplib has no method for; its untagged ``command`` responses."""
    typ, data = conn._simple_command(command, *args)  # type: ignore[attr-defined]
    assert typ == "OK", (typ, data)
    _, lines = conn._untagged_response(typ, data, command)  # type: ignore[attr-defined]
    return [line for line in lines if isinstance(line, bytes)]


def new_log_line(stack: Stack, needle: str, before: int, timeout: float = 10) -> str:
    """The first line containing ``needle`` that the Dovecot log gained after ``before`` lines."""

    def find() -> str | None:
        lines = stack.log(MDA, "dovecot").splitlines()[before:]
        return next((line for line in lines if needle in line), None)

    return stack.wait_for(f"{needle!r} in the dovecot log", find, timeout)  # type: ignore[no-any-return]


def tls_socket(stack: Stack, port: str) -> LineSocket:
    raw = socket.create_connection(("127.0.0.1", stack.port(port)), timeout=30)
    return LineSocket(stack.tls_context().wrap_socket(raw, server_hostname=HOSTNAME))


# --- IMAP ---------------------------------------------------------------------------------------


def test_imap_143_refuses_login_before_starttls_for_a_remote_client(stack: Stack) -> None:
    host_address = str(endpoints(stack)["hostAddress"])
    mda_address = str(endpoints(stack)["pods"]["mail/example-com-mda-0"])  # type: ignore[index]
    with socket.create_connection(("127.0.0.1", stack.port("imap")), timeout=30) as raw:
        plain = LineSocket(raw)
        greeting = plain.readline()
        assert greeting.startswith(b"* OK"), greeting
        assert b"STARTTLS" in greeting and b"LOGINDISABLED" in greeting, greeting
        plain.send(b'a1 LOGIN "alice@example.com" "' + PASSWORDS["alice"].encode() + b'"')
        reply = plain.until(b"a1 ")[-1]
        assert reply.startswith(b"a1 NO") or reply.startswith(b"a1 BAD"), reply
        assert b"PRIVACYREQUIRED" in reply or b"disallowed" in reply.lower(), reply

    before = len(stack.log(MDA, "dovecot").splitlines())
    conn = imaplib.IMAP4("127.0.0.1", stack.port("imap"), timeout=30)
    try:
        assert "LOGINDISABLED" in conn.capabilities
        conn.starttls(ssl_context=stack._named_context())
        assert "LOGINDISABLED" not in conn.capabilities
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]
        typ, _ = conn.login("alice@example.com", PASSWORDS["alice"])
        assert typ == "OK"
        typ, data = conn.select("INBOX", readonly=True)
        assert typ == "OK", data
    finally:
        conn.logout()
    # Dovecot saw the client through DNAT: the host's bridge address, not its own (which would
    # make every client "secure" and allow plaintext logins).
    line = new_log_line(stack, "imap-login: Info: Login: user=<alice@example.com>", before)
    assert f"rip={host_address}," in line, line
    assert f"lip={mda_address}," in line, line
    assert host_address != mda_address
    assert ", TLS," in line, line


def test_imaps_993_login_and_wrong_password(stack: Stack) -> None:
    conn = stack.imap("bob", tls="imaps")
    try:
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]
        assert conn.select("INBOX")[0] == "OK"
    finally:
        conn.logout()
    bad = imaplib.IMAP4_SSL(
        "127.0.0.1", stack.port("imaps"), ssl_context=stack._named_context(), timeout=30
    )
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            bad.login("bob@example.com", "not-the-password")
    finally:
        bad.shutdown()


def test_special_use_folders_exist_with_their_flags(stack: Stack) -> None:
    conn = stack.imap("carol")
    try:
        lines = untagged(conn, "LIST", "(SPECIAL-USE)", '""', '"*"')
        found = {}
        for line in lines:
            match = re.fullmatch(rb'\(([^)]*)\) "/" "?([^"]+)"?', line)
            assert match, line
            found[match.group(2).decode()] = set(match.group(1).decode().split())
        for folder, flag in (
            ("Drafts", "\\Drafts"),
            ("Sent", "\\Sent"),
            ("Junk", "\\Junk"),
            ("Trash", "\\Trash"),
            ("Archive", "\\Archive"),
        ):
            assert flag in found.get(folder, set()), (folder, lines)
        # auto = subscribe: a new client shows them without the user subscribing first.
        typ, subscribed = conn.lsub('""', "*")
        assert typ == "OK"
        names = {line.decode().rsplit(" ", 1)[-1].strip('"') for line in subscribed if line}
        assert {"Drafts", "Sent", "Junk", "Trash", "Archive"} <= names, subscribed
    finally:
        conn.logout()


def test_append_then_fetch_returns_the_same_bytes(stack: Stack) -> None:
    subject = token("appended draft")
    body = "".join(f"line {i}: {secrets.token_hex(30)}\r\n" for i in range(200))
    message = (
        f"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\nGr\u00fc\u00dfe \u2709\r\n{body}"
    ).encode()
    conn = stack.imap("alice")
    try:
        typ, data = conn.append("Drafts", "(\\Draft \\Seen)", None, message)
        assert typ == "OK", data
        uid = re.search(rb"APPENDUID \d+ (\d+)", data[0])
        assert uid, data
        assert conn.select("Drafts")[0] == "OK"
        typ, fetched = conn.uid("FETCH", uid.group(1), "(FLAGS RFC822.SIZE BODY.PEEK[])")
        assert typ == "OK", fetched
        envelope, content = fetched[0]  # type: ignore[misc]
        assert content == message
        assert f"RFC822.SIZE {len(message)}".encode() in envelope, envelope
        assert b"\\Draft" in envelope and b"\\Seen" in envelope, envelope
    finally:
        conn.logout()
    # On disk: the same message (Dovecot stores Maildir files with LF line endings).
    stored = [raw for raw in stack.raw_messages("alice", "Drafts") if subject.encode() in raw]
    assert stored == [message.replace(b"\r\n", b"\n")]


def test_append_over_the_message_size_limit_is_refused(stack: Stack) -> None:
    # limits.messageSize (10Mi in this stack) holds for what IMAP clients save too, with 1 MiB
    # of room for the headers added to accepted mail; alice has no quota.
    limit = 10 * 1024 * 1024 + 1024 * 1024
    line = ("x" * 98 + "\r\n").encode()

    def message(size: int, subject: str) -> bytes:
        head = f"From: alice@example.com\r\nSubject: {subject}\r\n\r\n".encode()
        return head + line * ((size - len(head)) // len(line))

    conn = stack.imap("alice")
    try:
        typ, data = conn.append("Drafts", None, None, message(limit + 200_000, token("too big")))
        assert typ == "NO" and b"[LIMIT]" in data[0], (typ, data)
        # Just under it (sizes count the stored file, LF line ends): saved.
        fits = token("just fits")
        typ, data = conn.append("Drafts", None, None, message(limit - 200_000, fits))
        assert typ == "OK", data
    finally:
        conn.logout()
    assert any(fits.encode() in raw for raw in stack.raw_messages("alice", "Drafts"))


def test_keywords_are_stored_and_seen_from_a_second_connection(stack: Stack) -> None:
    subject = token("labelled")
    message = f"From: bob@example.com\r\nSubject: {subject}\r\n\r\nlabel me\r\n".encode()
    first = stack.imap("bob")
    try:
        typ, data = first.append("INBOX", None, None, message)
        uid = re.search(rb"APPENDUID \d+ (\d+)", data[0])
        assert typ == "OK" and uid, data
        assert first.select("INBOX")[0] == "OK"
        typ, data = first.uid("STORE", uid.group(1), "+FLAGS", "($label1 Project-X \\Flagged)")
        assert typ == "OK", data
    finally:
        first.logout()
    second = stack.imap("bob", tls="starttls")
    try:
        typ, data = second.select("INBOX")
        assert typ == "OK", data
        permanent = second.untagged_responses.get("PERMANENTFLAGS", [b""])[0]
        assert b"\\*" in permanent, permanent  # clients may create new keywords
        typ, data = second.uid("SEARCH", "KEYWORD", "$label1")
        assert typ == "OK" and uid.group(1) in data[0].split(), data
        typ, data = second.uid("FETCH", uid.group(1), "(FLAGS)")
        assert typ == "OK", data
        flags = set(re.search(rb"FLAGS \(([^)]*)\)", data[0]).group(1).split())  # type: ignore[union-attr, index, arg-type]
        assert {b"$label1", b"Project-X", b"\\Flagged"} <= flags, data
        typ, data = second.uid("SEARCH", "KEYWORD", "$label2")
        assert typ == "OK" and uid.group(1) not in data[0].split(), data
    finally:
        second.logout()
    # The keyword is recorded in the Maildir itself, not only in an index.
    keywords = (stack.maildir("bob") / "dovecot-keywords").read_text()
    assert "$label1" in keywords and "Project-X" in keywords, keywords


def test_idle_is_notified_of_a_new_delivery(stack: Stack) -> None:
    subject = token("while idling")
    conn = tls_socket(stack, "imaps")
    try:
        assert conn.readline().startswith(b"* OK")
        conn.send(b'a1 LOGIN "erin@example.com" "' + PASSWORDS["erin"].encode() + b'"')
        assert conn.until(b"a1 ")[-1].startswith(b"a1 OK")
        conn.send(b"a2 SELECT INBOX")
        selected = conn.until(b"a2 ")
        assert selected[-1].startswith(b"a2 OK"), selected
        exists = next(int(line.split()[1]) for line in selected if line.endswith(b" EXISTS"))
        conn.send(b"a3 IDLE")
        assert conn.readline().startswith(b"+ "), "IDLE not accepted"
        started = time.monotonic()
        deliver(stack, "erin", subject)
        # The delivery wakes the idling client (inotify), long before the 2-min notify interval.
        lines = conn.until(b"* ", timeout=20)
        while not lines[-1].endswith(b" EXISTS"):
            lines += conn.until(b"* ", timeout=20)
        elapsed = time.monotonic() - started
        number = int(lines[-1].split()[1])
        assert number > exists, lines
        assert elapsed < 20
        conn.send(b"DONE")
        assert conn.until(b"a3 ")[-1].startswith(b"a3 OK")
        conn.send(f"a4 FETCH {number} (BODY.PEEK[HEADER.FIELDS (SUBJECT)])".encode())
        fetched = b"\n".join(conn.until(b"a4 "))
        assert subject.encode() in fetched, fetched
        conn.send(b"a5 LOGOUT")
    finally:
        conn.close()


# --- POP3 ---------------------------------------------------------------------------------------


def _pop3_find(conn: poplib.POP3, subject: str) -> int | None:
    _, listing, _ = conn.list()
    for entry in listing:
        number = int(entry.split()[0])
        _, head, _ = conn.top(number, 0)
        if f"Subject: {subject}".encode() in head:
            return number
    return None


@pytest.mark.parametrize("implicit", [False, True], ids=["pop3-110-stls", "pop3s-995"])
def test_pop3_retr_and_dele(stack: Stack, implicit: bool) -> None:
    subject = token("pop3")
    body = f"fetch me {secrets.token_hex(8)}\n"
    deliver(stack, "alice", subject, body)
    stack.wait_for_subject("alice", subject)

    if not implicit:
        with socket.create_connection(("127.0.0.1", stack.port("pop3")), timeout=30) as plain:
            lines = LineSocket(plain)
            assert lines.readline().startswith(b"+OK")
            lines.send(b"CAPA")
            capa = lines.until(b".")
            assert b"STLS" in capa, capa
            lines.send(b"USER alice@example.com")
            refused = lines.readline()
            assert refused.startswith(b"-ERR"), refused
            assert b"plaintext authentication disallowed" in refused.lower(), refused
    conn = stack.pop3("alice", implicit=implicit)
    try:
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]
        number = _pop3_find(conn, subject)
        assert number is not None
        _, retrieved, _ = conn.retr(number)
        assert f"Subject: {subject}".encode() in retrieved
        assert b"Delivered-To: alice@example.com" in retrieved
        assert retrieved[retrieved.index(b"") + 1 :] == [body.rstrip("\n").encode()]
        assert conn.dele(number).startswith(b"+OK")
    finally:
        conn.quit()
    # Gone after QUIT: from the Maildir and for IMAP.
    assert not any(subject.encode() in m for m in stack.raw_messages("alice"))
    imap = stack.imap("alice")
    try:
        imap.select("INBOX", readonly=True)
        typ, data = imap.search(None, "SUBJECT", f'"{subject}"')
        assert typ == "OK" and data[0] == b"", data
    finally:
        imap.logout()


def test_pop3_dele_without_quit_deletes_nothing(stack: Stack) -> None:
    """A session that ends without QUIT never enters the UPDATE state (RFC 1939)."""
    subject = token("pop3 kept")
    deliver(stack, "alice", subject)
    stack.wait_for_subject("alice", subject)
    before = len(stack.log(MDA, "dovecot").splitlines())
    conn = stack.pop3("alice")
    number = _pop3_find(conn, subject)
    assert number is not None
    assert conn.dele(number).startswith(b"+OK")
    # Drop the connection (poplib's file object would keep a plain close() from closing it).
    conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    conn.sock.close()  # type: ignore[union-attr]
    line = new_log_line(stack, "pop3(alice@example.com)", before)
    assert "Disconnected" in line, line
    assert any(subject.encode() in m for m in stack.raw_messages("alice"))
    again = stack.pop3("alice")
    try:
        assert _pop3_find(again, subject) is not None
    finally:
        again.quit()
