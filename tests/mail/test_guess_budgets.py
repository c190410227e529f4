"""Password guessing against the auth policy service (agent/auth_policy.py), from the third red
team on #21 (2026-12-07): a flood gets no more guesses checked than the design allows (docs/
operator.md, "Hostile clients": 10 then 1 a minute per (address, login), 30 then 6 a minute per
address).

Open (#21 F1, on the red team's branch, not here): guessers that spend a shared address's budget
on made-up logins lock out a right password that has never logged in (known) before.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.mail.conftest import Stack
from tests.mail.test_held_sessions import internet_address

LOGIN_BURST, ADDRESS_BURST = 10, 30

# From ``source``: ``connections`` IMAPS connections in parallel, each sending wrong LOGINs for
# the logins given (round robin) for ``seconds``. Prints [answers sent, seconds].
FLOOD_SCRIPT = r"""
import imaplib, json, socket, ssl, sys, threading, time
host, port, source, connections, seconds = sys.argv[1:6]
logins = sys.argv[6:]
port, connections, seconds = int(port), int(connections), float(seconds)
context = ssl._create_unverified_context()
class Client(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, (source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
sent = []
end = time.monotonic() + seconds
def flood(n):
    i = 0
    while time.monotonic() < end:
        try:
            imap = Client(host, port, ssl_context=context, timeout=30)
            while time.monotonic() < end:
                login = logins[(n + i) % len(logins)]
                i += 1
                try:
                    imap.login(login, f"wrong-{n}-{i}")
                except imaplib.IMAP4.error:
                    sent.append(1)
            imap.logout()
        except (OSError, imaplib.IMAP4.abort, EOFError):
            time.sleep(0.2)
begin = time.monotonic()
threads = [threading.Thread(target=flood, args=(n,)) for n in range(connections)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps([len(sent), round(time.monotonic() - begin, 1)]))
"""


def checked(stack: Stack, source: str) -> dict[str, int]:
    """Per login: the guesses from ``source`` that Dovecot checked (not refused by the policy)."""
    counts: dict[str, int] = {}
    for line in stack.log("example-com-mda-0", "dovecot").splitlines():
        found = re.search(r"\(([^,()]+)," + re.escape(source) + r"[,)]", line)
        if found and ("Password mismatch" in line or "unknown user" in line):
            counts[found.group(1)] = counts.get(found.group(1), 0) + 1
    return counts


def policy_trouble(stack: Stack) -> list[str]:
    lines = stack.log("example-com-mda-0", "dovecot").splitlines()
    trouble = ("timeout", "timed out", "error", "connection refused", "http")
    return [ln for ln in lines if "policy" in ln.lower() and any(t in ln.lower() for t in trouble)]


def flood(stack: Stack, source: str, connections: int, seconds: int, *logins: str) -> Any:
    """FLOOD_SCRIPT's output from ``source`` on IMAPS."""
    host, imaps = stack.internet.host_ip, str(stack.port("imaps"))
    arguments = (source, str(connections), str(seconds), *logins)
    return json.loads(stack.run_in_internet(FLOOD_SCRIPT, host, imaps, *arguments, timeout=120))


def test_guess_flood_from_one_address_stays_in_the_budget(stack: Stack) -> None:
    """Attack: 40 IMAPS connections from one address send wrong LOGINs for grace for 30 s.
    Expected: Dovecot checked at most 10 (+1 a minute) of them; the policy service answered
    every request (no timeout: Dovecot goes on without it after 2 s, unlimited)."""
    with internet_address(stack) as source:
        out = flood(stack, source, 40, 30, "grace@example.com")
        counts = checked(stack, source)
    print(f"\nflood: {out}, checked {counts}, policy lines {policy_trouble(stack)}")
    assert counts.get("grace@example.com", 0) <= LOGIN_BURST + 1, (out, counts)
    assert not policy_trouble(stack)


def test_guess_flood_across_logins_stays_in_the_address_budget(stack: Stack) -> None:
    """Attack: 40 IMAPS connections from one address guess 60 logins (known and unknown) for
    30 s. Expected: at most 30 (+6 a minute) guesses checked in all."""
    logins = [f"user{i}@example.com" for i in range(55)] + [
        f"{u}@example.com" for u in ("alice", "bob", "carol", "dave", "erin")
    ]
    with internet_address(stack) as source:
        out = flood(stack, source, 40, 30, *logins)
        counts = checked(stack, source)
    print(f"\nacross: {out}, checked {sum(counts.values())} {counts}")
    assert sum(counts.values()) <= ADDRESS_BURST + 6, (out, counts)


# From ``source``: one right LOGIN of ``user``; prints its answer and the seconds it took.
RIGHT_LOGIN_SCRIPT = r"""
import imaplib, json, socket, ssl, sys, time
host, port, source, user, password = sys.argv[1:6]
context = ssl._create_unverified_context()
class Client(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, (source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
start = time.monotonic()
try:
    imap = Client(host, int(port), ssl_context=context, timeout=30)
    answer = imap.login(user, password)[0]
    imap.logout()
except (OSError, imaplib.IMAP4.error) as err:
    answer = f"{type(err).__name__}: {err}"
print(json.dumps([answer, round(time.monotonic() - start, 1)]))
"""
