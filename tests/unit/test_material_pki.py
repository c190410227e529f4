"""The internal CA and server certificates: chains that verify, the extensions clients check."""

from __future__ import annotations

import random
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailstack.material.errors import MaterialError
from mailstack.material.pki import (
    CertificateAuthority,
    ServerCertificate,
    generate_ca,
    generate_client_certificate,
    issue_server_certificate,
    load_ca,
    load_client_certificate,
    load_server_certificate,
    needs_renewal,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
NAMES = ["mail.example.com", "example.com"]


def _random(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return generate_ca("mailstack CA for example.com", NOW)


@pytest.fixture(scope="module")
def server(ca: CertificateAuthority) -> ServerCertificate:
    return issue_server_certificate(ca, NAMES, NOW)


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_ca_certificate(ca: CertificateAuthority) -> None:
    cert = _cert(ca.cert_pem)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "mailstack CA for example.com"
    )
    cert.verify_directly_issued_by(cert)  # self-signed
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert cert.not_valid_before_utc == datetime(2025, 3, 1, 11, 55, tzinfo=UTC)
    assert cert.not_valid_after_utc - NOW.replace(microsecond=0) == timedelta(days=3650)
    assert load_ca(ca.cert_pem, ca.key_pem) == ca
    assert load_ca(ca.cert_pem.encode(), ca.key_pem.encode()) == ca


def test_server_certificate(ca: CertificateAuthority, server: ServerCertificate) -> None:
    cert = _cert(server.cert_pem)
    cert.verify_directly_issued_by(_cert(ca.cert_pem))
    assert server.ca_pem == ca.cert_pem
    assert cert.subject.rfc4514_string() == "CN=mail.example.com"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == NAMES
    assert server.names == NAMES
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_encipherment and not usage.value.key_cert_sign
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = _cert(ca.cert_pem).extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.value.digest
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.not_valid_before_utc == datetime(2025, 3, 1, 11, 55, tzinfo=UTC)
    assert cert.not_valid_after_utc == datetime(2025, 5, 30, 12, 0, tzinfo=UTC)  # 90 days
    assert server.not_after == cert.not_valid_after_utc
    assert 0 < cert.serial_number < 2**159
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


def test_serials_come_from_the_random_source(ca: CertificateAuthority) -> None:
    one = issue_server_certificate(ca, NAMES, NOW, random_bytes=_random(1).randbytes)
    two = issue_server_certificate(ca, NAMES, NOW, random_bytes=_random(1).randbytes)
    assert _cert(one.cert_pem).serial_number == _cert(two.cert_pem).serial_number
    assert _cert(one.cert_pem).serial_number.bit_length() > 128
    zero = issue_server_certificate(ca, NAMES, NOW, random_bytes=lambda n: bytes(n))
    assert _cert(zero.cert_pem).serial_number == 1


def test_rsa_keys() -> None:
    ca = generate_ca("rsa CA", NOW, key_type="rsa2048")
    server = issue_server_certificate(ca, ["mail.example.net"], NOW, key_type="rsa2048")
    cert = _cert(server.cert_pem)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    cert.verify_directly_issued_by(_cert(ca.cert_pem))
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert load_server_certificate(server.cert_pem, server.key_pem, server.ca_pem) == server


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_verifies_the_chain(
    ca: CertificateAuthority, server: ServerCertificate, tmp_path: Path
) -> None:
    (tmp_path / "ca.crt").write_text(ca.cert_pem)
    (tmp_path / "tls.crt").write_text(server.cert_pem)
    at = str(int(NOW.timestamp()))
    for name in NAMES:
        result = subprocess.run(
            [
                *("openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), "-attime", at),
                *("-purpose", "sslserver", "-verify_hostname", name, str(tmp_path / "tls.crt")),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    wrong = subprocess.run(
        [
            *("openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), "-attime", at),
            *("-verify_hostname", "other.example.com", str(tmp_path / "tls.crt")),
        ],
        capture_output=True,
        check=False,
    )
    assert wrong.returncode != 0
    expired = str(int((NOW + timedelta(days=91)).timestamp()))
    late = subprocess.run(
        [
            *("openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), "-attime", expired),
            str(tmp_path / "tls.crt"),
        ],
        capture_output=True,
        check=False,
    )
    assert late.returncode != 0


def test_long_host_names_go_in_a_critical_san_only(ca: CertificateAuthority) -> None:
    long_name = "m" * 60 + ".example.com"
    cert = _cert(issue_server_certificate(ca, [long_name], NOW).cert_pem)
    assert len(cert.subject) == 0
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.DNSName) == [long_name]


def test_issue_needs_a_name(ca: CertificateAuthority) -> None:
    with pytest.raises(MaterialError, match="at least one name"):
        issue_server_certificate(ca, [], NOW)


def test_load_server_certificate_round_trips_and_takes_the_leaf_of_a_chain(
    ca: CertificateAuthority, server: ServerCertificate
) -> None:
    assert load_server_certificate(server.cert_pem, server.key_pem, server.ca_pem) == server
    chain = server.cert_pem + ca.cert_pem
    assert load_server_certificate(chain.encode(), server.key_pem, ca.cert_pem) == server


def test_loaders_refuse_keys_of_other_certificates(
    ca: CertificateAuthority, server: ServerCertificate
) -> None:
    with pytest.raises(MaterialError, match="does not belong to its certificate"):
        load_ca(ca.cert_pem, server.key_pem)
    with pytest.raises(MaterialError, match="does not belong to its certificate"):
        load_server_certificate(server.cert_pem, ca.key_pem, ca.cert_pem)
    with pytest.raises(MaterialError, match="not a CA"):
        load_ca(server.cert_pem, server.key_pem)
    with pytest.raises(MaterialError, match="not a PEM certificate"):
        load_ca("garbage", ca.key_pem)
    with pytest.raises(MaterialError, match="not a PEM private key"):
        load_ca(ca.cert_pem, "garbage")
    with pytest.raises(MaterialError, match="not PEM"):
        load_server_certificate("garbage", server.key_pem, ca.cert_pem)
    with pytest.raises(MaterialError, match="CA certificate is not a PEM certificate"):
        load_server_certificate(server.cert_pem, server.key_pem, "garbage")


def test_needs_renewal(ca: CertificateAuthority, server: ServerCertificate) -> None:
    assert not needs_renewal(server, NAMES, ca, NOW)
    assert not needs_renewal(server, list(reversed(NAMES)), ca, NOW)
    # 30 days before notAfter (2025-05-30 12:00) it is renewed; a second earlier it is not.
    assert not needs_renewal(server, NAMES, ca, datetime(2025, 4, 30, 11, 59, 59, tzinfo=UTC))
    assert needs_renewal(server, NAMES, ca, datetime(2025, 4, 30, 12, 0, 0, tzinfo=UTC))
    assert needs_renewal(server, NAMES, ca, NOW, renew_before=timedelta(days=90))
    assert needs_renewal(server, NAMES, ca, NOW + timedelta(days=100))
    assert needs_renewal(server, NAMES, ca, NOW - timedelta(hours=1))  # the clock went back
    assert needs_renewal(server, ["mail.example.com"], ca, NOW)
    assert needs_renewal(server, [*NAMES, "imap.example.com"], ca, NOW)
    other_ca = generate_ca("mailstack CA for example.com", NOW)
    assert needs_renewal(server, NAMES, other_ca, NOW)
    # Same CA certificate given, but the leaf was signed by another key: still renewed.
    forged = issue_server_certificate(other_ca, NAMES, NOW)
    assert needs_renewal(
        ServerCertificate(forged.cert_pem, forged.key_pem, ca.cert_pem, forged.not_after),
        NAMES,
        ca,
        NOW,
    )


def test_naive_times_are_taken_as_utc(ca: CertificateAuthority) -> None:
    naive = issue_server_certificate(ca, NAMES, NOW.replace(tzinfo=None))
    assert naive.not_after == datetime(2025, 5, 30, 12, 0, tzinfo=UTC)


# --- the MDA's client certificate -------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_client_certificate_fingerprint_is_the_sha256_of_its_public_key_as_openssl_computes_it(
    tmp_path: Path,
) -> None:
    client = generate_client_certificate("example-com-mda", NOW)
    (tmp_path / "client.crt").write_text(client.cert_pem)
    spki = subprocess.run(
        ["openssl", "x509", "-in", tmp_path / "client.crt", "-noout", "-pubkey"],
        check=True,
        capture_output=True,
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"],
        input=spki,
        check=True,
        capture_output=True,
    ).stdout
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-c", "-hex"], input=der, check=True, capture_output=True
    ).stdout.decode()
    assert client.public_key_fingerprint() == digest.split()[-1].upper()
    assert len(client.public_key_fingerprint().split(":")) == 32


def test_client_certificate_is_self_signed_for_client_auth_only() -> None:
    client = generate_client_certificate("example-com-mda", NOW, random_bytes=_random(3).randbytes)
    cert = client.certificate
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "example-com-mda"
    cert.verify_directly_issued_by(cert)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - NOW > timedelta(days=3600)


def test_stored_client_certificate_loads_back_and_a_foreign_key_is_refused() -> None:
    first = generate_client_certificate("example-com-mda", NOW)
    second = generate_client_certificate("example-com-mda", NOW)
    assert load_client_certificate(first.cert_pem.encode(), first.key_pem.encode()) == first
    assert first.public_key_fingerprint() != second.public_key_fingerprint()
    with pytest.raises(MaterialError, match="does not belong"):
        load_client_certificate(first.cert_pem, second.key_pem)
    with pytest.raises(MaterialError, match="not a PEM"):
        load_client_certificate("junk", first.key_pem)
