"""The scanner under hostile mail and faults: one message must not stop scanning for everyone.

A message of hundreds of thousands of tiny MIME parts held rspamd 3.4's only proxy process for
minutes (and every milter session with it: 451/454 on 25 and 587 at Postfix's timeouts). The
rendered stack refuses to scan it (the "too complex" connection filter) and bounds every scan;
the agent's probes scan a message through the milter, so a stopped scanner shows (after the
probe scan's deadline: until then it may be busy).
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mailstack.agent.daemons import MILTER_PROBE_DEADLINE
from tests.mail.conftest import PASSWORDS, Stack
from tests.mail.messages import MTA, SENDER, text_message, token
from tests.mail.test_submission import login

# Enough parts to hold the old configuration's proxy for minutes (50000 took ~10 s of CPU).
PARTS = 300_000
# What a submission may take while the many-parts message is being refused (measured: ~1 s).
SUBMISSION_BOUND = 15.0
READYZ_DEADLINE = 6.0  # the agent's probe deadline (3 s) and the answer


def many_parts_message(subject: str) -> bytes:
    head = (
        f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    ).encode()
    return head + b"--b\r\n\r\nx\r\n" * PARTS + b"--b--\r\n"


def proxy_pids(stack: Stack) -> set[int]:
    return {pid for pid, cmd in stack.own_processes().items() if "rspamd_proxy process" in cmd}


def readyz(stack: Stack, container: str = "rspamd") -> tuple[int, str]:
    endpoints = json.loads((stack.state / "endpoints.json").read_text())
    address = endpoints["pods"][f"mail/{MTA}"]
    port = {"postfix": 9101, "rspamd": 9102}[container]
    try:
        with urllib.request.urlopen(
            f"http://{address}:{port}/readyz", timeout=READYZ_DEADLINE
        ) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_a_many_parts_message_is_refused_at_once_and_submission_goes_on_meanwhile(
    stack: Stack,
) -> None:
    daemons_before = stack.own_daemon_pids()
    proxies_before = proxy_pids(stack)
    assert len(proxies_before) > 1, "more than one proxy process"
    # This test's part of the shared stack's log: a crash elsewhere is not this message's.
    log_start = len(stack.log(MTA, "rspamd"))
    subject = token("many parts")
    raw = many_parts_message(subject)
    outcome: dict[str, object] = {}

    def send_many_parts() -> None:
        started = time.monotonic()
        try:
            with stack.smtp("smtp") as smtp:
                smtp.sendmail(SENDER, ["alice@example.com"], raw)
            outcome["result"] = "accepted"
        except smtplib.SMTPDataError as err:
            outcome["result"] = (err.smtp_code, err.smtp_error.decode())
        outcome["seconds"] = time.monotonic() - started

    attacker = threading.Thread(target=send_many_parts)
    attacker.start()
    submissions: list[float] = []
    try:
        time.sleep(0.5)  # the many-parts message is on its way to the scanner
        while attacker.is_alive() or not submissions:
            started = time.monotonic()
            with stack.smtp("submission") as smtp:
                smtp.login("bob@example.com", PASSWORDS["bob"])
                message = text_message(
                    token("meanwhile"), "carol@example.com", sender="bob@example.com"
                )
                smtp.send_message(message)
            submissions.append(time.monotonic() - started)
            assert submissions[-1] < SUBMISSION_BOUND, submissions
    finally:
        attacker.join(timeout=120)
    print(f"many parts: {outcome}; submissions meanwhile (s): {submissions}")
    assert outcome["seconds"] < SUBMISSION_BOUND, outcome  # type: ignore[operator]
    code, text = outcome["result"]  # type: ignore[misc]
    assert code == 451 and "too complex to scan (over 1000 MIME parts)" in text, outcome
    stack.wait_for_log(MTA, "rspamd", "message not scanned: over 1000 MIME parts")
    # No daemon restarted, no rspamd worker died (rspamd's main process replaces a crashed one).
    assert stack.own_daemon_pids() == daemons_before
    assert proxy_pids(stack) == proxies_before
    assert "terminated abnormally" not in stack.log(MTA, "rspamd")[log_start:]


def test_a_stopped_scanner_is_reported_wedged_after_the_probe_deadline(stack: Stack) -> None:
    """Proxies that stop answering look busy until the probe scan's deadline, then wedged (a
    restart helps: the liveness probe); once they resume, the next probe scan passes."""
    assert readyz(stack) == (200, "ok\n")
    proxies = proxy_pids(stack)
    assert proxies
    for pid in proxies:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        early = readyz(stack)
        time.sleep(MILTER_PROBE_DEADLINE + 2 - (time.monotonic() - started))
        status, body = readyz(stack)
        took = time.monotonic() - started
    finally:
        for pid in proxies:
            os.kill(pid, signal.SIGCONT)
    assert early == (200, "ok\n"), early  # under the deadline: maybe busy
    assert status == 503 and "no scan verdict" in body, (status, body, took)
    assert readyz(stack) == (200, "ok\n")


def parts_message(subject: str, parts: int, declared: str, line: bytes, part: bytes) -> bytes:
    """multipart/mixed with ``declared`` for parameters, its parts separated by ``line``."""
    head = (
        f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; {declared}\r\n\r\n"
    ).encode()
    return head + (line + b"\r\n" + part) * parts + line + b"--\r\n"


# Boundary lines that rspamd parses as parts though they are not the declared boundary as
# written (outside check, 2026-12-07: each passed the filter, which compared exactly).
BOUNDARY_FORMS = {
    "upper-case-lines": ('boundary="b"', b"--B"),
    "rfc2231-boundary": ('boundary*0="b"', b"--b"),
    "undeclared-boundary": ("charset=us-ascii", b"--b"),
}


@pytest.mark.parametrize("form", list(BOUNDARY_FORMS))
def test_too_complex_counts_the_parts_rspamd_parses(stack: Stack, form: str) -> None:
    declared, line = BOUNDARY_FORMS[form]
    raw = parts_message(token(form), 5_000, declared, line, b"\r\nx\r\n")
    with pytest.raises(smtplib.SMTPDataError) as refused, stack.smtp("smtp") as smtp:
        smtp.sendmail(SENDER, ["alice@example.com"], raw)
    assert refused.value.smtp_code == 451, refused.value
    assert b"too complex to scan (over 1000 MIME parts)" in refused.value.smtp_error


# An HTML part with one link: 99,000 of them (7 MB) cost an rspamd proxy ~4.6 s.
HTML_PART = b"Content-Type: text/html\r\n\r\n<a href=http://a.example.org/>x</a>\r\n"
BOMBS = 12  # at once, from one internet address (below smtpConnections, 20)

# Sends ``count`` copies of a file at once on port 25, each on its own connection; prints each
# one's DATA reply code and seconds.
PARALLEL_SCRIPT = r"""
import json, smtplib, sys, threading, time
host, port, sender, rcpt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
count, raw = int(sys.argv[5]), open(sys.argv[6], "rb").read()
out = [None] * count
def send(i):
    start = time.monotonic()
    try:
        with smtplib.SMTP(host, port, local_hostname="sink.example.net", timeout=120) as smtp:
            smtp.ehlo("sink.example.net")
            smtp.mail(sender)
            smtp.rcpt(rcpt)
            code = smtp.data(raw)[0]
    except smtplib.SMTPResponseException as err:
        code = err.smtp_code
    except OSError:
        code = 0
    out[i] = [code, round(time.monotonic() - start, 1)]
threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out))
"""


def submitting_during_bombs(
    stack: Stack, bomb: Path, count: int
) -> tuple[bytes, list[tuple[float, str]]]:
    """Sends ``count`` copies of ``bomb`` at once from the internet to port 25 (what
    ``PARALLEL_SCRIPT`` prints: [code, seconds] per copy) and, while they last, bob's
    submissions one after another: (seconds, "250" or what the user saw) each."""
    attacker = subprocess.Popen(
        [
            *("ip", "netns", "exec", stack.internet.netns, sys.executable, "-c"),
            *(PARALLEL_SCRIPT, stack.internet.host_ip, str(stack.port("smtp")), SENDER),
            *("alice@example.com", str(count), str(bomb)),
        ],
        stdout=subprocess.PIPE,
    )
    submissions: list[tuple[float, str]] = []
    try:
        time.sleep(3)  # the bombs are on their way to the scanner
        while attacker.poll() is None or not submissions:
            started = time.monotonic()
            try:
                with login(stack, "submission", "bob") as smtp:
                    smtp.send_message(
                        text_message(
                            token("meanwhile"), "carol@example.com", sender="bob@example.com"
                        )
                    )
                outcome = "250"
            except (smtplib.SMTPException, OSError) as err:  # what a user sees
                outcome = f"{type(err).__name__}: {err}"[:120]
            submissions.append((round(time.monotonic() - started, 1), outcome))
    finally:
        out, _ = attacker.communicate(timeout=300)
    return out, submissions


def test_parallel_part_bombs_do_not_stall_submission(stack: Stack, tmp_path: Path) -> None:
    """12 messages of 99,000 parts with upper-case boundary lines at once from one address
    (outside check, 2026-12-07: they were scanned, ~4.6 s each, and submissions meanwhile
    took up to 25 s or were refused at the milter's timeouts). Refused as too complex, they
    leave submission within its bound."""
    bomb = tmp_path / "bomb.eml"
    bomb.write_bytes(
        parts_message(token("parallel bomb"), 99_000, 'boundary="b"', b"--B", HTML_PART)
    )
    out, submissions = submitting_during_bombs(stack, bomb, BOMBS)
    print(f"bombs (code, s): {out.decode().strip()}; submissions (s, outcome): {submissions}")
    assert all(code == 451 for code, _ in json.loads(out)), out
    assert all(outcome == "250" and took < SUBMISSION_BOUND for took, outcome in submissions)
