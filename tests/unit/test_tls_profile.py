"""The TLS profile's suites as this host's OpenSSL expands them: TLS 1.2 AEAD suites with
forward secrecy only, every suite of the list known (a misspelt name would vanish silently)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest

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


# The TLS parameters a service may set for itself: whether TLS is used, how it starts, whether a
# client certificate is asked for. Anything else (protocols, ciphers, curves, keys) would make
# one port's profile differ from its daemon's.
SERVICE_TLS_OPTIONS = {
    "smtpd_tls_security_level",
    "smtpd_tls_wrappermode",
    "smtpd_tls_auth_only",
    "smtpd_tls_ask_ccert",
}
GOLDEN = Path(__file__).parent.parent / "golden" / "files"


@pytest.mark.parametrize("stack", ["mail/example-com", "default/example-org"])
def test_no_port_overrides_its_daemons_tls_profile(stack: str) -> None:
    """One profile per daemon: no service sets its own protocols, suites or curves (a port
    that did would differ from the others silently; the mail tests scan each port)."""
    namespace, name = stack.split("/")
    master = (GOLDEN / namespace / f"{name}-postfix" / "master.cf").read_text()
    options = set(re.findall(r"-o (smtpd_tls_\w+)=", master))
    assert options and options <= SERVICE_TLS_OPTIONS, options - SERVICE_TLS_OPTIONS
    dovecot = (GOLDEN / namespace / f"{name}-dovecot" / "dovecot.conf").read_text()
    nested = re.findall(r"^\s+(ssl_\w+)\s*=", dovecot, re.MULTILINE)
    assert nested == [], nested  # ssl = yes on a listener is implicit TLS, not a profile
