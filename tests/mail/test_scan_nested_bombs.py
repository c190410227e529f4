"""The "too complex" check against parts that only exist once rspamd decodes a part (outside
re-check of #21, 2026-12-07): rspamd 3.4 decodes a message/* part by its Content-Transfer-
Encoding and parses the message inside, and parses the content of S/MIME signed-data, so a
raw message of two "--" lines can hold any number of parts. Such parts are refused as too
complex; what real mail sends (a forwarded message in 7bit, an encrypted S/MIME message) still
passes.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import smtplib
import subprocess
from pathlib import Path

import pytest

from tests.mail.conftest import Stack
from tests.mail.messages import SENDER, token
from tests.mail.test_scanner import SUBMISSION_BOUND, submitting_during_bombs


def inner_message(subject: str, parts: int) -> bytes:
    """A multipart/mixed message of ``parts`` tiny parts."""
    head = (
        f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    ).encode()
    return head + b"--b\r\n\r\nx\r\n" * parts + b"--b--\r\n"


def encode(raw: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.encodebytes(raw).replace(b"\n", b"\r\n")
    if encoding == "quoted-printable":  # every "-" as =2D: no raw line starts with "--"
        return raw.replace(b"=", b"=3D").replace(b"-", b"=2D")
    assert encoding == "x-uuencode"
    lines = [b"begin 644 inner.eml"]
    for at in range(0, len(raw), 45):
        lines.append(_uu_line(raw[at : at + 45]))
    return b"\r\n".join([*lines, b"`", b"end", b""])


def _uu_line(chunk: bytes) -> bytes:
    return binascii.b2a_uu(chunk, backtick=True).rstrip(b"\n")


def with_part(subject: str, part_headers: str, body: bytes) -> bytes:
    """A message from the internet with one part: ``part_headers`` and ``body``."""
    head = (
        f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    ).encode()
    return head + b"--outer\r\n" + part_headers.encode() + b"\r\n" + body + b"\r\n--outer--\r\n"


def nested_bomb(subject: str, parts: int, encoding: str = "base64") -> bytes:
    """One message/rfc822 part in ``encoding``: two raw "--" lines, ``parts`` parts inside."""
    return with_part(
        subject,
        f"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: {encoding}\r\n",
        encode(inner_message(token("inner"), parts), encoding),
    )


def refused_as_too_complex(stack: Stack, raw: bytes) -> str:
    """The 451's text when port 25 refuses ``raw`` as too complex to scan."""
    with pytest.raises(smtplib.SMTPDataError) as refused, stack.smtp("smtp") as smtp:
        smtp.sendmail(SENDER, ["alice@example.com"], raw)
    assert refused.value.smtp_code == 451, refused.value
    text = refused.value.smtp_error.decode()
    assert "too complex to scan" in text, text
    return text


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable", "x-uuencode"])
def test_too_complex_counts_parts_inside_an_encoded_rfc822_part(
    stack: Stack, encoding: str
) -> None:
    """Attack: 5,000 parts (the bound is 1,000) inside a message/rfc822 part in ``encoding``.
    The raw message has two "--" lines; rspamd decodes the part and parses every inner part.
    Expected: refused as too complex (451)."""
    text = refused_as_too_complex(stack, nested_bomb(token("nested"), 5_000, encoding))
    assert "encoded message/* part" in text, text


def test_an_encoded_message_inside_a_7bit_forwarded_one_is_too_complex(stack: Stack) -> None:
    """Attack: the base64 message/rfc822 sits in the headers of a message forwarded in 7bit
    (the enclosed message's own Content-Type, no "--" line before it), spelled with a comment,
    quotes, upper case and a folded encoding. Expected: refused as too complex."""
    enclosed = (
        b'From: x@example.net\r\nContent-Type: (c) "Message"/RFC822\r\n'
        b"Content-Transfer-Encoding:\r\n BASE64\r\n\r\n"
        + encode(inner_message(token("inner"), 5_000), "base64")
    )
    raw = with_part(token("chained"), "Content-Type: message/rfc822\r\n", enclosed)
    assert "encoded message/* part" in refused_as_too_complex(stack, raw)


def smime(tmp_path: Path, operation: list[str]) -> bytes:
    """An S/MIME message (headers and body, as openssl writes it) around a 5,000-part message,
    made with a throwaway certificate."""
    key, cert, inner = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "inner.eml"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=sender.example.net", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    inner.write_bytes(
        b"Content-Type: message/rfc822\r\n\r\n" + inner_message(token("inner"), 5_000)
    )
    made = subprocess.run(
        ["openssl", "smime", *operation, "-in", str(inner)]
        + (["-signer", str(cert), "-inkey", str(key)] if "-sign" in operation else [str(cert)]),
        check=True,
        capture_output=True,
    ).stdout
    head = f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {token('smime')}\r\n"
    return head.encode() + made.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_a_message_inside_smime_signed_data_is_too_complex(stack: Stack, tmp_path: Path) -> None:
    """Attack: a message of 5,000 parts as the content of S/MIME signed-data (opaque signing,
    application/x-pkcs7-mime, base64): rspamd 3.4 parses the signed content. Expected:
    refused as too complex."""
    raw = smime(tmp_path, ["-sign", "-nodetach"])
    assert b"\r\n--" not in raw.split(b"\r\n\r\n", 1)[1]  # no raw part line at all
    assert "S/MIME" in refused_as_too_complex(stack, raw)


def test_forwarded_and_encrypted_messages_are_scanned(stack: Stack, tmp_path: Path) -> None:
    """What real mail sends passes the check: a message forwarded in 7bit (its parts are raw
    lines, counted), a base64 attachment named message.txt, and an S/MIME encrypted message
    (enveloped-data, which rspamd cannot open: 5,000 parts inside are no parts for it)."""
    forwarded = with_part(
        token("forwarded"), "Content-Type: message/rfc822\r\n", inner_message(token("in"), 3)
    )
    attachment = with_part(
        token("attachment"),
        'Content-Type: text/plain; name="message.txt"\r\nContent-Transfer-Encoding: base64\r\n',
        encode(
            b"Content-Type: message/rfc822 is what a forwarded message says.\r\n" * 50, "base64"
        ),
    )
    encrypted = smime(tmp_path, ["-encrypt", "-aes256"])
    for raw in (forwarded, attachment, encrypted):
        with stack.smtp("smtp") as smtp:  # 250, not 451: scanned
            smtp.sendmail(SENDER, ["alice@example.com"], raw)
        subject = raw.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
        # Delivered (the verdict may file it as Junk: not this test's concern).
        stack.wait_for(
            f"{subject!r} delivered to alice",
            lambda subject=subject: any(
                m["Subject"] == subject
                for folder in ("", "Junk")
                for m in stack.messages("alice", folder)
            ),
        )


NESTED_PARTS = 300_000  # 4 MB as base64 (messageSize is 10Mi in the fixture)


def test_nested_part_bombs_do_not_stall_submission(stack: Stack, tmp_path: Path) -> None:
    """Attack: 4 messages at once from one internet address, each one base64 message/rfc822
    part holding 300,000 tiny parts (the raw message has two "--" lines). Seen 2026-12-07
    before the fix: the bombs got 451 at Postfix's milter timeout (21 s), submissions 454
    after 10 s. Expected: each bomb is refused within 15 s, and a user's submissions meanwhile
    each take under 15 s and succeed."""
    bomb = tmp_path / "nested.eml"
    bomb.write_bytes(nested_bomb(token("nested bomb"), NESTED_PARTS))
    out, submissions = submitting_during_bombs(stack, bomb, 4)
    print(f"\nbombs: {out.decode().strip()}\nsubmissions (s, outcome): {submissions}")
    bombs = json.loads(out)
    assert all(code == 451 and seconds < 15 for code, seconds in bombs), bombs
    assert all(
        outcome == "250" and seconds < SUBMISSION_BOUND for seconds, outcome in submissions
    ), submissions
