"""Sessions held open from a few internet addresses: the submission ports before login, and
port 25 in DATA, each address under its per-address limit (the outside re-check of #21 and the
third red team, 2026-12-07).

What stops them: 587 and 465 are Dovecot's, whose login processes hold sessions before login in
slots (1,000 per protocol, the oldest dropped beyond), so no number of addresses takes a user's
login away (render/dovecot.py); port 25 has 200 smtpd processes (render/postfix.py), so 6
addresses at 17 sessions leave room, and a held address gets spec.limits.perClient.
smtpConnections (20). Twelve addresses at 17 (or a botnet) still fill port 25: docs/operator.md,
"Hostile clients"."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.mail.conftest import Stack
from tests.mail.messages import text_message, token
from tests.mail.test_probes_under_load import HOLD_SCRIPT, release
from tests.mail.test_submission import login

ADDRESSES = 6  # internet addresses the attacker holds from, 17 sessions each
SESSIONS = 17  # under the per-address limit (smtpConnections: 20)

# Holds ``count`` sessions on host:port from ``source``, each after the banner and EHLO (with
# STARTTLS on 587, TLS on 465), sending EHLO again every 4 s (smtpd's timeout is per command;
# EHLO is an error only beyond the 6th). Prints how many it holds, then holds them until stdin
# closes.
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


@contextlib.contextmanager
def internet_address(stack: Stack) -> Iterator[str]:
    """A further address of the internet namespace (routed from the host), so that what a test
    does to per-address limits stays off the namespace's main address and postscreen's
    cache (a new address is a new client). From 10.103: no other test takes addresses there."""
    source = f"10.103.{secrets.randbelow(250)}.{10 + secrets.randbelow(200)}"
    netns, veth = stack.internet.netns, stack.internet.veth
    subprocess.run(["ip", "-n", netns, "addr", "add", f"{source}/32", "dev", "eth0"], check=True)
    subprocess.run(["ip", "route", "add", f"{source}/32", "dev", veth], check=True)
    try:
        yield source
    finally:
        subprocess.run(["ip", "route", "del", f"{source}/32", "dev", veth], check=False)
        delete = ["ip", "-n", netns, "addr", "del", f"{source}/32", "dev", "eth0"]
        subprocess.run(delete, check=False, capture_output=True)


@contextlib.contextmanager
def holding(
    stack: Stack, script: str, arguments: Callable[[str], list[str]], addresses: int
) -> Iterator[list[int]]:
    """One holding ``script`` from each of ``addresses`` new internet addresses, with the
    arguments after the host that ``arguments`` gives for the address; yields how many
    sessions each holds, and releases them after."""
    holders: list[subprocess.Popen[str]] = []
    with contextlib.ExitStack() as sources:
        try:
            for _ in range(addresses):
                source = sources.enter_context(internet_address(stack))
                netns = ("ip", "netns", "exec", stack.internet.netns, sys.executable, "-c")
                holders.append(
                    subprocess.Popen(
                        [*netns, script, stack.internet.host_ip, *arguments(source)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            yield [int(h.stdout.readline() or 0) for h in holders if h.stdout is not None]
        finally:
            for holder in holders:
                release(holder)


@pytest.mark.parametrize(
    ("port", "addresses", "sessions", "at_least"),
    [
        ("submission", ADDRESSES, SESSIONS, 95),
        ("submissions", ADDRESSES, SESSIONS, 95),
        # The third red team on #21 (F2): 20 sessions (the old per-address limit) from each of 12
        # addresses, more than the 200 smtpd processes Postfix had per port.
        ("submission", 12, 20, 201),
    ],
)
def test_sessions_held_before_login_do_not_stop_submission(
    stack: Stack, port: str, addresses: int, sessions: int, at_least: int
) -> None:
    """Attack: sessions held on 587 (or 465) from a few internet addresses, each after EHLO
    (and TLS), repeating EHLO every 4 s and never logging in. When Postfix served these ports,
    102 from 6 addresses took its 100 smtpd processes, then 240 from 12 addresses its 200, and
    a user's login timed out. Expected: the attack is whole (at least ``at_least`` sessions
    held: no per-address limit refuses them), and a user still logs in and sends within 20 s:
    Dovecot's login processes hold the sessions in their slots (4 x 250 per protocol, the
    oldest dropped beyond)."""
    implicit = "1" if port == "submissions" else "0"

    def arguments(source: str) -> list[str]:
        return [str(stack.port(port)), implicit, source, str(sessions)]

    with holding(stack, HOLD_SUBMISSION_SCRIPT, arguments, addresses) as held:
        start = time.monotonic()
        try:
            with login(stack, port, "bob") as smtp:
                smtp.send_message(
                    text_message(token("held"), "carol@example.com", sender="bob@example.com")
                )
            outcome = "250"
        except Exception as err:  # what a user sees
            outcome = f"{type(err).__name__}: {err}"[:160]
        took = round(time.monotonic() - start, 1)
    print(
        f"\n{port}: held {held} (sum {sum(held)}); the user's submission: {outcome} after {took} s"
    )
    assert len(held) == addresses and sum(held) >= at_least, held
    assert outcome == "250" and took < 20, (held, outcome, took)


def test_port_25_held_from_a_few_addresses_still_takes_mail(stack: Stack) -> None:
    """Attack: the first red team's F4 hold (102 sessions in DATA on port 25 from 6 internet
    addresses, 17 each: under the per-address limit of 20), each address first a sender
    postscreen knows, so that the held sessions reach smtpd. Expected: another sender's message
    is still taken (within the 30 s its client waits): port 25 has 200 smtpd processes."""
    subject = token("while 25 is held")

    def arguments(source: str) -> list[str]:
        return [str(stack.port("smtp")), source, str(SESSIONS)]

    with holding(stack, HOLD_SCRIPT, arguments, ADDRESSES) as held:
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
