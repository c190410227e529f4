"""Hostile clients: SMTP smuggling, password guessing, address harvesting, idle IMAP connections.

The attacker runs in the test's internet namespace, an address held to the per-client limits
(``spec.limits.perClient``); the host's clients come from the pod bridge, which the test stack
exempts (conftest), and stand for everybody else. docs/operator.md, "Hostile clients", says
what each defence is; each test here failed before it was built.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.mail.conftest import PASSWORDS, SMTP_REPLY_SOURCE, Stack
from tests.mail.messages import SENDER, token
from tests.mail.test_probes_under_load import release

# --- SMTP smuggling ---------------------------------------------------------------------------

# One session on port 25: a message whose content holds a forged end of DATA (``ending``) and,
# after it, a second transaction in example.net's name; a pause after the smuggled DATA beats
# reject_unauth_pipelining, which sees only commands sent ahead in one packet. Prints every
# reply the server sent after the first DATA.
SMUGGLE_SCRIPT = (
    SMTP_REPLY_SOURCE
    + r"""
import json, socket, sys, time
host, port, spec = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
sock = socket.create_connection((host, port), timeout=30)
stream = sock.makefile("rb")

def message(sender, subject, body):
    return (f"From: {sender}\r\nTo: {spec['rcpt']}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n\r\n{body}").encode()

assert reply()[0].startswith("220")
command("EHLO sink.example.net")
assert command(f"MAIL FROM:<{spec['sender']}>")[-1].startswith("250")
assert command(f"RCPT TO:<{spec['rcpt']}>")[-1].startswith("250")
assert command("DATA")[-1].startswith("354")
smuggled = (f"MAIL FROM:<{spec['smuggled_sender']}>\r\nRCPT TO:<{spec['rcpt']}>\r\n"
            "DATA\r\n").encode()
sock.sendall(message(spec["sender"], spec["subject"], "outer body")
             + spec["ending"].encode() + smuggled)
time.sleep(1.5)
sock.sendall(message(spec["smuggled_sender"], spec["smuggled_subject"], "smuggled body\r\n")
             + b".\r\nQUIT\r\n")
after = []
while True:
    lines = reply()
    if not lines:
        break
    after += lines
print(json.dumps(after))
"""
)


@pytest.mark.parametrize(
    "ending", ["\n.\n", "\r\n.\n", "\n.\r\n"], ids=["lf", "crlf-lf", "lf-crlf"]
)
def test_smuggled_smtp_is_not_delivered(stack: Stack, ending: str) -> None:
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
    # One message: its 250, then QUIT's 221. The forged ending gave no second transaction.
    assert [r[:3] for r in replies] == ["250", "221"], replies
    outer = stack.wait_for_subject("alice", subject)
    body = outer.get_payload()
    assert isinstance(body, str)
    assert "boss@example.net" in body and "smuggled body" in body, body
    time.sleep(1)  # anything smuggled would have been delivered with the outer message
    for folder in ("", "Junk"):
        subjects = [m["Subject"] for m in stack.messages("alice", folder)]
        assert smuggled_subject not in subjects, folder


# --- password guessing ------------------------------------------------------------------------

# From one address: three IMAP logins with wrong passwords, one after the other (with Dovecot's
# per-address penalty, the third waited 8 s before it was checked), then SMTP AUTH on 587 with
# the right password. Prints the IMAP failures' durations and the SMTP AUTH's code and time.
PENALTY_SCRIPT = r"""
import imaplib, json, smtplib, ssl, sys, time
host, imap_port, smtp_port, user, password = sys.argv[1:6]
context = ssl._create_unverified_context()
failures = []
for attempt in range(3):
    imap = imaplib.IMAP4(host, int(imap_port), timeout=40)
    imap.starttls(ssl_context=context)
    start = time.monotonic()
    try:
        imap.login(user, f"wrong-{attempt}-password")
    except imaplib.IMAP4.error:
        failures.append(time.monotonic() - start)
    imap.shutdown()
smtp = smtplib.SMTP(host, int(smtp_port), local_hostname="client.example.net", timeout=40)
smtp.starttls(context=context)
smtp.ehlo("client.example.net")
start = time.monotonic()
try:
    code = smtp.login(user, password)[0]
except smtplib.SMTPResponseException as err:
    code = err.smtp_code
print(json.dumps({"failures": failures, "code": code, "seconds": time.monotonic() - start}))
"""


def test_a_penalised_address_still_logs_in_on_submission(stack: Stack) -> None:
    output = stack.run_in_internet(
        PENALTY_SCRIPT,
        stack.internet.host_ip,
        str(stack.port("imap")),
        str(stack.port("submission")),
        "alice@example.com",
        PASSWORDS["alice"],
        timeout=120,
    )
    result = json.loads(output)
    assert len(result["failures"]) == 3, result
    # No penalty grows (the auth policy service bounds guessing instead): each failure is
    # answered within the failure delay (up to 2 s: Dovecot answers failures in batches).
    assert all(seconds < 5 for seconds in result["failures"]), result
    # Nor is the right password delayed: with the penalty, this waited 15 s and Postfix, which
    # waits 10 s, answered "454 4.7.0 Connection lost to authentication server".
    assert result["code"] == 235, result
    assert result["seconds"] < 5, result


# 30 logins with wrong passwords at once on 587, from one address. Prints each one's SMTP code
# (the greeting's when it was refused at connect; 0 for a dropped connection).
GUESS_SCRIPT = r"""
import json, smtplib, ssl, sys, threading
host, port, user, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
context = ssl._create_unverified_context()
barrier = threading.Barrier(count)
codes = [None] * count

def guess(index):
    barrier.wait()
    try:
        smtp = smtplib.SMTP(host, port, local_hostname="client.example.net", timeout=60)
        smtp.starttls(context=context)
        smtp.ehlo("client.example.net")
        codes[index] = smtp.login(user, f"guess-{index}")[0]
    except smtplib.SMTPResponseException as err:
        codes[index] = err.smtp_code
    except smtplib.SMTPConnectError as err:
        codes[index] = err.smtp_code
    except (smtplib.SMTPServerDisconnected, OSError):
        codes[index] = 0

threads = [threading.Thread(target=guess, args=(i,)) for i in range(count)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(codes))
"""


def test_parallel_guesses_are_limited_and_others_still_log_in(stack: Stack) -> None:
    output = stack.run_in_internet(
        GUESS_SCRIPT,
        stack.internet.host_ip,
        str(stack.port("submission")),
        "alice@example.com",
        "30",
        timeout=120,
    )
    codes = json.loads(output)
    assert len(codes) == 30
    assert 454 not in codes, codes
    # 587 is Dovecot's: no per-address connection limit, so every guess gets its session and is
    # refused (535); the auth policy service lets 10 be checked (agent/auth_policy.py) and
    # refuses the others unchecked, answered alike (test_shared_address_logins counts them).
    assert codes == [535] * 30, codes
    # Everybody else logs in at once, with the right password.
    start = time.monotonic()
    with stack.smtp("submission") as smtp:
        assert smtp.login("alice@example.com", PASSWORDS["alice"])[0] == 235
    assert time.monotonic() - start < 5


# --- address harvesting -----------------------------------------------------------------------

# One session on port 25 trying unknown addresses until the server ends it. Prints each RCPT's
# code and how long its answer took.
HARVEST_SCRIPT = r"""
import json, smtplib, sys, time
host, port, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
smtp = smtplib.SMTP(host, port, local_hostname="sink.example.net", timeout=30)
smtp.ehlo()
assert smtp.mail("someone@example.net")[0] == 250
answers = []
for index in range(30):
    start = time.monotonic()
    try:
        code = smtp.rcpt(f"nobody-{index}-{tag}@example.com")[0]
    except smtplib.SMTPServerDisconnected:
        code = 0
    answers.append([code, time.monotonic() - start])
    if code in (0, 421):
        break
print(json.dumps(answers))
"""


def test_unknown_recipients_are_slowed_then_the_session_ends(stack: Stack) -> None:
    output = stack.run_in_internet(
        HARVEST_SCRIPT,
        stack.internet.host_ip,
        str(stack.port("smtp")),
        token("probe", "-"),
        timeout=120,
    )
    answers = json.loads(output)
    codes = [code for code, _ in answers]
    # Every unknown address is refused at RCPT (the same answer a typo gets), ...
    assert codes[:-1] == [550] * (len(codes) - 1), answers
    # ... the first 3 at once, the next ones a second late each (smtpd_error_sleep_time), ...
    assert all(seconds < 0.8 for _, seconds in answers[:3]), answers
    assert all(seconds >= 0.9 for _, seconds in answers[3:-1]), answers
    # ... and the 10th error ends the session (smtpd_hard_error_limit).
    assert codes[-1] in (0, 421), answers
    assert len(codes) <= 11, answers


# --- IMAP login slots -------------------------------------------------------------------------

# Opens ``count`` connections to the IMAPS port at once (a thread each), completes TLS on each
# and leaves them idle. Prints "started" as it begins, then how many were greeted, then holds
# them until its standard input closes.
HOLD_SCRIPT = r"""
import json, socket, ssl, sys, threading
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
context = ssl._create_unverified_context()
sockets, greeted = [], []

def hold():
    try:
        sock = context.wrap_socket(socket.create_connection((host, port), timeout=60))
        sockets.append(sock)
        greeted.append(sock.recv(512).startswith(b"* OK"))
    except OSError:
        greeted.append(False)

print("started", flush=True)
threads = [threading.Thread(target=hold) for _ in range(count)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"open": len(sockets), "greeted": sum(greeted)}), flush=True)
sys.stdin.read()
"""


def test_idle_imap_connections_from_one_address_do_not_block_logins(stack: Stack) -> None:
    holder = subprocess.Popen(
        [
            *("ip", "netns", "exec", stack.internet.netns, sys.executable, "-c", HOLD_SCRIPT),
            *(stack.internet.host_ip, str(stack.port("imaps")), "300"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "started\n"
        time.sleep(0.5)  # the flood is under way
        start = time.monotonic()
        imap = stack.imap("alice")
        imap.logout()
        elapsed = time.monotonic() - start
        held = json.loads(holder.stdout.readline() or "{}")
        # Before, every connection took a login process of its own, forked one by one on
        # arrival: a login in the middle of the flood waited 5.4 s here (0.4 s now).
        assert elapsed < 3
        assert held["open"] == 300, held
    finally:
        release(holder)
