"""The TLS profile's suites as this host's OpenSSL expands them: TLS 1.2 AEAD suites with
forward secrecy only, every suite of the list known (a misspelt name would vanish silently)."""

from __future__ import annotations

import ssl

from mailstack.render import tls_profile


def _expanded() -> list[dict[str, object]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(tls_profile.template_values()["ciphers"])
    # TLS 1.3 suites are listed too (set_ciphers does not touch them): keep the TLS 1.2 ones.
    return [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]


def test_every_tls12_suite_is_aead_with_forward_secrecy() -> None:
    suites = _expanded()
    assert sorted(str(c["name"]) for c in suites) == sorted(tls_profile.TLS12_CIPHERS)
    for suite in suites:
        assert suite["aead"] is True, suite
        assert suite["kea"] in ("kx-ecdhe", "kx-dhe"), suite
        assert "CBC" not in str(suite["description"]), suite


def test_the_profile_starts_at_tls_12_with_x25519_first() -> None:
    values = tls_profile.template_values()
    assert values["min_protocol"] == "TLSv1.2"
    assert values["curves"].split(":") == ["X25519", "prime256v1", "secp384r1"]
