"""resolve_material: reuse of rendered material, regeneration when the spec or the clock demand it,
and problems for the Secrets users give."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from mailstack.api.assemble import MailService
from mailstack.api.errors import Problem
from mailstack.api.models import (
    Dkim,
    IssuerRef,
    Mailbox,
    MailDomain,
    Relay,
    Secret,
    SecretKeyRef,
    Tls,
)
from mailstack.material import Material
from mailstack.material.passwords import verify_password
from mailstack.material.pki import generate_ca, needs_renewal
from mailstack.material.resolve import material_secrets, resolve_material, tls_names

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NS = "mail"
ROUNDS = 4

DOMAIN = MailDomain(
    name="example",
    namespace=NS,
    domain="example.com",
    hostname="mail.example.com",
    postmaster="postmaster@example.com",
    dkim=Dkim(selector="s2025", algorithm="ed25519"),
)


def _box(local: str, secret: str, key: str = "password") -> Mailbox:
    return Mailbox(
        name=local,
        namespace=NS,
        address=f"{local}@example.com",
        local_part=local,
        domain="example.com",
        password=SecretKeyRef(secret, key),
    )


ALICE = _box("alice", "alice-pw")
BOB = _box("bob", "bob-pw", key="pass")
SERVICE = MailService(DOMAIN, (ALICE, BOB))


BOTH = frozenset({"maildomains", "mailboxes"})  # the mailstack.dev/usable-by label


def _secret(name: str, **data: bytes) -> Secret:
    return Secret(name, NS, tuple(sorted(data.items())), usable_by=BOTH)


USER_SECRETS = {
    "alice-pw": _secret("alice-pw", password=b"correct horse"),
    "bob-pw": _secret("bob-pw", **{"pass": "bättery stäple".encode()}),
}


def _random(seed: int = 1) -> random.Random:
    return random.Random(seed)


def _no_randomness(n: int) -> bytes:
    raise AssertionError("nothing should be generated")


def _rendered(service: MailService, material: Material) -> dict[str, Secret]:
    """The Secrets a render of ``material`` leaves behind (the passwd-file as the renderer would
    write it: user:hash:uid:gid:gecos:home:shell:extra)."""
    name = service.domain.name
    result = {
        secret: Secret(secret, NS, tuple(sorted(data.items())))
        for secret, data in material_secrets(name, material).items()
    }
    passwd = "".join(
        f"{address}:{hashed}:5000:5000::/var/mail/{address}::\n"
        for address, hashed in material.password_hashes
    )
    result[f"{name}-users"] = _secret(f"{name}-users", passwd=passwd.encode())
    return result


def _resolve(
    service: MailService = SERVICE,
    secrets: Mapping[str, Secret] = USER_SECRETS,
    now: datetime = NOW,
    seed: int = 1,
) -> tuple[Material, list[Problem]]:
    return resolve_material(service, secrets, now, _random(seed).randbytes, password_rounds=ROUNDS)


@pytest.fixture(scope="module")
def first() -> Material:
    material, problems = _resolve()
    assert problems == []
    return material


@pytest.fixture(scope="module")
def rendered(first: Material) -> dict[str, Secret]:
    return {**USER_SECRETS, **_rendered(SERVICE, first)}


def _with(service: MailService, **changes: object) -> MailService:
    return MailService(dataclasses.replace(service.domain, **changes), service.mailboxes)  # type: ignore[arg-type]


def test_first_resolve_generates_everything(first: Material) -> None:
    assert first.dkim.selector == "s2025" and first.dkim.algorithm == "ed25519"
    assert first.ca is not None and first.tls is not None
    assert first.tls.ca_pem == first.ca.cert_pem
    assert first.tls.names == ["mail.example.com", "example.com"]
    assert not needs_renewal(first.tls, tls_names(DOMAIN), first.ca, NOW)
    assert [a for a, _ in first.password_hashes] == ["alice@example.com", "bob@example.com"]
    alice, bob = first.password_hash("alice@example.com"), first.password_hash("bob@example.com")
    assert alice is not None and verify_password("correct horse", alice)
    assert bob is not None and verify_password("bättery stäple", bob)
    assert first.relay_credentials is None
    assert first.mda_client is not None
    assert first.mda_client.certificate.subject.rfc4514_string() == "CN=example-mda"


def test_second_resolve_reuses_everything(first: Material, rendered: dict[str, Secret]) -> None:
    # No random source: a single generated salt or serial would fail the test.
    again, problems = resolve_material(
        SERVICE, rendered, NOW, _no_randomness, password_rounds=ROUNDS
    )
    assert problems == []
    assert again == first
    later, _ = resolve_material(
        SERVICE, rendered, NOW + timedelta(days=59), _no_randomness, password_rounds=ROUNDS
    )
    assert later == first


def test_rsa_dkim_key_is_reused_too() -> None:
    service = _with(SERVICE, dkim=Dkim(selector="s2025", algorithm="rsa2048"))
    first, _ = _resolve(service)
    again, _ = _resolve(service, {**USER_SECRETS, **_rendered(service, first)}, seed=2)
    assert again == first
    assert first.dkim.algorithm == "rsa2048"


def test_a_new_selector_generates_a_new_key(first: Material, rendered: dict[str, Secret]) -> None:
    service = _with(SERVICE, dkim=Dkim(selector="s2026", algorithm="ed25519"))
    material, problems = _resolve(service, rendered)
    assert problems == []
    assert material.dkim.selector == "s2026"
    assert material.dkim.private_key_pem != first.dkim.private_key_pem
    assert (material.ca, material.tls) == (first.ca, first.tls)
    assert material.password_hashes == first.password_hashes


def test_a_new_algorithm_generates_a_new_key(first: Material, rendered: dict[str, Secret]) -> None:
    service = _with(SERVICE, dkim=Dkim(selector="s2025", algorithm="rsa2048"))
    material, _ = _resolve(service, rendered)
    assert material.dkim.algorithm == "rsa2048"
    assert "k=rsa;" in material.dkim.dns_value()


def test_a_certificate_near_expiry_is_reissued_by_the_same_ca(
    first: Material, rendered: dict[str, Secret]
) -> None:
    later = NOW + timedelta(days=61)  # 29 days before notAfter
    material, _ = _resolve(secrets=rendered, now=later)
    assert material.ca == first.ca and material.dkim == first.dkim
    assert material.tls is not None and first.tls is not None and material.ca is not None
    assert material.tls != first.tls
    assert material.tls.not_after == datetime(2025, 7, 30, 12, 0, tzinfo=UTC)
    assert not needs_renewal(material.tls, tls_names(DOMAIN), material.ca, later)


def test_a_new_hostname_reissues_the_certificate(
    first: Material, rendered: dict[str, Secret]
) -> None:
    service = _with(SERVICE, hostname="mx.example.com")
    material, _ = _resolve(service, rendered)
    assert material.tls is not None and material.tls != first.tls
    assert material.tls.names == ["mx.example.com", "example.com"]
    apex = _with(SERVICE, hostname="example.com")
    material, _ = _resolve(apex, rendered)
    assert material.tls is not None and material.tls.names == ["example.com"]


def test_a_lost_ca_means_a_new_ca_and_certificate(
    first: Material, rendered: dict[str, Secret]
) -> None:
    secrets = {k: v for k, v in rendered.items() if k != "example-ca"}
    material, _ = _resolve(secrets=secrets)
    assert material.ca is not None and material.ca != first.ca
    assert material.tls is not None and material.tls.ca_pem == material.ca.cert_pem
    assert material.dkim == first.dkim


def test_damaged_operator_secrets_are_regenerated(
    first: Material, rendered: dict[str, Secret]
) -> None:
    secrets = dict(rendered)
    secrets["example-dkim"] = _secret("example-dkim", **{"s2025.key": b"garbage"})
    secrets["example-tls"] = _secret(
        "example-tls", **{"tls.crt": b"garbage", "tls.key": b"", "ca.crt": b""}
    )
    secrets["example-mda-client"] = _secret(
        "example-mda-client", **{"tls.crt": b"garbage", "tls.key": b"garbage"}
    )
    material, problems = _resolve(secrets=secrets)
    assert problems == []
    assert material.dkim != first.dkim and material.tls != first.tls
    assert material.mda_client is not None and material.mda_client != first.mda_client
    assert material.ca == first.ca


def test_cert_manager_issues_the_certificate_itself(first: Material) -> None:
    service = _with(
        SERVICE, tls=Tls(issuer="certManager", cert_manager_issuer=IssuerRef("letsencrypt"))
    )
    material, problems = _resolve(service)
    assert problems == []
    assert material.tls is None and material.ca is None


def test_acme_uses_the_internal_ca_for_now(rendered: dict[str, Secret], first: Material) -> None:
    service = _with(SERVICE, tls=Tls(issuer="acme", acme_email="admin@example.com"))
    material, _ = resolve_material(service, rendered, NOW, _no_randomness, password_rounds=ROUNDS)
    assert material == first


def test_password_problems() -> None:
    boxes = (
        _box("alice", "alice-pw"),
        _box("carol", "missing"),
        _box("dave", "alice-pw", key="nokey"),
        _box("erin", "erin-pw"),
        _box("frank", "frank-pw"),
        _box("grace", "grace-pw"),
        _box("heidi", "heidi-pw"),
    )
    secrets = {
        **USER_SECRETS,
        "erin-pw": _secret("erin-pw", password=b"\xff\xfe not utf-8"),
        "frank-pw": _secret("frank-pw", password=b"short"),
        "grace-pw": _secret("grace-pw", password=b"correct horse\n"),
        "heidi-pw": _secret("heidi-pw", password=b"x" * 73),
    }
    material, problems = _resolve(MailService(DOMAIN, boxes), secrets)
    assert [a for a, _ in material.password_hashes] == ["alice@example.com"]
    by_box = {p.document: p for p in problems}
    assert all(p.path == "spec.passwordSecretRef" for p in problems)
    assert by_box["Mailbox/mail/carol"].message.startswith("Secret missing not found (")
    assert by_box["Mailbox/mail/dave"].message == "Secret alice-pw has no key nokey"
    assert "not UTF-8" in by_box["Mailbox/mail/erin"].message
    assert "shorter than 8 characters" in by_box["Mailbox/mail/frank"].message
    assert "newline" in by_box["Mailbox/mail/grace"].message
    assert "73 bytes" in by_box["Mailbox/mail/heidi"].message
    assert by_box["Mailbox/mail/heidi"].message.startswith("Secret heidi-pw key password: ")
    assert len(problems) == 6


def test_given_hashes_are_used_verbatim() -> None:
    given = "{SHA512-CRYPT}$6$rounds=5000$abcdefgh$hash"
    secrets = {**USER_SECRETS, "alice-pw": _secret("alice-pw", password=given.encode())}
    material, problems = _resolve(secrets=secrets)
    assert problems == []
    assert material.password_hash("alice@example.com") == given
    plain = {**USER_SECRETS, "alice-pw": _secret("alice-pw", password=b"{PLAIN}secret12")}
    material, problems = _resolve(secrets=plain)
    assert [p.document for p in problems] == ["Mailbox/mail/alice"]
    assert "stores the password in clear" in problems[0].message
    assert material.password_hash("alice@example.com") is None


def test_a_changed_password_is_hashed_again_and_the_others_are_kept(
    first: Material, rendered: dict[str, Secret]
) -> None:
    secrets = {**rendered, "alice-pw": _secret("alice-pw", password=b"new password")}
    material, _ = _resolve(secrets=secrets, seed=3)
    alice = material.password_hash("alice@example.com")
    assert alice is not None and alice != first.password_hash("alice@example.com")
    assert verify_password("new password", alice)
    assert material.password_hash("bob@example.com") == first.password_hash("bob@example.com")


def test_relay_credentials() -> None:
    relay = Relay(host="smtp.relay.net", credentials_secret="relay", username_key="user")
    service = _with(SERVICE, relay=relay)
    good = {**USER_SECRETS, "relay": _secret("relay", user=b"me@relay.net", password=b"p w:d")}
    material, problems = _resolve(service, good)
    assert problems == []
    assert material.relay_credentials == ("me@relay.net", "p w:d")

    def problems_for(**data: bytes) -> list[str]:
        secrets = {**USER_SECRETS, "relay": _secret("relay", **data)}
        material, problems = _resolve(service, secrets)
        assert material.relay_credentials is None
        assert all(
            (p.document, p.path) == ("MailDomain/mail/example", "spec.relay.credentialsSecretRef")
            for p in problems
        )
        return [p.message for p in problems]

    assert problems_for(user=b"me") == ["Secret relay has no key password"]
    assert problems_for() == ["Secret relay has no key user", "Secret relay has no key password"]
    assert problems_for(user=b"me:you", password=b"pw") == [
        "Secret relay key user: the username contains ':' or whitespace"
    ]
    assert problems_for(user=b"me you", password=b"pw") == [
        "Secret relay key user: the username contains ':' or whitespace"
    ]
    assert problems_for(user=b"me", password=b"pw\n") == [
        "Secret relay key password: the password contains a newline or another control character"
    ]
    assert problems_for(user=b"me", password=b" pw") == [
        "Secret relay key password: the password starts or ends with whitespace"
    ]
    assert problems_for(user=b"", password=b"\xff") == [
        "Secret relay key user: the username is empty",
        "Secret relay key password: the password is not UTF-8 text",
    ]
    material, problems = _resolve(service)
    (missing,) = problems  # said once for the Secret, not once per key
    assert missing.message.startswith("Secret relay not found (")


def test_relay_without_credentials() -> None:
    material, problems = _resolve(_with(SERVICE, relay=Relay(host="smtp.relay.net")))
    assert problems == [] and material.relay_credentials is None


def test_relay_ca_is_read_and_written_again_from_its_certificates() -> None:
    ca = generate_ca("relay test CA", NOW, random_bytes=_random().randbytes)
    other = generate_ca("second relay CA", NOW, random_bytes=_random(2).randbytes)
    relay = Relay(host="smtp.relay.net", ca=SecretKeyRef("relay-ca", "ca.crt"))
    service = _with(SERVICE, relay=relay)
    # Text around the blocks and a private key given by mistake never reach Postfix's CA file.
    given = f"# our relay's CAs\n{ca.cert_pem}{ca.key_pem}junk\n{other.cert_pem}"
    secrets = {**USER_SECRETS, "relay-ca": _secret("relay-ca", **{"ca.crt": given.encode()})}
    material, problems = _resolve(service, secrets)
    assert problems == []
    assert material.relay_ca == ca.cert_pem + other.cert_pem
    assert material.relay_credentials is None  # a CA alone: verified, without a password

    def problems_for(value: bytes | None) -> list[str]:
        data = {} if value is None else {"ca.crt": value}
        material, problems = _resolve(
            service, {**USER_SECRETS, "relay-ca": _secret("relay-ca", **data)}
        )
        assert material.relay_ca is None
        assert all(
            (p.document, p.path) == ("MailDomain/mail/example", "spec.relay.caSecretRef")
            for p in problems
        )
        return [p.message for p in problems]

    assert problems_for(None) == ["Secret relay-ca has no key ca.crt"]
    not_pem = "Secret relay-ca key ca.crt: not PEM: expected one or more -----BEGIN CERTIFICATE"
    assert problems_for(b"")[0].startswith(not_pem)
    assert problems_for(b"\xff\xfe binary")[0].startswith(not_pem)
    damaged = "Secret relay-ca key ca.crt: not a PEM certificate bundle"
    assert problems_for(ca.key_pem.encode())[0].startswith(damaged)
    assert problems_for(ca.cert_pem.replace("CERTIFICATE", "CERT", 1).encode())[0].startswith(
        damaged
    )
    body = ca.cert_pem.splitlines()
    body[3] = body[3][:10] + "!!" + body[3][12:]
    assert problems_for("\n".join(body).encode())[0].startswith(damaged)
    material, problems = _resolve(service)
    assert [p.message.partition(" (")[0] for p in problems] == ["Secret relay-ca not found"]
