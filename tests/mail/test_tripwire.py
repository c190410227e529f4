"""The tripwire with the real daemons: a client of port 25 from the stack's "pod range".

The stack runs with ``--cluster-networks`` naming one address of the internet namespace
(``Stack.masked_ip``) as the cluster's pod range, as a cluster whose load balancer SNATs would
show its clients. A client from there is reported by the postfix agent (its health port, which
the operator reads), with the port it came to; a client from the namespace's other address is
not; and the masked client is trusted no more than any other: it cannot relay, nor send on 587
without a login (Dovecot's port: the tripwire, Postfix's, sees port 25). Its mail to a local
user is still delivered (the tripwire warns, it does not refuse).
"""

from __future__ import annotations

import json
import urllib.request

from tests.mail.conftest import Stack
from tests.mail.messages import MTA, raw_text_message, token

# From ``source`` to port 25: a message to a local user (its reply codes), then a relay attempt;
# then to 587 without a login. Prints the replies as JSON.
MASKED_CLIENT = r"""
import json, smtplib, ssl, sys
source, host, smtp_port, submission_port, subject = sys.argv[1:6]

def session(port):
    smtp = smtplib.SMTP(host, int(port), local_hostname="sink.example.net", timeout=30,
                        source_address=(source, 0))
    smtp.starttls(context=ssl._create_unverified_context())
    smtp.ehlo("sink.example.net")
    return smtp

replies = {}
with session(smtp_port) as smtp:
    smtp.mail("someone@example.net")
    replies["local"] = smtp.rcpt("alice@example.com")[0]
    replies["data"] = smtp.data(f"Subject: {subject}\r\n\r\nfrom behind SNAT\r\n".encode())[0]
    smtp.mail("someone@example.net")
    replies["relay"] = smtp.rcpt("victim@example.net")[0]
with session(submission_port) as smtp:
    replies["submission"] = smtp.mail("alice@example.com")[0]
print(json.dumps(replies))
"""


def observations(stack: Stack) -> dict[tuple[str, str], int]:
    """What the postfix agent serves the operator: (address, port) → mail transactions."""
    endpoints = json.loads((stack.state / "endpoints.json").read_text())
    address = next(ip for key, ip in endpoints["pods"].items() if key.endswith(MTA))
    url = f"http://{address}:9101/masked-clients"
    with urllib.request.urlopen(url, timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {(ln.split()[0], ln.split()[1]): int(ln.split()[2]) for ln in lines}


def test_a_client_from_the_pod_range_is_reported_and_not_trusted(stack: Stack) -> None:
    subject = token("masked")
    output = stack.run_in_internet(
        MASKED_CLIENT,
        stack.masked_ip,
        stack.internet.host_ip,
        str(stack.port("smtp")),
        str(stack.port("submission")),
        subject,
    )
    replies = json.loads(output)
    # Judged as any public client: its mail for a local user is taken, relaying is not, nor
    # submission without a login (Dovecot's 530 at MAIL FROM).
    assert replies == {"local": 250, "data": 250, "relay": 554, "submission": 530}, replies
    # Delivered (to INBOX or Junk: SPF fails for an address example.net does not list).
    stack.wait_for(
        "the masked client's message",
        lambda: any(
            m["Subject"] == subject for f in ("", "Junk") for m in stack.messages("alice", f)
        ),
    )

    seen = stack.wait_for("the agent's report", lambda: observations(stack) or None)
    assert (stack.masked_ip, "25") in seen, seen
    assert seen[(stack.masked_ip, "25")] >= 2  # two transactions on port 25
    # 587 is Dovecot's: a session without a login never reaches Postfix, nor its tripwire.
    assert (stack.masked_ip, "587") not in seen, seen
    log = stack.wait_for_log(MTA, "postfix", f"has the cluster address {stack.masked_ip}")
    assert "see ClientAddressesMasked" in log


def test_a_client_outside_the_ranges_is_not_reported(stack: Stack) -> None:
    subject = token("unmasked")
    stack.send_from_internet("alice@example.com", raw_text_message(subject, "alice@example.com"))
    stack.wait_for_subject("alice", subject)
    addresses = {address for address, _ in observations(stack)}
    assert stack.internet.ip not in addresses
    assert addresses <= {stack.masked_ip}
