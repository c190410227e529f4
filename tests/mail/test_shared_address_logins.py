"""Logins from an address that guessers share with users (an office's or a carrier's NAT).

Found by the outside re-check of #21 (2026-12-07): smtpd_client_auth_rate_limit counted every
AUTH command per address and port, right or wrong, so 20 wrong guesses in a minute from an
address locked the right password out of that port for the rest of the minute (450 4.7.1).
Now the agent's auth policy service (agent/auth_policy.py, asked by Dovecot before every login,
SMTP AUTH included) refuses guesses beyond an address's budget per login and across logins,
and lets a password that this login succeeded with through at once (docs/operator.md, "Hostile
clients"). Each case: grace's device logs in once (her hash becomes known), then 25 wrong
guesses for her from the same address in under a minute, then her right password. The
third red team on #21 (F1b) killed the agent in between: the known hashes and their nonce are
kept on the mail volume (agent/known_hashes.py), so a restarted agent still knows them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from tests.mail.conftest import PASSWORDS, Stack
from tests.mail.test_guess_budgets import FLOOD_SCRIPT, RIGHT_LOGIN_SCRIPT
from tests.mail.test_held_sessions import internet_address

# Guesses the auth policy service lets Dovecot check for one login from one address at once
# (agent.auth_policy.GuessLimits: then one a minute).
LOGIN_BURST = 10


def refusals(stack: Stack, login: str, source: str) -> int:
    """Logins of ``login`` from ``source`` that the policy service refused, once Dovecot has
    logged every one of the 25 guesses (checked and failed, or refused)."""

    def logged() -> list[str]:
        lines = stack.log("example-com-mda-0", "dovecot").splitlines()
        mine = [ln for ln in lines if f"({login},{source}" in ln]
        done = [ln for ln in mine if "Password mismatch" in ln or "policy server refusal" in ln]
        return done if len(done) >= 25 else []

    found = stack.wait_for("the 25 guesses in Dovecot's log", logged, timeout=20)
    return sum(1 for line in found if "policy server refusal" in line)


def guessed_from_a_nat(stack: Stack, script: str, *arguments: str) -> tuple[list[Any], int]:
    """``script``'s output, run from a new internet address with the server's address, then
    ``arguments``, then that address, grace's login and password and 25 wrong ones; and how many
    of the 25 the policy service refused unchecked."""
    with internet_address(stack) as source:
        host = stack.internet.host_ip
        grace = ("grace@example.com", PASSWORDS["grace"], "25")
        out = stack.run_in_internet(script, host, *arguments, source, *grace, timeout=180)
        return json.loads(out), refusals(stack, "grace@example.com", source)


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
first = session()
first.login(user, password)  # her device, before the guessing starts
first.quit()
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


@pytest.mark.parametrize("port", ["submission", "submissions"])
def test_guesses_from_a_shared_address_do_not_lock_out_the_right_password_smtp(
    stack: Stack, port: str
) -> None:
    """Attack: 25 wrong AUTH attempts for grace in under a minute from one address (5 a
    session, in parallel); then grace, behind the same address, logs in with her password.
    Expected: at most 10 of the guesses were checked (the rest refused as wrong, 535, never 454
    nor 450), and her login gets 235 within 3 s."""
    implicit = "1" if port == "submissions" else "0"
    out, refused = guessed_from_a_nat(stack, NAT_SMTP_SCRIPT, str(stack.port(port)), implicit)
    print(
        f"\n{port}: wrong {out[0]} ({refused} refused unchecked); right: {out[1]} after {out[2]} s"
    )
    assert out[1].startswith("235") and out[2] < 3, out
    assert len(out[0]) == 25 and set(out[0]) == {535}, out
    assert refused == 25 - LOGIN_BURST, refused


# IMAP's form of the same: ``wrong`` LOGINs with a wrong password, 5 a connection in parallel,
# after one right LOGIN (her device); then the right one. Prints [the wrong ones' answers (OK
# or NO), the right one's, seconds it took, seconds the wrong ones took].
NAT_IMAP_SCRIPT = r"""
import imaplib, json, ssl, sys, threading, time
host, port, source, user, password, wrong = sys.argv[1:7]
port, wrong = int(port), int(wrong)
context = ssl._create_unverified_context()
class Client(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        import socket
        sock = socket.create_connection((self.host, self.port), timeout, (source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
def session():
    return Client(host, port, ssl_context=context, timeout=60)
first = session()
first.login(user, password)
first.logout()
answers = []
def guess(count):
    imap = session()
    for i in range(count):
        try:
            answers.append(imap.login(user, f"wrong-{i}")[0])
        except imaplib.IMAP4.error:
            answers.append("NO")
    imap.logout()
begin = time.monotonic()
threads = [threading.Thread(target=guess, args=(5,)) for _ in range(wrong // 5)]
for t in threads: t.start()
for t in threads: t.join()
guessing = round(time.monotonic() - begin, 1)
start = time.monotonic()
try:
    imap = session()
    right = imap.login(user, password)[0]
    imap.logout()
except (OSError, imaplib.IMAP4.error) as err:
    right = f"{type(err).__name__}: {err}"
print(json.dumps([answers, right, round(time.monotonic() - start, 1), guessing]))
"""


def test_guesses_from_a_shared_address_do_not_lock_out_the_right_password_imap(
    stack: Stack,
) -> None:
    """The same on IMAPS (Dovecot's own logins): the right password logs in at once after
    25 wrong ones from its address."""
    out, refused = guessed_from_a_nat(stack, NAT_IMAP_SCRIPT, str(stack.port("imaps")))
    print(f"\nimaps: wrong {out[0]} in {out[3]} s ({refused} refused unchecked); right: {out[1]}")
    assert out[1] == "OK" and out[2] < 3, out
    assert out[0] == ["NO"] * 25, out
    assert refused == 25 - LOGIN_BURST, refused


def test_known_password_still_logs_in_after_the_agent_restarts(stack: Stack) -> None:
    """grace logs in from an address she shares with a guesser (her hash becomes known); the
    MDA pod's agent is killed (a crash, an OOM kill: no saving on the way out) and comes back;
    the guesser spends the address's budget on other logins; grace's right password logs in."""
    host, imaps = stack.internet.host_ip, str(stack.port("imaps"))
    grace = ("grace@example.com", PASSWORDS["grace"])
    bob = ("bob@example.com", PASSWORDS["bob"])
    with internet_address(stack) as source:
        first = stack.run_in_internet(RIGHT_LOGIN_SCRIPT, host, imaps, source, *grace)
        assert json.loads(first)[0] == "OK", first
        own = stack.own_process_tree()
        (dovecot,) = stack.own_daemon_pids()["dovecot"]
        agent = own[dovecot][0]
        print(f"\nkilling the MDA agent {agent}: {own[agent][1][:100]}")
        os.kill(agent, signal.SIGKILL)
        start = time.monotonic()
        gap: list[object] = []
        while time.monotonic() - start < 120:
            answer = json.loads(  # another user: grace's own login would make her hash known
                stack.run_in_internet(RIGHT_LOGIN_SCRIPT, host, imaps, source, *bob)
            )
            gap.append(answer[0])
            if answer[0] == "OK":
                break
            time.sleep(1)
        back = round(time.monotonic() - start, 1)
        nobody = [f"nobody{i}@example.com" for i in range(40)]
        arguments = (host, imaps, source, "20", "15", *nobody)
        flood = stack.run_in_internet(FLOOD_SCRIPT, *arguments, timeout=120)
        right = json.loads(stack.run_in_internet(RIGHT_LOGIN_SCRIPT, host, imaps, source, *grace))
        lines = stack.log("example-com-mda-0", "dovecot").splitlines()
        refused = sum(1 for ln in lines if f",{source}" in ln and "policy server refusal" in ln)
    print(
        f"logins while restarting: {gap} (back after {back} s); flood {flood.strip()} "
        f"({refused} refused unchecked); grace afterwards: {right}"
    )
    assert gap[-1] == "OK", gap
    assert refused > 0, flood  # the address's budget was spent: only a known hash gets through
    assert right[0] == "OK", right
