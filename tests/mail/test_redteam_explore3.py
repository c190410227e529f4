# ruff: noqa: E501
"""Exploration round 3 (red team): the costliest part under the filter."""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.mail.conftest import Stack
from tests.mail.messages import MTA, SENDER, token
from tests.mail.test_redteam import multipart

COUNT = {"html-many": 70_000, "html5": 45_000, "html10": 28_000, "attach-exe": 60_000}
LINKS5 = b"".join(b"<a href=http://h%d.example.org/p>x</a>" % i for i in range(5))
LINKS10 = b"".join(b"<a href=http://h%d.example.org/p>x</a>" % i for i in range(10))
PARTS = {
    "html5": b"Content-Type: text/html\r\n\r\n" + LINKS5 + b"\r\n",
    "html10": b"Content-Type: text/html\r\n\r\n" + LINKS10 + b"\r\n",
    "htmlx": b"Content-Type: text/html\r\n\r\n<a href=http://a.example.org/>x</a>\r\n",
    "attach-exe": b"Content-Type: application/octet-stream; name=a.exe\r\nContent-Disposition: attachment; filename=a.exe\r\n\r\nMZ\r\n",
    "charset": b"Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B$3\x1b(B\r\n",
    "zip": b"Content-Type: application/zip; name=a.zip\r\nContent-Disposition: attachment; filename=a.zip\r\n\r\nPK\x03\x04\r\n",
    "html-many": b"Content-Type: text/html\r\n\r\n<a href=http://a.example.org/>x</a><a href=http://b.example.org/>y</a><img src=http://c.example.org/i>\r\n",
}


@pytest.mark.parametrize("kind", list(PARTS))
def test_explore_part_cost(stack: Stack, kind: str) -> None:
    raw = multipart(token(kind), COUNT.get(kind, 99_000), 'boundary="b"', "B", PARTS[kind])
    start = time.monotonic()
    try:
        with stack.smtp("smtp") as smtp:
            smtp.sendmail(SENDER, ["alice@example.com"], raw)
        result = "accepted"
    except smtplib.SMTPException as err:
        result = f"{type(err).__name__} {err}"
    took = time.monotonic() - start
    ln = [x for x in stack.log(MTA, "rspamd").splitlines() if "task_write_log" in x][-1]
    print(
        f"\nCASE {kind}: {result[:100]} in {took:.1f}s size={len(raw)} {ln[ln.find('time:') : ln.find('time:') + 20]}"
    )
