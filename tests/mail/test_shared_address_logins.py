"""SMTP AUTH from an address that guessers share with users (an office's or a carrier's NAT).

Found by the outside re-check of #21 (2026-12-07): smtpd_client_auth_rate_limit counts every
AUTH command per address and port, right or wrong, so 20 wrong guesses in a minute from an
address lock the right password out of that port for the rest of the minute (450 4.7.1). Not
fixed yet (docs/operator.md, "Hostile clients"): Postfix's anvil cannot tell a failed AUTH from
a good one, and raising the limit would multiply the guesses an address gets.
"""

from __future__ import annotations

import json

import pytest

from tests.mail.conftest import PASSWORDS, Stack
from tests.mail.test_held_sessions import internet_address

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


@pytest.mark.xfail(
    strict=True,
    reason="smtpd_client_auth_rate_limit counts right and wrong AUTHs alike per address and "
    "port: 20 wrong ones lock the right one out for the minute (a fix needs a policy per "
    "address and login, e.g. Dovecot's auth policy)",
)
@pytest.mark.parametrize("port", ["submission", "submissions"])
def test_guesses_from_a_shared_address_do_not_lock_out_the_right_password_smtp(
    stack: Stack, port: str
) -> None:
    """Attack: 25 wrong AUTH attempts for grace in under a minute from one address; then
    grace, behind the same address, logs in with her password. Expected: 235."""
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
