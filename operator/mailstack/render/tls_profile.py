"""Owns the TLS profile of every port the stack serves to clients: Mozilla's "intermediate"
configuration (Server Side TLS 5.7), the one list that main.cf and dovecot.conf both render.

TLS 1.2 with forward-secret AEAD suites only (AES-GCM, ChaCha20-Poly1305; no CBC, no SHA-1
MAC), TLS 1.3 with OpenSSL's default suites (all AEAD), the curves X25519, P-256 and P-384, and
no server cipher order: every suite offered is strong, so the client picks the one its hardware
is fast at (ChaCha20 without AES instructions), as the guideline says. The DHE suites serve RSA
certificates (certManager, acme) to TLS 1.2 clients without ECDHE-RSA-GCM; with the internal
CA's ECDSA certificate they are never chosen.

The internal tunnels (Postfix's LMTP client, the agents) speak TLS 1.3 only: both ends are
ours. Outbound mail to other servers keeps a wider list: see main.cf's client side.
"""

from __future__ import annotations

# Mozilla's intermediate TLS 1.2 suites, in its order (OpenSSL names).
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
)
# The key exchange groups, in the guideline's order (OpenSSL names).
CURVES = ("X25519", "prime256v1", "secp384r1")
MIN_PROTOCOL = "TLSv1.2"


def template_values() -> dict[str, str]:
    """The profile as the templates use it: ``ciphers`` and ``curves`` colon-separated (both
    daemons accept that form), ``min_protocol`` as Dovecot names it."""
    return {
        "ciphers": ":".join(TLS12_CIPHERS),
        "curves": ":".join(CURVES),
        "min_protocol": MIN_PROTOCOL,
    }
