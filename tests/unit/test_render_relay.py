"""The smarthost in Postfix's configuration: opportunistic TLS for a relay without credentials or
a CA of its own; otherwise a verified certificate for the relay's host name, against the system's
CAs or the CA file rendered beside main.cf. postconf accepts every variant without a warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mailstack.api.assemble import MailService
from mailstack.api.models import Relay, SecretKeyRef
from mailstack.render import layout
from mailstack.render.postfix import (
    RELAY_CA_FILE,
    RELAY_SASL_APP,
    SYSTEM_CA_FILE,
    render_postfix_config,
)
from mailstack.render.templating import RenderError
from tests.parsers import parse_main_cf
from tests.support import example_service

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
OWN_CA_FILE = f"{layout.POSTFIX_CONFIG_DIR}/{RELAY_CA_FILE}"
RELAYS: dict[str, Relay | None] = {
    "no-relay": None,
    "plain": Relay(host="192.0.2.25", port=25),
    "credentials": Relay(host="smtp.relay.example.net", credentials_secret="relay"),
    "ca": Relay(host="smtp.relay.example.net", ca=SecretKeyRef("relay-ca", "ca.crt")),
    "credentials-and-ca": Relay(
        host="smtp.relay.example.net",
        port=2525,
        credentials_secret="relay",
        ca=SecretKeyRef("relay-ca", "ca.crt"),
    ),
}
SASL = {
    "smtp_sasl_auth_enable": "yes",
    "smtp_sasl_password_maps": f"texthash:{layout.RELAY_PASSWORDS}",
    "smtp_sasl_security_options": "noanonymous",
    "smtp_sasl_tls_security_options": "noanonymous",
}
VERIFIED = {"smtp_tls_security_level": "secure", "smtp_tls_secure_cert_match": "nexthop"}
# What each relay sets among the outbound parameters (the others stay unset).
EXPECTED: dict[str, dict[str, str]] = {
    "no-relay": {"relayhost": "", "smtp_tls_security_level": "may"},
    "plain": {"relayhost": "[192.0.2.25]:25", "smtp_tls_security_level": "may"},
    "credentials": {"relayhost": "[smtp.relay.example.net]:587", **VERIFIED, **SASL},
    "ca": {"relayhost": "[smtp.relay.example.net]:587", **VERIFIED},
    "credentials-and-ca": {"relayhost": "[smtp.relay.example.net]:2525", **VERIFIED, **SASL},
}
OUTBOUND = {"relayhost", "smtp_tls_secure_cert_match", *VERIFIED, *SASL}


def service(relay: Relay | None) -> MailService:
    return example_service(relay=relay)


def files_for(case: str) -> dict[str, str]:
    relay = RELAYS[case]
    return render_postfix_config(service(relay), CA_PEM if relay and relay.ca else None, "AB:CD")


@pytest.mark.parametrize("case", list(RELAYS))
def test_outbound_tls_follows_the_relay(case: str) -> None:
    files = files_for(case)
    params = parse_main_cf(files["main.cf"])
    assert {k: v for k, v in params.items() if k in OUTBOUND} == EXPECTED[case]
    relay = RELAYS[case]
    own_ca = relay is not None and relay.ca is not None
    assert params["smtp_tls_CAfile"] == (OWN_CA_FILE if own_ca else SYSTEM_CA_FILE)
    # The CA file sits beside main.cf in the same ConfigMap: a new CA rolls the MTA pod.
    assert files.get(RELAY_CA_FILE) == (CA_PEM if own_ca else None)
    assert set(files) == {"main.cf", "master.cf", f"{RELAY_SASL_APP}.conf"} | (
        {RELAY_CA_FILE} if own_ca else set()
    )


def test_a_relay_ca_without_its_certificates_is_not_rendered() -> None:
    with pytest.raises(RenderError, match="no CA certificates for the relay"):
        render_postfix_config(service(RELAYS["ca"]), None, "AB:CD")


@pytest.mark.parametrize("case", list(RELAYS))
def test_postconf_accepts_every_relay_variant(case: str, tmp_path: Path) -> None:
    postconf = shutil.which("postconf") or "/usr/sbin/postconf"
    if not os.path.exists(postconf):
        pytest.fail("postconf is not installed (Debian package postfix)")
    for name, text in files_for(case).items():
        (tmp_path / name).write_text(text)
        old = time.time() - 10  # Postfix ignores a main.cf younger than ~2 s
        os.utime(tmp_path / name, (old, old))
    result = subprocess.run(
        [postconf, "-c", str(tmp_path), "-n"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    shown = dict(line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)
    assert shown["smtp_tls_security_level"] == EXPECTED[case]["smtp_tls_security_level"]


@pytest.mark.parametrize("case", ["plain", "credentials"])
def test_the_relay_is_resolved_without_the_pods_search_domains(case: str, tmp_path: Path) -> None:
    # The MTA pod's resolv.conf carries the cluster's search domains (ndots:5). Postfix's own
    # DNS lookups (smtp_host_lookup = dns, no res_dnsrch/res_defnames) ask for the relay's name
    # as written, absolute (measured: facts.md); "native" (getaddrinfo), as LMTP uses for the
    # MDA Service, would let `relay.host: smtp.other-tenant` reach another namespace's Service.
    postconf = shutil.which("postconf") or "/usr/sbin/postconf"
    for name, text in files_for(case).items():
        (tmp_path / name).write_text(text)
        old = time.time() - 10
        os.utime(tmp_path / name, (old, old))
    result = subprocess.run(
        [postconf, "-c", str(tmp_path), "smtp_host_lookup", "smtp_dns_resolver_options"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    shown = dict(line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)
    assert shown.get("smtp_host_lookup") == "dns", result
    options = shown.get("smtp_dns_resolver_options", "").replace(",", " ").split()
    assert not {"res_dnsrch", "res_defnames"} & set(options)
