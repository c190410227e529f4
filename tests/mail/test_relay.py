"""The smarthost with credentials: Postfix sends to it only over TLS with a certificate issued for
its name by the CA the MailDomain names (``spec.relay.caSecretRef``), and logs in there.

The session's relay is ``smtp.example.net``, the sink in the test internet, with a certificate
from the test's own CA (``relay_pki``). For the refusals the sink presents another certificate
(``serve_relay_certificate``) and puts the right one back afterwards.
"""

from __future__ import annotations

import pytest

from mailstack.material.pki import ServerCertificate
from tests.mail.conftest import (
    RELAY_HOST,
    RELAY_USER,
    Stack,
    relay_pki,
    serve_relay_certificate,
)
from tests.mail.messages import MTA, raw_text_message, token
from tests.mail.test_delivery import send

ALICE = "alice@example.com"


def test_mail_reaches_the_relay_over_verified_tls_with_a_login(stack: Stack) -> None:
    friend = f"{token('friend', '-')}@example.net"
    subject = token("through the verified relay")
    queue_id = send(
        stack, friend, raw_text_message(subject, friend, sender=ALICE), ALICE, "submission"
    )
    sent = stack.wait_for_sink(lambda m: m["Subject"] == subject)
    assert sent["X-Sink-Login"] == RELAY_USER
    assert sent["X-Sink-TLS"] in ("TLSv1.2", "TLSv1.3")
    line = stack.wait_for_log(MTA, "postfix", queue_id, "status=sent")
    assert f"relay={RELAY_HOST}[" in line
    stack.wait_for_log(MTA, "postfix", f"Verified TLS connection established to {RELAY_HOST}[")


@pytest.mark.parametrize(
    ("which", "failure"),
    [
        pytest.param("other", "hostname mismatch", id="for-another-name"),
        pytest.param("impostor", "untrusted issuer /CN=impostor CA", id="from-another-ca"),
    ],
)
def test_a_relay_certificate_that_does_not_verify_keeps_the_mail_queued(
    stack: Stack, which: str, failure: str
) -> None:
    folder = stack.workdir / "relay-tls"
    friend = f"{token('friend', '-')}@example.net"
    subject = token("not for an unverified relay")
    certificate: ServerCertificate = getattr(relay_pki(), which)
    serve_relay_certificate(folder, certificate)
    try:
        raw = raw_text_message(subject, friend, sender=ALICE)
        queue_id = send(stack, friend, raw, ALICE, "submission")
        deferred = stack.wait_for_log(MTA, "postfix", queue_id, "status=deferred")
        assert "Server certificate not verified" in deferred, deferred
        verification = stack.wait_for_log(
            MTA, "postfix", f"certificate verification failed for {RELAY_HOST}[", failure
        )
        assert verification
        (entry,) = [e for e in stack.postfix_queue() if e.get("queue_id") == queue_id]
        assert entry["queue_name"] == "deferred"
        assert subject not in [m["Subject"] for m in stack.sink_messages()]
    finally:
        serve_relay_certificate(folder, relay_pki().server)
    # With the right certificate back, the queued mail goes out on the next try.
    stack.flush_queue()
    stack.wait_for_sink(lambda m: m["Subject"] == subject)
