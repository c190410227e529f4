"""The operator reads only Secrets labelled ``mailstack.dev/usable-by`` (and its own).

A MailDomain referring to an unlabelled Secret gets a condition naming the Secret and the
label, and nothing is rendered from it; labelling the Secret makes it work; removing the label
again takes the Secret out of the operator's memory. The operator's Secret list and watch
requests always carry a label selector, and it never reads a user Secret by name.
"""

from __future__ import annotations

from typing import Any

from mailstack.controller.handlers import MANAGED_BY
from tests.component.conftest import (
    NS,
    USABLE_BY,
    condition,
    conditions,
    mailbox,
    maildomain,
    password,
    secret_text,
    wait_ready,
)
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread

HASH = "{BLF-CRYPT}$2b$10$oNX0qrTw9O53hLe7QUwJleCv/SNk366H0AaviuhdUL0m9Ve3uMtW."
RELAY = {"host": "smtp.example.net", "credentialsSecretRef": {"name": "relay"}}


def relay_secret(labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "relay", "namespace": NS}
    if labels is not None:
        metadata["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "stringData": {"username": "relay-user", "password": "relay-password-7"},
    }


def valid(api: ApiServer) -> dict[str, Any]:
    return conditions(api.get("maildomains", "example-org")).get("Valid", {})


def test_an_unlabelled_relay_secret_is_refused_until_labelled(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(relay_secret())
    api.create(password("alice", HASH))
    api.create(
        maildomain("example-org", "example.org", postmaster="alice@example.org", relay=RELAY)
    )
    api.create(mailbox("alice", "alice@example.org"))

    wait_for(lambda: valid(api).get("status") == "False")
    refused = valid(api)
    assert refused["reason"] == "InvalidSecret"
    assert "spec.relay.credentialsSecretRef" in refused["message"]
    assert "Secret relay not found (the operator reads only Secrets labelled" in refused["message"]
    assert "kubectl label --overwrite secret relay " in refused["message"]
    assert "mailstack.dev/usable-by=maildomains" in refused["message"]
    # Nothing rendered from it: no relay without credentials, no users Secret at all.
    assert api.get("configmaps", "example-org-postfix") is None
    assert api.get("secrets", "example-org-users") is None

    # Labelled for Mailboxes only: now seen, and refused for what it says.
    api.patch("secrets", "relay", {"metadata": {"labels": {USABLE_BY: "mailboxes"}}})
    wait_for(lambda: "does not include maildomains" in valid(api).get("message", ""))
    assert "mailstack.dev/usable-by=maildomains_mailboxes" in valid(api)["message"]
    assert api.get("secrets", "example-org-users") is None

    api.patch("secrets", "relay", {"metadata": {"labels": {USABLE_BY: "maildomains"}}})
    wait_ready(api, "example-org")
    users = api.get("secrets", "example-org-users")
    assert "relay-user:relay-password-7" in secret_text(users, "relay_passwords")
    assert operator.operator.secrets.get(NS, "relay") is not None

    # The label removed: the Secret leaves the operator's memory, the MailDomain says why.
    api.patch("secrets", "relay", {"metadata": {"labels": {USABLE_BY: None}}})
    wait_for(lambda: operator.operator.secrets.get(NS, "relay") is None)
    wait_for(lambda: condition(api.get("maildomains", "example-org"), "Valid") == "False")
    assert "Secret relay not found" in valid(api)["message"]
    assert not operator.errors

    assert api.emulator is not None
    secret_reads = {r for r in api.emulator.reads if r[0] == "mailstack" and r[2] == "secrets"}
    selectors = {which for _, verb, _, which in secret_reads if verb in ("list", "watch")}
    assert selectors == {MANAGED_BY, USABLE_BY}  # never every Secret of the namespace
    gets = {which for _, verb, _, which in secret_reads if verb == "get"}
    assert gets and all(name.startswith("example-org-") for name in gets)  # its own only


def test_a_password_secret_labelled_for_maildomains_only_is_refused(
    api: ApiServer, operator: OperatorThread
) -> None:
    wrong = password("alice", HASH)
    wrong["metadata"]["labels"] = {USABLE_BY: "maildomains"}
    api.create(wrong)
    api.create(maildomain("example-org", "example.org", postmaster="alice@example.org"))
    api.create(mailbox("alice", "alice@example.org"))
    wait_for(lambda: condition(api.get("mailboxes", "alice"), "Valid") == "False")
    message = conditions(api.get("mailboxes", "alice"))["Valid"]["message"]
    assert "Secret alice may not be used by mailboxes" in message
    api.patch("secrets", "alice", {"metadata": {"labels": {USABLE_BY: "maildomains_mailboxes"}}})
    wait_for(lambda: condition(api.get("mailboxes", "alice"), "Ready") == "True")
