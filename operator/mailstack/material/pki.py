"""The internal CA and the server certificates it issues for Postfix and Dovecot, and the MDA's
and the MTA's pinned certificates.

One CA per MailDomain (issuer ``internal``): clients that must trust the service get ``ca.crt``.
Certificates are short-lived (90 days) and reissued 30 days before they expire, when the names
change, or when the CA changes, so the same code path is exercised often instead of once a decade.

The MDA's client certificate is how Dovecot proves itself to Postfix when it sends mail that Sieve
scripts write (redirects, vacation replies): self-signed, and trusted by the fingerprint of its
public key alone, so no CA (ours or a public one) can mint another certificate Postfix accepts.
The MTA's is the same kind of certificate, shown to the MDA pod's LMTP and auth ports (the
agents' tunnel), which pin it as Postfix pins the MDA's; the MDA's serves those ports too.
All times come from the caller's ``now``; serial numbers from the caller's random source.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailstack.material.errors import MaterialError

KeyType = Literal["ecdsa-p256", "rsa2048"]
RandomBytes = Callable[[int], bytes]

CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=90)
RENEW_BEFORE = timedelta(days=30)
# Backdate notBefore so a peer whose clock runs a little behind ours accepts a fresh certificate.
CLOCK_SKEW = timedelta(minutes=5)
# X.520 upper bound for commonName; longer host names go in the SAN only.
_CN_MAX = 64

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class _CertificateAndKey:
    cert_pem: str
    key_pem: str

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem.encode("ascii"))


@dataclass(frozen=True)
class CertificateAuthority(_CertificateAndKey):
    """A self-signed CA certificate and its private key, both PEM."""


@dataclass(frozen=True)
class ServerCertificate:
    """A server certificate (PEM, leaf only), its key, and the CA certificate that issued it."""

    cert_pem: str
    key_pem: str
    ca_pem: str
    not_after: datetime

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem.encode("ascii"))

    @property
    def names(self) -> list[str]:
        """The DNS names of the subjectAltName extension, in certificate order."""
        return _san_names(self.certificate)


@dataclass(frozen=True)
class ClientCertificate(_CertificateAndKey):
    """A self-signed TLS client certificate and its key, both PEM."""

    def public_key_fingerprint(self) -> str:
        """SHA-256 of the DER SubjectPublicKeyInfo, as Postfix writes it with
        ``smtpd_tls_fingerprint_digest = sha256`` (colon-separated upper-case hex)."""
        spki = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(spki)
        return ":".join(f"{byte:02X}" for byte in digest.finalize())


def generate_client_certificate(
    common_name: str, now: datetime, random_bytes: RandomBytes = os.urandom
) -> ClientCertificate:
    """A new self-signed ECDSA client certificate, valid for 10 years.

    Trust comes from the pinned public key, not from the dates: the long validity only keeps TLS
    libraries that look at them from refusing to send it.
    """
    key = _generate_key("ecdsa-p256")
    cert = (
        _self_signed(key, common_name, now, random_bytes)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return ClientCertificate(_cert_pem(cert), _key_pem(key))


def load_client_certificate(cert_pem: str | bytes, key_pem: str | bytes) -> ClientCertificate:
    """A stored client certificate, checked: both parse and the key belongs to the certificate."""
    cert_text, key_text = _text(cert_pem), _text(key_pem)
    cert = _load_cert(cert_text, "client certificate")
    key = _load_key(key_text, "client private key")
    _check_pair(cert, key, "client certificate")
    return ClientCertificate(cert_text, key_text)


def generate_ca(
    common_name: str,
    now: datetime,
    key_type: KeyType = "ecdsa-p256",
    random_bytes: RandomBytes = os.urandom,
) -> CertificateAuthority:
    """A new self-signed CA, valid for 10 years, that may only sign end-entity certificates."""
    key = _generate_key(key_type)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _self_signed(key, common_name, now, random_bytes)
        # pathlen 0: this CA issues server certificates only, never intermediate CAs.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(_cert_pem(cert), _key_pem(key))


def issue_server_certificate(
    ca: CertificateAuthority,
    names: Sequence[str],
    now: datetime,
    key_type: KeyType = "ecdsa-p256",
    random_bytes: RandomBytes = os.urandom,
) -> ServerCertificate:
    """A 90-day TLS server certificate for ``names`` (the first is the CN), signed by ``ca``."""
    if not names:
        raise MaterialError("a server certificate needs at least one name")
    now = _utc_seconds(now)
    ca_cert = _load_cert(ca.cert_pem, "CA certificate")
    ca_key = _load_key(ca.key_pem, "CA private key")
    key = _generate_key(key_type)
    first = names[0]
    # A host name longer than 64 characters cannot be a CN; RFC 5280 4.2.1.6 then wants an empty
    # subject and a critical subjectAltName. Clients match on the SAN anyway (RFC 6125).
    long_name = len(first) > _CN_MAX
    subject = x509.Name([] if long_name else [x509.NameAttribute(NameOID.COMMON_NAME, first)])
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial(random_bytes))
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # RSA key transport (TLS 1.2 RSA kx) needs keyEncipherment; ECDSA keys cannot
            # encipher, and some validators reject the bit on them.
            _key_usage(digital_signature=True, key_encipherment=is_rsa),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=long_name
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ServerCertificate(_cert_pem(cert), _key_pem(key), ca.cert_pem, cert.not_valid_after_utc)


def load_ca(cert_pem: str | bytes, key_pem: str | bytes) -> CertificateAuthority:
    """A stored CA, checked: both parse, the key belongs to the certificate, and it is a CA."""
    cert_text, key_text = _text(cert_pem), _text(key_pem)
    cert = _load_cert(cert_text, "CA certificate")
    key = _load_key(key_text, "CA private key")
    _check_pair(cert, key, "CA")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise MaterialError("the CA certificate has no basicConstraints extension") from None
    if not constraints.ca:
        raise MaterialError("the CA certificate is not a CA (basicConstraints CA:FALSE)")
    return CertificateAuthority(cert_text, key_text)


def load_server_certificate(
    cert_pem: str | bytes, key_pem: str | bytes, ca_pem: str | bytes
) -> ServerCertificate:
    """A stored server certificate, checked: all parse and the key belongs to the certificate.

    ``cert_pem`` may be a chain; the first certificate is the server's and only it is kept.
    Whether the CA signed it is ``needs_renewal``'s question, not a load error.
    """
    cert_text, key_text, ca_text = _text(cert_pem), _text(key_pem), _text(ca_pem)
    try:
        chain = x509.load_pem_x509_certificates(cert_text.encode("ascii", errors="replace"))
    except ValueError as err:
        raise MaterialError(f"the server certificate is not PEM ({err})") from None
    cert = chain[0]
    _load_cert(ca_text, "CA certificate")
    key = _load_key(key_text, "server private key")
    _check_pair(cert, key, "server certificate")
    leaf_pem = _cert_pem(cert)
    return ServerCertificate(leaf_pem, key_text, ca_text, cert.not_valid_after_utc)


def needs_renewal(
    cert: ServerCertificate,
    names: Sequence[str],
    ca: CertificateAuthority,
    now: datetime,
    renew_before: timedelta = RENEW_BEFORE,
) -> bool:
    """Whether ``cert`` must be replaced: near expiry, not yet valid, other names, or other CA."""
    now = _utc_seconds(now)
    try:
        leaf = cert.certificate
        ca_cert = ca.certificate
    except ValueError:
        return True
    if now + renew_before >= leaf.not_valid_after_utc:
        return True
    # A certificate from the future means the clock went back; peers with our clock reject it.
    if now < leaf.not_valid_before_utc:
        return True
    if set(_san_names(leaf)) != set(names):
        return True
    # The Secret hands out ca.crt beside the certificate: it must be the current CA's.
    if cert.ca_pem.strip() != ca.cert_pem.strip():
        return True
    try:
        leaf.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return True
    return False


def _self_signed(
    key: _PrivateKey, common_name: str, now: datetime, random_bytes: RandomBytes
) -> x509.CertificateBuilder:
    """A 10-year certificate of ``key`` naming ``common_name`` as subject and issuer."""
    now = _utc_seconds(now)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:_CN_MAX])])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial(random_bytes))
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
    )


def _key_usage(
    *, digital_signature: bool = False, key_encipherment: bool = False, key_cert_sign: bool = False
) -> x509.KeyUsage:
    """keyUsage with the given bits; a CA's certificate signing comes with CRL signing."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _generate_key(key_type: KeyType) -> _PrivateKey:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise MaterialError(f"unknown key type {key_type!r}; expected ecdsa-p256 or rsa2048")


def _serial(random_bytes: RandomBytes) -> int:
    # 159 random bits: positive and at most 20 octets as RFC 5280 4.1.2.2 requires, with more
    # than the 64 bits of entropy the CA/Browser Forum asks for. Zero is not a valid serial.
    return (int.from_bytes(random_bytes(20), "big") >> 1) or 1


def _utc_seconds(now: datetime) -> datetime:
    # Certificates keep whole seconds; dropping the fraction here makes not_after of a freshly
    # issued certificate equal to the one read back from its PEM. A naive time is taken as UTC.
    aware = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return aware.replace(microsecond=0)


def _text(value: str | bytes) -> str:
    return value.decode("ascii", errors="replace") if isinstance(value, bytes) else value


def _load_cert(pem: str, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii", errors="replace"))
    except ValueError as err:
        raise MaterialError(f"the {what} is not a PEM certificate ({err})") from None


def _load_key(pem: str, what: str) -> _PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii", errors="replace"), None)
    except TypeError:
        raise MaterialError(f"the {what} is encrypted; give it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm) as err:
        raise MaterialError(f"the {what} is not a PEM private key ({err})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise MaterialError(f"the {what} is neither an ECDSA nor an RSA key")
    return key


def _check_pair(cert: x509.Certificate, key: _PrivateKey, what: str) -> None:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise MaterialError(f"the {what}'s private key does not belong to its certificate")


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _key_pem(key: _PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
