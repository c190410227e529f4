# ruff: noqa: E501
"""Exploration round 2 (red team): slow messages under the too-complex bounds."""

from __future__ import annotations

import base64
import os
import smtplib
import time

import pytest

from tests.mail.conftest import Stack
from tests.mail.messages import MTA, SENDER, token


def head(subject: str, ctype: str, extra: str = "") -> bytes:
    return (
        f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n{extra}"
        f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n\r\n"
    ).encode()


def build(case: str, subject: str) -> bytes:
    if case == "html-parts-upper":
        part = b"--B\r\nContent-Type: text/html\r\n\r\n<a href=http://a%d.example.org/>x</a>\r\n"
        return (
            head(subject, 'multipart/mixed; boundary="b"')
            + b"".join(part.replace(b"%d", str(i).encode()) for i in range(99_000))
            + b"--B--\r\n"
        )
    if case == "rfc822-parts-upper":
        part = b"--B\r\nContent-Type: message/rfc822\r\n\r\nFrom: a@b.c\r\nSubject: s\r\n\r\nx\r\n"
        return head(subject, 'multipart/mixed; boundary="b"') + part * 99_000 + b"--B--\r\n"
    if case == "many-urls":
        body = b"".join(b"http://u%d.example.org/p " % i for i in range(300_000))
        return head(subject, "text/plain") + body + b"\r\n"
    if case == "many-headers":
        return (
            head(subject, "text/plain", "".join(f"X-H{i}: v\r\n" for i in range(200_000)))
            + b"x\r\n"
        )
    if case == "long-line":
        return head(subject, "text/plain") + b"a " * 4_500_000 + b"\r\n"
    if case == "base64-garbage":
        data = base64.b64encode(os.urandom(6_000_000))
        lines = b"\r\n".join(data[i : i + 76] for i in range(0, len(data), 76))
        return head(subject, 'multipart/mixed; boundary="b"') + (
            b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + lines
            + b"\r\n--b--\r\n"
        )
    if case == "uuencode":
        body = b"begin 644 x.bin\r\n" + b"M" + b"A" * 60 + b"\r\n" * 1
        body = (
            b"begin 644 x.bin\r\n"
            + (b"M" + b"86)C9&5F9VAI:FML;6YO<'%R<W1U=G=X>7HQ,C,T-38W.#DP86)C9&5F\r\n") * 140_000
            + b"`\r\nend\r\n"
        )
        return head(subject, "text/plain") + body
    if case == "many-to":
        to = ", ".join(f"u{i}@example.org" for i in range(5000))
        return head(subject, "text/plain", f"Cc: {to}\r\n") + b"x\r\n"
    raise AssertionError(case)


CASES = [
    "html-parts-upper",
    "rfc822-parts-upper",
    "many-urls",
    "many-headers",
    "long-line",
    "base64-garbage",
    "uuencode",
    "many-to",
]


@pytest.mark.parametrize("case", CASES)
def test_explore_slow(stack: Stack, case: str) -> None:
    subject = token(f"slow {case}")
    raw = build(case, subject)
    start = time.monotonic()
    try:
        with stack.smtp("smtp") as smtp:
            smtp.sendmail(SENDER, ["alice@example.com"], raw)
        result = "accepted"
    except smtplib.SMTPException as err:
        result = f"{type(err).__name__} {err}"
    took = time.monotonic() - start
    print(f"\nCASE {case}: {result[:200]} in {took:.1f}s size={len(raw)}")
    lines = [
        ln
        for ln in stack.log(MTA, "rspamd").splitlines()
        if "task_write_log" in ln or "terminated" in ln or "not scanned" in ln
    ]
    if lines:
        ln = lines[-1]
        print(ln[:200], "...", ln[ln.find("len:") : ln.find("len:") + 60])
