"""DKIM signing keys: generation, loading, the DNS TXT value, and the key file rspamd signs with.

A ``DkimKey`` always holds its private key as unencrypted PKCS#8 PEM, whatever form it was loaded
from, so two loads of the same key compare equal. What rspamd reads from its key file differs per
algorithm (see ``DkimKey.rspamd_private_key``), and ``load_dkim_key`` reads that form back too: the
rendered ``<name>-dkim`` Secret can hold exactly what rspamd mounts, and still be reused.
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mailstack.material.errors import MaterialError

DkimAlgorithm = Literal["rsa2048", "ed25519"]

MIN_RSA_BITS = 2048
# A TXT record is a sequence of <character-string>s of at most 255 octets each (RFC 1035 3.3);
# verifiers join them (RFC 6376 3.6.2.2), so a 2048-bit key's value is split across several.
TXT_STRING_MAX = 255

# A stored key text longer than this, once stripped of the blanks around it, is taken as damaged
# (a 4096-bit RSA key in PEM is some 3.3 KB): the tenant may write its ``<name>-dkim`` Secret, and
# a parsed text is kept as the key cache's key, so without a bound each edit could leave up to
# 1 MiB in the operator's memory (#13 check H6).
MAX_KEY_TEXT = 16 * 1024

_ED25519_SEED = 32
_ED25519_SECRET = 64  # libsodium's secret key: seed followed by the public key


@dataclass(frozen=True)
class DkimKey:
    """One DKIM key pair, identified by its selector."""

    selector: str
    algorithm: DkimAlgorithm
    private_key_pem: str

    def _private_key(self) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
        return _parse_private_key(self.algorithm, self.private_key_pem)

    def public_key_base64(self) -> str:
        """The ``p=`` tag: SubjectPublicKeyInfo DER for RSA, the raw 32 bytes for Ed25519."""
        public = self._private_key().public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            # RFC 8463 3: "the public key ... is the base64 encoding of the raw 32-byte key",
            # not an SPKI structure as for RSA.
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            raw = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return base64.b64encode(raw).decode("ascii")

    def dns_value(self) -> str:
        """The TXT record value published at ``<selector>._domainkey.<domain>``."""
        k = "ed25519" if self.algorithm == "ed25519" else "rsa"
        return f"v=DKIM1; k={k}; p={self.public_key_base64()}"

    def txt_strings(self) -> list[str]:
        """``dns_value`` cut into character-strings of at most 255 bytes (it is ASCII)."""
        value = self.dns_value()
        return [value[i : i + TXT_STRING_MAX] for i in range(0, len(value), TXT_STRING_MAX)]

    def rspamd_private_key(self) -> str:
        """The key file contents rspamd 3.4's ``dkim_signing`` module loads.

        RSA: PKCS#8 PEM, the form ``rspamadm dkim_keygen`` writes; rspamd reads it with
        OpenSSL's ``PEM_read_bio_PrivateKey``.

        Ed25519: rspamd 3.4 does *not* accept a PEM Ed25519 key (it parses it with OpenSSL, then
        expects an RSA key and aborts on an assertion when signing). It accepts the base64 of
        libsodium's 64-byte secret key (32-byte seed followed by the 32-byte public key), which is
        exactly what ``rspamadm dkim_keygen -t ed25519`` writes, and also the base64 of the bare
        seed. We write the 64-byte form to match rspamadm. Checked on rspamd 3.4 with
        ``rspamadm mime sign -k FILE``, which loads the file through the same
        ``rspamd_dkim_sign_key_load(..., RSPAMD_DKIM_KEY_FILE)`` as the signing module; the test
        suite repeats that check and verifies the signature against ``dns_value``.
        """
        key = self._private_key()
        if isinstance(key, ed25519.Ed25519PrivateKey):
            seed = key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            public = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            return base64.b64encode(seed + public).decode("ascii") + "\n"
        return self.private_key_pem


def generate_dkim_key(selector: str, algorithm: DkimAlgorithm) -> DkimKey:
    """A new key pair: RSA 2048 with e=65537, or Ed25519.

    The randomness comes from the OS through OpenSSL: cryptography takes no random source.
    """
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa2048":
        key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
    elif algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise MaterialError(f"unknown DKIM algorithm {algorithm!r}; expected rsa2048 or ed25519")
    return DkimKey(selector, algorithm, _pkcs8_pem(key))


def load_dkim_key(selector: str, algorithm: DkimAlgorithm, pem: str | bytes) -> DkimKey:
    """A DkimKey from a stored private key, checked against the algorithm the spec asks for.

    Accepts any unencrypted PEM private key (PKCS#8 or traditional) and, for Ed25519, also the
    base64 form rspamd uses (see ``DkimKey.rspamd_private_key``). Raises ``MaterialError`` when
    the key does not parse, is of another algorithm, is an RSA key shorter than 2048 bits, or is
    longer than ``MAX_KEY_TEXT`` without the blanks around it.
    """
    text = pem.decode("ascii", errors="replace") if isinstance(pem, bytes) else pem
    return DkimKey(selector, algorithm, _pkcs8_pem(_parse_private_key(algorithm, text)))


def _parse_private_key(
    algorithm: DkimAlgorithm, text: str
) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """The key of ``text``, parsed once per stripped text of at most ``MAX_KEY_TEXT``: the cache
    holds no more than 1024 of those (16 MiB at worst), whatever blanks a tenant adds."""
    stripped = text.strip()
    if len(stripped) > MAX_KEY_TEXT:
        raise MaterialError(
            f"the DKIM private key is {len(stripped)} characters long; a key has at most "
            f"{MAX_KEY_TEXT}"
        )
    return _parse_stripped_key(algorithm, stripped)


@functools.lru_cache(maxsize=1024)  # keys are immutable; parsing an RSA key costs ~25 ms
def _parse_stripped_key(
    algorithm: DkimAlgorithm, stripped: str
) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    if algorithm == "ed25519" and stripped and not stripped.startswith("-----"):
        return _parse_rspamd_ed25519(stripped)
    try:
        key = serialization.load_pem_private_key(stripped.encode("ascii", errors="replace"), None)
    except TypeError:
        raise MaterialError(
            "the DKIM private key is encrypted; give it without a passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as err:
        raise MaterialError(f"the DKIM private key is not a PEM private key ({err})") from None
    if algorithm == "rsa2048":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise MaterialError(
                f"the DKIM private key is a {_kind(key)} key, but the algorithm is rsa2048"
            )
        if key.key_size < MIN_RSA_BITS:
            raise MaterialError(
                f"the DKIM RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required "
                "(RFC 8301)"
            )
        return key
    if algorithm == "ed25519":
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise MaterialError(
                f"the DKIM private key is a {_kind(key)} key, but the algorithm is ed25519"
            )
        return key
    raise MaterialError(f"unknown DKIM algorithm {algorithm!r}; expected rsa2048 or ed25519")


def _parse_rspamd_ed25519(text: str) -> ed25519.Ed25519PrivateKey:
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MaterialError(
            "the DKIM private key is neither PEM nor base64 (rspamd's Ed25519 key form)"
        ) from None
    if len(raw) not in (_ED25519_SEED, _ED25519_SECRET):
        raise MaterialError(
            f"the base64 Ed25519 DKIM key decodes to {len(raw)} bytes; expected 32 (seed) or 64 "
            "(seed and public key)"
        )
    key = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:_ED25519_SEED])
    if len(raw) == _ED25519_SECRET:
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        # A mismatch would make rspamd sign with one key while we publish another.
        if raw[_ED25519_SEED:] != public:
            raise MaterialError(
                "the Ed25519 DKIM key's public half does not belong to its seed (corrupted key)"
            )
    return key


def _pkcs8_pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _kind(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ECDSA"
    return type(key).__name__
