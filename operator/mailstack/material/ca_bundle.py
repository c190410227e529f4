"""CA certificates that a user gives in a Secret: the CA that vouches for the smarthost.

Owns: reading such a bundle (PEM, one or more certificates) and writing it again from the parsed
certificates alone, so that nothing but well-formed certificates reaches the CA file Postfix
reads: no text around the blocks, no private key given by mistake, no line a user wrote.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailstack.material.errors import MaterialError

# A bundle is a handful of roots and intermediates; the operating system's is ~150 certificates.
MAX_CERTIFICATES = 200


def load_ca_bundle(pem: bytes) -> str:
    """The certificates of ``pem`` as PEM text, in their order; ``MaterialError`` saying what is
    wrong when it holds no certificate or a damaged one."""
    if b"-----BEGIN" not in pem:
        raise MaterialError("not PEM: expected one or more -----BEGIN CERTIFICATE----- blocks")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise MaterialError(
            "not a PEM certificate bundle: a -----BEGIN CERTIFICATE----- block is damaged, "
            "or there is none"
        ) from None
    if len(certificates) > MAX_CERTIFICATES:
        raise MaterialError(f"more than {MAX_CERTIFICATES} certificates")
    return "".join(
        cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in certificates
    )
