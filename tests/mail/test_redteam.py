"""Red team (outside check, 2026-12-07): attacks from the internet namespace and by logged-in
users against a running stack. Each test states the defence it expects; a test that fails shows
a weakness that exists (the report names which).
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.mail.conftest import PASSWORDS, Stack
from tests.mail.messages import MDA, MTA, SENDER, text_message, token
from tests.mail.test_hostile import SMUGGLE_SCRIPT
from tests.mail.test_submission import login

# --- the too-complex check against rspamd's own MIME parser -----------------------------------

# Sends one message (stdin) on port 25 from the internet namespace as example.net's MTA would;
# prints the DATA reply's code and text (or the RCPT's, when that failed).
SEND_SCRIPT = r"""
import json, smtplib, ssl, sys
host, port, sender, rcpt = sys.argv[1:5]
raw = sys.stdin.buffer.read()
with smtplib.SMTP(host, int(port), local_hostname="sink.example.net", timeout=120) as smtp:
    smtp.starttls(context=ssl._create_unverified_context())
    smtp.ehlo("sink.example.net")
    smtp.mail(sender)
    code, text = smtp.rcpt(rcpt)
    if code == 250:
        code, text = smtp.data(raw)
print(json.dumps([code, text.decode(errors="replace")]))
"""


def send_from_internet(stack: Stack, raw: bytes, rcpt: str = "alice@example.com") -> list[Any]:
    result = subprocess.run(
        [
            *("ip", "netns", "exec", stack.internet.netns, sys.executable, "-c", SEND_SCRIPT),
            *(stack.internet.host_ip, str(stack.port("smtp")), SENDER, rcpt),
        ],
        input=raw,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def multipart(subject: str, parts: int, declared: str, used: str, part: bytes = b"") -> bytes:
    """A multipart/mixed message whose Content-Type carries ``declared`` and whose boundary
    lines are ``--used``: rspamd takes them as the message's parts (it compares boundaries in
    lower case, decodes RFC 2231 parameters and guesses an undeclared boundary)."""
    head = (
        f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; {declared}\r\n\r\n"
    ).encode()
    line = b"--" + used.encode() + b"\r\n"
    body = part or b"\r\nx\r\n"
    return head + (line + body) * parts + b"--" + used.encode() + b"--\r\n"


BOUNDARY_FORMS = {
    # boundary="b", boundary lines in upper case: rspamd matches them (lower-cased), the
    # filter's part count (exact case) does not.
    "upper-case-lines": ('boundary="b"', "B"),
    # RFC 2231 parameter continuation: rspamd decodes boundary*0, the filter finds no "=".
    "rfc2231-boundary": ('boundary*0="b"', "b"),
    # No boundary parameter at all: rspamd takes the first "--" line as the boundary.
    "undeclared-boundary": ("charset=us-ascii", "b"),
}


@pytest.mark.parametrize("form", list(BOUNDARY_FORMS))
def test_too_complex_counts_the_parts_rspamd_parses(stack: Stack, form: str) -> None:
    """5,000 parts (the bound is 1,000): refused as too complex, whatever the boundary's form."""
    declared, used = BOUNDARY_FORMS[form]
    code, text = send_from_internet(stack, multipart(token(form), 5_000, declared, used))
    assert code == 451 and "too complex" in text, (form, code, text)


# An HTML part with one link: about 4.6 s of one rspamd proxy for 99,000 of them (7 MB).
HTML_PART = b"Content-Type: text/html\r\n\r\n<a href=http://a.example.org/>x</a>\r\n"
BOMBS = 12  # at once from one internet address (smtpConnections is 20)

# Sends ``count`` copies of stdin at once on port 25, each on its own connection; prints each
# one's DATA code and seconds.
PARALLEL_SCRIPT = r"""
import json, smtplib, ssl, sys, threading, time
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


def test_parallel_part_bombs_under_the_filter_do_not_stall_submission(
    stack: Stack, tmp_path: Path
) -> None:
    """12 messages of 99,000 parts (upper-case boundary lines) at once from one address: users
    still submit within 15 s (each message alone costs a proxy ~4.6 s; the filter should have
    refused them in milliseconds). Seen 2026-12-07: one run passed (slowest submission 11.8 s);
    another failed: a submission refused (rspamd did not answer the milter handshake in 10 s,
    Postfix "milter-reject: CONNECT ... 451 4.7.1") and one of 24.9 s. Timing-dependent."""
    bomb = tmp_path / "bomb.eml"
    bomb.write_bytes(multipart(token("parallel bomb"), 99_000, 'boundary="b"', "B", HTML_PART))
    attacker = subprocess.Popen(
        [
            *("ip", "netns", "exec", stack.internet.netns, sys.executable, "-c"),
            *(PARALLEL_SCRIPT, stack.internet.host_ip, str(stack.port("smtp")), SENDER),
            *("alice@example.com", str(BOMBS), str(bomb)),
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
            except Exception as err:
                outcome = f"{type(err).__name__}: {err}"[:120]
            submissions.append((round(time.monotonic() - started, 1), outcome))
    finally:
        out, _ = attacker.communicate(timeout=300)
    print(f"\nbombs: {out.decode().strip()}\nsubmissions (s, outcome): {submissions}")
    assert all(outcome == "250" and seconds < 15 for seconds, outcome in submissions), submissions


# --- SMTP smuggling with bare carriage returns ------------------------------------------------


@pytest.mark.parametrize(
    "ending", ["\r.\r", "\r\n.\r", "\r.\r\n"], ids=["cr", "crlf-cr", "cr-crlf"]
)
def test_smuggling_with_bare_cr_is_not_delivered(stack: Stack, ending: str) -> None:
    subject, smuggled_subject = token("outer"), token("smuggled")
    spec = {
        "sender": SENDER,
        "rcpt": "alice@example.com",
        "smuggled_sender": "boss@example.net",
        "subject": subject,
        "smuggled_subject": smuggled_subject,
        "ending": ending,
    }
    output = stack.run_in_internet(
        SMUGGLE_SCRIPT, stack.internet.host_ip, str(stack.port("smtp")), json.dumps(spec)
    )
    replies = json.loads(output)
    assert [r[:3] for r in replies] == ["250", "221"], replies
    stack.wait_for_subject("alice", subject)
    time.sleep(1)
    for folder in ("", "Junk"):
        assert smuggled_subject not in [m["Subject"] for m in stack.messages("alice", folder)]


# --- What logged-in users may put in From: -----------------------------------------------------

ALICE = "alice@example.com"


def raw_head(stack: Stack, user: str, subject: str) -> str:
    """The header section of the message with ``subject`` in ``user``'s INBOX, as stored."""

    def find() -> bytes | None:
        return next((r for r in stack.raw_messages(user) if subject.encode() in r), None)

    raw: bytes = stack.wait_for(f"{subject!r} in {user}'s INBOX", find)
    return raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode(errors="replace")


def _submit(stack: Stack, raw: str) -> tuple[int, bytes]:
    with login(stack, "submission", "alice") as smtp:
        assert smtp.mail(ALICE)[0] == 250
        assert smtp.rcpt("erin@example.com")[0] == 250
        return smtp.data(raw.encode())


def _headers(subject: str, from_line: str) -> str:
    to = "" if from_line.startswith("To:") else "To: erin@example.com\r\n"
    return (
        f"{from_line}\r\n{to}Subject: {subject}\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n"
    )


@pytest.mark.parametrize(
    "from_line",
    [
        'To: erin@example.com\r\nFrom : "bob@example.com" <bob@example.com>',
        "To: erin@example.com\r\nFrom : bob@example.com",
    ],
    ids=["obs-from-display", "obs-from-address"],
)
def test_an_obsolete_syntax_from_header_is_held_to_the_rules(stack: Stack, from_line: str) -> None:
    subject = token("obs from")
    code, text = _submit(stack, _headers(subject, from_line) + "\r\nhello\r\n")
    if code == 250:
        print("\nDELIVERED HEAD:\n" + raw_head(stack, "erin", subject))
    assert code == 554, (from_line, code, text)


@pytest.mark.parametrize(
    "name",
    ["bob@example\u2024com", "bob@example\uff0ecom", "bob\u2024example@example\uff0ecom"],
    ids=["one-dot-leader", "fullwidth-full-stop", "both"],
)
def test_a_display_name_with_a_look_alike_dot_is_refused(stack: Stack, name: str) -> None:
    subject = token("dot look-alike")
    raw = _headers(subject, f'From: "{name}" <{ALICE}>') + "\r\nhello\r\n"
    code, text = _submit(stack, raw)
    assert code == 554, (name, code, text)


# --- headers a logged-in user forges for colleagues ---------------------------------------------


def test_forged_verdict_headers_from_a_user_do_not_reach_a_colleague(stack: Stack) -> None:
    subject = token("forged verdicts")
    raw = _headers(subject, f"From: {ALICE}") + (
        "Authentication-Results: mail.example.com; dkim=pass header.d=bank.example;"
        " dmarc=pass header.from=bank.example\r\n"
        "X-Spam-Status: No, score=-10.00\r\n"
        "\r\nhello\r\n"
    )
    code, text = _submit(stack, raw)
    assert code == 250, (code, text)
    head = raw_head(stack, "erin", subject)
    assert "bank.example" not in head, head
    assert "score=-10.00" not in head, head


# --- lockout of a user by another address -----------------------------------------------------

FAIL_SCRIPT = r"""
import imaplib, json, smtplib, ssl, sys, time
host, imap_port, smtp_port, user = sys.argv[1:5]
context = ssl._create_unverified_context()
for attempt in range(4):
    imap = imaplib.IMAP4(host, int(imap_port), timeout=60)
    imap.starttls(ssl_context=context)
    try:
        imap.login(user, f"wrong-{attempt}")
    except imaplib.IMAP4.error:
        pass
    imap.shutdown()
print("done")
"""


def test_failures_from_another_address_do_not_slow_the_users_logins(stack: Stack) -> None:
    stack.run_in_internet(
        FAIL_SCRIPT,
        stack.internet.host_ip,
        str(stack.port("imap")),
        str(stack.port("submission")),
        "grace@example.com",
        timeout=180,
    )
    start = time.monotonic()
    imap = stack.imap("grace")
    imap.logout()
    took_imap = time.monotonic() - start
    start = time.monotonic()
    with login(stack, "submission", "grace"):
        pass
    took_smtp = time.monotonic() - start
    assert took_imap < 3 and took_smtp < 3, (took_imap, took_smtp)
    assert PASSWORDS["grace"]
    assert MTA


# --- every smtpd on port 25 held: the liveness probe ------------------------------------------

# Holds ``count`` SMTP sessions on port 25 from the given local address, each in DATA and
# sending a header line every 4 s (smtpd's timeout is per read). Prints how many reached DATA,
# then holds them until stdin closes.
HOLD_SMTP_SCRIPT = r"""
import json, socket, sys, threading, time
host, port, source, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
held, stop = [], threading.Event()
def hold():
    try:
        sock = socket.create_connection((host, port), timeout=30, source_address=(source, 0))
        f = sock.makefile("rb")
        def reply():
            while True:
                line = f.readline()
                if not line or line[3:4] != b"-":
                    return line
        if not reply().startswith(b"220"):
            return
        for cmd in (b"EHLO sink.example.net", b"MAIL FROM:<someone@example.net>",
                    b"RCPT TO:<alice@example.com>", b"DATA"):
            sock.sendall(cmd + b"\r\n")
            answer = reply()
            if not answer[:1] in (b"2", b"3"):
                return
        held.append(sock)
        while not stop.is_set():
            sock.sendall(b"X-Slow: x\r\n")
            stop.wait(4)
    except OSError:
        return
threads = [threading.Thread(target=hold, daemon=True) for _ in range(count)]
for t in threads: t.start()
time.sleep(8)
print(json.dumps(len(held)), flush=True)
sys.stdin.read()
stop.set()
"""

ATTACKERS = 6  # addresses of the internet namespace, 17 sessions each (smtpConnections: 20)


def _health(address: str, port: int, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{address}:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return 0, str(err)


def test_every_smtpd_held_from_a_few_addresses_does_not_fail_liveness(stack: Stack) -> None:
    """100 sessions on port 25 (Postfix's process limit) from 6 addresses, each within the
    per-address limit: Postfix is busy, not dead. /healthz must stay 200 (or the kubelet
    restarts the container, dropping every session), and submission (587) must stay in
    service (readiness failing takes the pod out of the Service for every port)."""
    endpoints = json.loads((stack.state / "endpoints.json").read_text())
    mta = endpoints["pods"][f"mail/{MTA}"]
    base = f"10.101.{secrets.randbelow(250)}"
    sources = [f"{base}.{10 + i}" for i in range(ATTACKERS)]
    veth = stack.internet.veth
    holders = []
    try:
        for source in sources:
            subprocess.run(
                ["ip", "-n", stack.internet.netns, "addr", "add", f"{source}/32", "dev", "eth0"],
                check=True,
            )
            subprocess.run(["ip", "route", "add", f"{source}/32", "dev", veth], check=True)
        for source in sources:
            holders.append(
                subprocess.Popen(
                    [
                        *("ip", "netns", "exec", stack.internet.netns, sys.executable, "-c"),
                        *(
                            HOLD_SMTP_SCRIPT,
                            stack.internet.host_ip,
                            str(stack.port("smtp")),
                            source,
                        ),
                        "17",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        held = [int(h.stdout.readline() or 0) for h in holders]  # type: ignore[union-attr]
        time.sleep(2)
        healthz = _health(mta, 9101, "/healthz")
        readyz = _health(mta, 9101, "/readyz")
        start = time.monotonic()
        with login(stack, "submission", "bob"):
            pass
        submission = time.monotonic() - start
        print(f"\nheld {held} healthz {healthz} readyz {readyz} submission {submission:.1f}s")
        assert sum(held) >= 95, held
        assert healthz[0] == 200, healthz
        assert readyz[0] == 200, readyz
    finally:
        for holder in holders:
            assert holder.stdin is not None
            holder.stdin.close()
            try:
                holder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                holder.kill()
        for source in sources:
            subprocess.run(["ip", "route", "del", f"{source}/32", "dev", veth], check=False)


# --- the health probe's unscanned path -----------------------------------------------------------

# On port 25 from the internet: XCLIENT claiming 127.0.0.1, then a GTUBE message with the
# probe's envelope sender. Prints each reply.
PROBE_PATH_SCRIPT = r"""
import json, socket, sys
host, port, gtube = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.create_connection((host, port), timeout=30)
f = sock.makefile("rb")
def reply():
    lines = []
    while True:
        line = f.readline()
        lines.append(line.decode(errors="replace").strip())
        if not line or line[3:4] != b"-":
            return lines[-1]
out = [reply()]
for cmd in ("EHLO sink.example.net", "XCLIENT ADDR=127.0.0.1 NAME=localhost",
            "XFORWARD ADDR=127.0.0.1", "MAIL FROM:<probe@localhost>",
            "RCPT TO:<alice@example.com>", "DATA"):
    sock.sendall(cmd.encode() + b"\r\n")
    out.append(cmd.split()[0] + " " + reply())
if out[-1].startswith("DATA 354"):
    sock.sendall(f"From: probe@localhost\r\nSubject: probe path\r\n\r\n{gtube}\r\n.\r\n".encode())
    out.append("END " + reply())
print(json.dumps(out))
"""


def test_an_outside_sender_cannot_take_the_probes_unscanned_path(stack: Stack) -> None:
    from tests.mail.conftest import GTUBE

    out = json.loads(
        stack.run_in_internet(
            PROBE_PATH_SCRIPT, stack.internet.host_ip, str(stack.port("smtp")), GTUBE
        )
    )
    print("\n", out)
    assert not any(line.startswith("XCLIENT 2") for line in out), out
    assert not any(line.startswith("XFORWARD 2") for line in out), out
    assert not any(line.startswith("END 2") for line in out), out


# --- the agents' health server under malformed requests (from the host, as the kubelet) ------

MALFORMED = [
    b"\x00" * 9000,
    b"GET\r\n\r\n",
    b"GET /readyz",
    b"\xff\xfe /readyz HTTP/1.0\r\n\r\n",
    b"GET /readyz?x HTTP/1.0\r\n" + b"A: " + b"b" * 20000 + b"\r\n\r\n",
    b"",
]


def test_malformed_requests_leave_the_health_server_answering(stack: Stack) -> None:
    import socket

    endpoints = json.loads((stack.state / "endpoints.json").read_text())
    mta = endpoints["pods"][f"mail/{MTA}"]
    for port in (9101, 9102):
        for request in MALFORMED:
            # The server may answer and close before the request is all sent.
            with (
                socket.create_connection((mta, port), timeout=15) as sock,
                contextlib.suppress(OSError),
            ):
                if request:
                    sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(15)
                sock.recv(200)
        assert _health(mta, port, "/healthz")[0] == 200, port


def _q(text: str) -> str:
    return "".join(c if c.isalnum() else f"={ord(c):02X}" for c in text)


@pytest.mark.parametrize(
    "from_value",
    [
        # Adjacent encoded words: the white space between them is not part of the text (RFC
        # 2047 6.2), so a client shows "bob@example.com".
        f"=?utf-8?q?bob?= =?utf-8?q?{_q('@example.com')}?= <{ALICE}>",
        # An encoded word with a language tag (RFC 2231 section 5).
        f"=?utf-8*en?b?{base64.b64encode(b'bob@example.com').decode()}?= <{ALICE}>",
        # An encoded word inside a comment (RFC 2047 5(2) allows it there).
        f"{ALICE} (=?utf-8?q?{_q('bob@example.com')}?=)",
        # UTF-16 encoded word.
        f"=?utf-16be?b?{base64.b64encode('bob@example.com'.encode('utf-16be')).decode()}?="
        f" <{ALICE}>",
    ],
    ids=["split-encoded-words", "encoded-word-language", "encoded-comment", "utf16"],
)
def test_encoded_forms_of_another_address_are_refused(stack: Stack, from_value: str) -> None:
    subject = token("encoded name")
    code, text = _submit(stack, _headers(subject, f"From: {from_value}") + "\r\nhello\r\n")
    if code == 250:
        head = raw_head(stack, "erin", subject)
        import email
        import email.policy

        shown = email.message_from_string(head + "\n\n", policy=email.policy.default)["From"]
        print(f"\nACCEPTED: {from_value!r} -> a client shows {str(shown)!r}")
    assert code == 554, (from_value, code, text)


# --- the scanner's probes while it works --------------------------------------------------------


def _long_line_message(subject: str) -> bytes:
    """9 MB of short words on one line, no MIME parts: ~2.4 s of one rspamd proxy."""
    head = f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\r\n".encode()
    return head + b"a " * 4_500_000 + b"\r\n"


@pytest.mark.parametrize("kind", ["part-bomb", "long-line"])
def test_a_busy_scanner_is_not_reported_dead(stack: Stack, tmp_path: Path, kind: str) -> None:
    """12 heavy messages at once from one address keep both proxies busy: the rspamd
    container's /healthz must not fail (three failures in a row and the kubelet restarts
    rspamd, dropping every scan in progress), nor /readyz (the pod leaves the Service)."""
    endpoints = json.loads((stack.state / "endpoints.json").read_text())
    mta = endpoints["pods"][f"mail/{MTA}"]
    bomb = tmp_path / "heavy.eml"
    if kind == "part-bomb":
        bomb.write_bytes(multipart(token("heavy"), 99_000, 'boundary="b"', "B", HTML_PART))
    else:
        bomb.write_bytes(_long_line_message(token("heavy")))
    attacker = subprocess.Popen(
        [
            *("ip", "netns", "exec", stack.internet.netns, sys.executable, "-c"),
            *(PARALLEL_SCRIPT, stack.internet.host_ip, str(stack.port("smtp")), SENDER),
            *("alice@example.com", str(BOMBS), str(bomb)),
        ],
        stdout=subprocess.PIPE,
    )
    probes: list[tuple[float, int, int]] = []
    start = time.monotonic()
    try:
        while attacker.poll() is None:
            healthz = _health(mta, 9102, "/healthz")[0]
            readyz = _health(mta, 9102, "/readyz")[0]
            probes.append((round(time.monotonic() - start, 1), healthz, readyz))
            time.sleep(1)
    finally:
        out, _ = attacker.communicate(timeout=300)
    failed = [p for p in probes if p[1] != 200 or p[2] != 200]
    print(f"\n{kind}: bombs {out.decode().strip()}\nprobes (t, healthz, readyz): {probes}")
    assert not failed, failed


# --- smuggling through BDAT to a lenient receiver ----------------------------------------------

# One BDAT LAST chunk on port 25 to bob (who forwards to bob@example.net, through the relay:
# the test's sink, which ends DATA at ".\n" as lenient servers do). The chunk holds a forged end
# of data and a second transaction after it. Prints the replies.
BDAT_SCRIPT = r"""
import json, socket, sys
host, port, subject, smuggled = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sock = socket.create_connection((host, port), timeout=30)
f = sock.makefile("rb")
def reply():
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line.decode(errors="replace").strip()
out = [reply()]
for cmd in ("EHLO sink.example.net", "MAIL FROM:<someone@example.net>",
            "RCPT TO:<bob@example.com>"):
    sock.sendall(cmd.encode() + b"\r\n")
    out.append(reply())
chunk = (f"From: someone@example.net\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
         "Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <bdat.outer@example.net>\r\n\r\n"
         "outer\n.\nMAIL FROM:<boss@example.net>\nRCPT TO:<victim@example.net>\nDATA\n"
         f"From: boss@example.net\nSubject: {smuggled}\n\nsmuggled\n.\r\n.\r\n").encode()
sock.sendall(f"BDAT {len(chunk)} LAST\r\n".encode() + chunk)
out.append(reply())
sock.sendall(b"QUIT\r\n")
out.append(reply())
print(json.dumps(out))
"""


def test_bdat_with_a_forged_end_does_not_smuggle_outbound(stack: Stack) -> None:
    subject, smuggled = token("bdat outer"), token("bdat smuggled")
    out = json.loads(
        stack.run_in_internet(
            BDAT_SCRIPT, stack.internet.host_ip, str(stack.port("smtp")), subject, smuggled
        )
    )
    assert out[-2].startswith("250"), out
    stack.wait_for_sink(lambda m: m["Subject"] == subject, timeout=60)
    time.sleep(2)
    subjects = [m["Subject"] for m in stack.sink_messages()]
    assert smuggled not in subjects, subjects


# --- the MDA's tunnel slots (a client the NetworkPolicy admits, or any pod where the CNI does
# not enforce NetworkPolicies) -------------------------------------------------------------------

# From the MTA pod's network namespace: keeps ``count`` connections to the MDA's LMTP tunnel
# each in an unfinished TLS handshake (a record header, then nothing), reconnecting as the agent
# drops them (its 10 s handshake bound). Runs until stdin closes.
SLOTS_SCRIPT = r"""
import socket, sys, threading, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stop = threading.Event()
def hold():
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=30)
            sock.sendall(b"\x16\x03\x01\x02\x00")
            sock.settimeout(30)
            sock.recv(10)  # returns when the agent drops the connection
            sock.close()
        except OSError:
            time.sleep(0.2)
for _ in range(count):
    threading.Thread(target=hold, daemon=True).start()
print("holding", flush=True)
sys.stdin.read()
stop.set()
"""


def test_unfinished_handshakes_do_not_stop_delivery(stack: Stack) -> None:
    endpoints = json.loads((stack.state / "endpoints.json").read_text())
    mda = endpoints["pods"][f"mail/{MDA}"]
    mta = endpoints["pods"][f"mail/{MTA}"]
    postfix_pid = stack.own_daemon_pids()["postfix"].pop()
    holder = subprocess.Popen(
        [
            "nsenter",
            "-t",
            str(postfix_pid),
            "-n",
            sys.executable,
            "-c",
            SLOTS_SCRIPT,
            mda,
            "24",
            "220",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    subjects = [token("during slots") for _ in range(3)]
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        time.sleep(3)
        for subject in subjects:
            send_from_internet(stack, text_message(subject, "alice@example.com").as_bytes())
        time.sleep(20)
        readyz = _health(mta, 9101, "/readyz")
        delivered = [s for s in subjects if any(m["Subject"] == s for m in stack.messages("alice"))]
        print(f"\nduring: delivered {len(delivered)}/3, MTA readyz {readyz}")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    stack.flush_queue()
    for subject in subjects:  # nothing lost: all arrive once the slots are free
        stack.wait_for_subject("alice", subject, timeout=60)
    assert len(delivered) == 3, delivered


def test_unfinished_handshakes_on_the_auth_tunnel_do_not_stop_logins(stack: Stack) -> None:
    """The same against the MDA's SASL tunnel (12345): users still log in on 587 and 465."""
    endpoints = json.loads((stack.state / "endpoints.json").read_text())
    mda = endpoints["pods"][f"mail/{MDA}"]
    mta = endpoints["pods"][f"mail/{MTA}"]
    postfix_pid = stack.own_daemon_pids()["postfix"].pop()
    holder = subprocess.Popen(
        [
            "nsenter",
            "-t",
            str(postfix_pid),
            "-n",
            sys.executable,
            "-c",
            SLOTS_SCRIPT,
            mda,
            "12345",
            "220",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    outcomes: list[str] = []
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        time.sleep(3)
        for port in ["submission", "submissions"] * 4:
            try:
                with login(stack, port, "bob"):
                    outcomes.append("235")
            except Exception as err:  # what a user sees
                outcomes.append(f"{type(err).__name__}: {err}"[:100])
        readyz = _health(mta, 9101, "/readyz")
        print(f"\nlogins during: {outcomes}, MTA readyz {readyz}")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert outcomes == ["235"] * 8, outcomes
