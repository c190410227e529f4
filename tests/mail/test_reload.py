"""Changes to a running stack take effect without restarting a daemon.

``mailstack up`` re-renders on SIGHUP (``stack.rerender``): changed Secrets are swapped into the
mounted volumes and the agents reload their daemons. Each test checks the new behaviour from the
outside and that Postfix, Dovecot and rspamd kept their PIDs. Every test puts the original inputs
back, since the other tests share the stack.
"""

from __future__ import annotations

import imaplib
import secrets
import shutil
import smtplib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.mail.conftest import HOSTNAME, Stack, stack_documents
from tests.mail.messages import MDA, MTA, SENDER, raw_text_message, token

NEW_PASSWORD = "frank-secret-password"


def rcpt_code(stack: Stack, address: str) -> int:
    with stack.smtp("smtp") as smtp:
        assert smtp.mail(SENDER)[0] == 250
        code, _ = smtp.rcpt(address)
        smtp.rset()
    return code


def reloads(stack: Stack) -> dict[str, int]:
    """How often each agent has reloaded its daemon so far."""
    needle = "mounted configuration changed, reloading"
    return {
        container: stack.log(pod, container).count(needle)
        for pod, container in ((MTA, "postfix"), (MTA, "rspamd"), (MDA, "dovecot"))
    }


def daemons(stack: Stack) -> dict[str, set[int]]:
    pids = stack.own_daemon_pids()
    assert all(len(found) == 1 for found in pids.values()), pids
    return pids


@pytest.fixture
def original_inputs(stack: Stack) -> Iterator[list[dict[str, Any]]]:
    """The session's inputs; written back (and re-rendered) after the test, whatever happened."""
    documents = stack_documents(stack.internet.ip)
    yield documents
    stack.write_inputs(documents)
    stack.rerender()


def test_a_new_mailbox_is_deliverable_and_can_log_in_without_restarts(
    stack: Stack, original_inputs: list[dict[str, Any]]
) -> None:
    before = daemons(stack)
    reloaded = reloads(stack)
    assert rcpt_code(stack, "frank@example.com") == 550
    frank = [
        {
            "apiVersion": "mailstack.dev/v1alpha1",
            "kind": "Mailbox",
            "metadata": {"name": "frank", "namespace": "mail"},
            "spec": {"address": "frank@example.com", "passwordSecretRef": {"name": "frank-pw"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "frank-pw",
                "namespace": "mail",
                "labels": {"mailstack.dev/usable-by": "mailboxes"},
            },
            "stringData": {"password": NEW_PASSWORD},
        },
    ]
    stack.write_inputs(original_inputs + frank)
    stack.rerender()

    stack.wait_for("frank accepted at RCPT", lambda: rcpt_code(stack, "frank@example.com") == 250)
    subject = token("welcome frank")
    stack.send_from_internet("frank@example.com", raw_text_message(subject, "frank@example.com"))
    stack.wait_for_subject("frank", subject)

    def login() -> bool:
        conn = imaplib.IMAP4_SSL(
            "127.0.0.1", stack.port("imaps"), ssl_context=stack._named_context(), timeout=30
        )
        try:
            conn.login("frank@example.com", NEW_PASSWORD)
        except imaplib.IMAP4.error:
            return False
        try:
            typ, data = conn.select("INBOX", readonly=True)
            assert typ == "OK" and int(data[0]) >= 1, data  # type: ignore[arg-type]
        finally:
            conn.logout()
        return True

    stack.wait_for("frank's IMAP login", login)
    # The same account submits mail too (Postfix asks Dovecot's auth service).
    with stack.smtp("submission") as smtp:
        smtp.login("frank@example.com", NEW_PASSWORD)

    # Postfix must reload its maps; Dovecot re-reads its passwd-file by itself and is not
    # reloaded (a reload would drop Postfix's connections to the auth service).
    after = stack.wait_for(
        "Postfix reloading", lambda: (r := reloads(stack))["postfix"] > reloaded["postfix"] and r
    )
    assert after["dovecot"] == reloaded["dovecot"], after
    assert after["rspamd"] == reloaded["rspamd"], after
    assert daemons(stack) == before


def test_a_catch_all_takes_unknown_recipients_without_restarts(
    stack: Stack, original_inputs: list[dict[str, Any]]
) -> None:
    before = daemons(stack)
    unknown = f"nobody-{secrets.token_hex(3)}@example.com"
    assert rcpt_code(stack, unknown) == 550
    stack.write_inputs(stack_documents(stack.internet.ip, {"catchAll": "alice@example.com"}))
    stack.rerender()

    stack.wait_for("the catch-all accepted at RCPT", lambda: rcpt_code(stack, unknown) == 250)
    caught = token("to the catch-all")
    stack.send_from_internet(unknown, raw_text_message(caught, unknown))
    received = stack.wait_for_subject("alice", caught)
    assert received["To"] == unknown
    assert received["Delivered-To"] == "alice@example.com"
    # Real mailboxes still get their own mail.
    direct = token("still erin's")
    stack.send_from_internet("erin@example.com", raw_text_message(direct, "erin@example.com"))
    stack.wait_for_subject("erin", direct)
    assert direct not in [m["Subject"] for m in stack.messages("alice")]
    assert daemons(stack) == before

    # And back: without the catch-all, unknown recipients are refused again.
    stack.write_inputs(original_inputs)
    stack.rerender()
    stack.wait_for("unknown refused again", lambda: rcpt_code(stack, unknown) == 550)
    assert daemons(stack) == before


# --- certificate rotation -----------------------------------------------------------------------


def served_certificate(stack: Stack, port: str) -> x509.Certificate:
    """The certificate a TLS port serves, verified against ``ca.crt`` for the mail hostname."""
    context = stack.tls_context()
    if port in ("smtp", "submission"):
        with smtplib.SMTP("127.0.0.1", stack.port(port), timeout=30) as smtp:
            smtp._host = HOSTNAME  # type: ignore[attr-defined]
            smtp.ehlo("client.example.net")
            smtp.starttls(context=context)
            der = smtp.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    else:
        with (
            socket.create_connection(("127.0.0.1", stack.port(port)), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


TLS_PORTS = ("smtp", "submissions", "imaps", "pop3s")


def test_a_rotated_certificate_is_served_without_restarts(stack: Stack) -> None:
    before = daemons(stack)
    ca = (stack.state / "ca.crt").read_bytes()
    old = {port: served_certificate(stack, port) for port in TLS_PORTS}
    assert len({cert.serial_number for cert in old.values()}) == 1, old

    # As on expiry or key compromise: the stored certificate goes, the next render issues one.
    shutil.rmtree(stack.state / "secrets" / "mail" / "example-com-tls")
    stack.rerender()

    old_serial = next(iter(old.values())).serial_number

    def rotated() -> dict[str, x509.Certificate] | None:
        now = {port: served_certificate(stack, port) for port in TLS_PORTS}
        return now if all(c.serial_number != old_serial for c in now.values()) else None

    new = stack.wait_for("the new certificate on every TLS port", rotated, timeout=60)
    assert len({cert.serial_number for cert in new.values()}) == 1
    cert = next(iter(new.values()))
    # Issued by the same CA (the handshake verified it against the unchanged ca.crt).
    assert (stack.state / "ca.crt").read_bytes() == ca
    assert cert.issuer == old["imaps"].issuer
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert HOSTNAME in names.get_values_for_type(x509.DNSName)
    assert spki(cert) != spki(old["imaps"]), "the key was not rotated with the certificate"
    assert daemons(stack) == before


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
