"""The ``mailstack.dev/usable-by`` label: a user Secret is used only by the kinds it names.

The pure rule (``api.secret_access``), and each place a user Secret is read: Mailbox passwords,
the relay's credentials and CA (``material.resolve``), a DNS provider's credentials
(``dns.providers.construction``), and a Secret document read from a file (``parse_secret``).
"""

from __future__ import annotations

import dataclasses

import pytest

from mailstack.api.assemble import MailService
from mailstack.api.models import MailDomain, Relay, Secret, SecretKeyRef
from mailstack.api.parse import parse_secret
from mailstack.api.secret_access import USABLE_BY_LABEL, label_command, refusal, usable_by
from mailstack.dns.errors import DnsConfigError
from mailstack.dns.providers import build_provider
from mailstack.material import Material
from mailstack.material.pki import generate_ca
from mailstack.material.resolve import resolve_material
from tests.dns_inputs import maildomain
from tests.dns_inputs import secret as dns_secret
from tests.unit.test_dns_providers import RFC2136
from tests.unit.test_material_resolve import ALICE, DOMAIN, NOW

NS = "mail"
DOMAINS = frozenset({"maildomains"})
BOXES = frozenset({"mailboxes"})


def _secret(name: str, usable: frozenset[str], **data: bytes) -> Secret:
    return Secret(name, NS, tuple(sorted(data.items())), usable_by=usable)


@pytest.mark.parametrize(
    ("labels", "kinds"),
    [
        (None, set()),
        ({}, set()),
        ({"other": "maildomains"}, set()),
        ({USABLE_BY_LABEL: "maildomains"}, {"maildomains"}),
        ({USABLE_BY_LABEL: "mailboxes"}, {"mailboxes"}),
        ({USABLE_BY_LABEL: "maildomains_mailboxes"}, {"maildomains", "mailboxes"}),
        ({USABLE_BY_LABEL: "mailboxes_maildomains"}, {"maildomains", "mailboxes"}),
        ({USABLE_BY_LABEL: "maildomains,mailboxes"}, set()),  # no valid label value anyway
        ({USABLE_BY_LABEL: "MailDomains"}, set()),
        ({USABLE_BY_LABEL: "everything"}, set()),
        ({USABLE_BY_LABEL: "true"}, set()),
        ({USABLE_BY_LABEL: ""}, set()),
    ],
)
def test_the_label_value_names_the_kinds(labels: dict[str, str] | None, kinds: set[str]) -> None:
    assert usable_by(labels) == kinds


def test_parse_secret_reads_the_label() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": NS, "labels": {USABLE_BY_LABEL: "mailboxes"}},
        "stringData": {"password": "x"},
    }
    assert parse_secret(doc).usable_by == BOXES
    del doc["metadata"]["labels"]
    assert parse_secret(doc).usable_by == frozenset()


def test_refusal_names_the_secret_the_label_and_the_command() -> None:
    secrets = {
        "plain": _secret("plain", frozenset()),
        "boxes": _secret("boxes", BOXES),
        "domains": _secret("domains", DOMAINS),
    }
    assert refusal(secrets, "domains", "maildomains") is None
    assert refusal(secrets, "boxes", "mailboxes") is None
    assert refusal(secrets, "plain", "maildomains") == (
        "Secret plain may not be used by maildomains: it has no label mailstack.dev/usable-by "
        "(to allow it: kubectl label --overwrite secret plain "
        "mailstack.dev/usable-by=maildomains)"
    )
    # The command keeps the kinds the Secret already allows.
    assert refusal(secrets, "boxes", "maildomains") == (
        "Secret boxes may not be used by maildomains: its label "
        "mailstack.dev/usable-by=mailboxes does not include maildomains (to allow it: "
        "kubectl label --overwrite secret boxes mailstack.dev/usable-by=maildomains_mailboxes)"
    )
    missing = refusal(secrets, "gone", "mailboxes")
    assert missing is not None and missing.startswith("Secret gone not found (")
    assert "mailstack.dev/usable-by=mailboxes" in missing
    # The command's value is a valid label value: kubectl would refuse a comma.
    value = label_command("s", frozenset({"maildomains", "mailboxes"})).rpartition("=")[2]
    assert value == "maildomains_mailboxes" and usable_by({USABLE_BY_LABEL: value}) == {
        "maildomains",
        "mailboxes",
    }


def _problems(domain: MailDomain, secrets: dict[str, Secret]) -> tuple[Material, list[str]]:
    service = MailService(domain, (ALICE,))
    material, problems = resolve_material(service, secrets, NOW, password_rounds=4)
    return material, [f"{p.document} {p.path}: {p.message}" for p in problems]


def test_a_password_secret_must_be_labelled_for_mailboxes() -> None:
    for usable in (frozenset(), DOMAINS):
        secrets = {"alice-pw": _secret("alice-pw", usable, password=b"correct horse")}
        material, problems = _problems(DOMAIN, secrets)
        assert material.password_hashes == ()
        (problem,) = problems
        assert problem.startswith("Mailbox/mail/alice spec.passwordSecretRef: Secret alice-pw")
        assert "may not be used by mailboxes" in problem and "kubectl label" in problem
    secrets = {"alice-pw": _secret("alice-pw", BOXES, password=b"correct horse")}
    material, problems = _problems(DOMAIN, secrets)
    assert problems == [] and len(material.password_hashes) == 1


def test_relay_secrets_must_be_labelled_for_maildomains() -> None:
    relay = Relay(
        host="smtp.relay.net", credentials_secret="relay", ca=SecretKeyRef("relay-ca", "ca.crt")
    )
    domain = dataclasses.replace(DOMAIN, relay=relay)
    ca = generate_ca("relay CA", NOW)
    password = _secret("alice-pw", BOXES, password=b"correct horse")

    def secrets(usable: frozenset[str]) -> dict[str, Secret]:
        return {
            "alice-pw": password,
            "relay": _secret("relay", usable, username=b"me", password=b"pw"),
            "relay-ca": _secret("relay-ca", usable, **{"ca.crt": ca.cert_pem.encode()}),
        }

    material, problems = _problems(domain, secrets(BOXES))
    assert material.relay_credentials is None and material.relay_ca is None
    assert problems == [
        "MailDomain/mail/example spec.relay.credentialsSecretRef: Secret relay may not be used by "
        "maildomains: its label mailstack.dev/usable-by=mailboxes does not include maildomains "
        "(to allow it: kubectl label --overwrite secret relay "
        "mailstack.dev/usable-by=maildomains_mailboxes)",
        "MailDomain/mail/example spec.relay.caSecretRef: Secret relay-ca may not be used by "
        "maildomains: its label mailstack.dev/usable-by=mailboxes does not include maildomains "
        "(to allow it: kubectl label --overwrite secret relay-ca "
        "mailstack.dev/usable-by=maildomains_mailboxes)",
    ]
    material, problems = _problems(domain, secrets(DOMAINS))
    assert problems == []
    assert material.relay_credentials == ("me", "pw")
    assert material.relay_ca is not None


def test_dns_credentials_must_be_labelled_for_maildomains() -> None:
    labelled = dns_secret("dns-tsig", secret="c2VjcmV0")
    unlabelled = dataclasses.replace(labelled, usable_by=frozenset())
    build_provider(maildomain(RFC2136), {"dns-tsig": labelled})
    with pytest.raises(DnsConfigError) as refused:
        build_provider(maildomain(RFC2136), {"dns-tsig": unlabelled})
    assert str(refused.value) == (
        "MailDomain/mail/example-com: the rfc2136 credentials: Secret dns-tsig may not be used "
        "by maildomains: it has no label mailstack.dev/usable-by (to allow it: kubectl label "
        "--overwrite secret dns-tsig mailstack.dev/usable-by=maildomains)"
    )
