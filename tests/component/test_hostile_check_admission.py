"""Outside check (issue #13): the chart's secret-access ValidatingAdmissionPolicy on UPDATE.

Evaluated with cel-python exactly as tests/unit/test_chart_admission.py does (the emulator runs
no admission policies). MALLORY may update MailDomains in tenant-a but may get no Secret there;
the MailDomain was created by ALICE (who may get "relay" and "dns-key"), with the Secrets
labelled usable-by=maildomains by their owner. Each test FAILS when Mallory's update is admitted
although it makes the operator send a Secret Mallory may not read to a host of her choice.
"""

from __future__ import annotations

from tests.unit.test_chart_admission import ALICE, MALLORY, admit, maildomain

RELAY = {"host": "smtp.example.net", "credentialsSecretRef": {"name": "relay"}}
TSIG = {
    "provider": {
        "rfc2136": {
            "server": "ns1.example.net",
            "tsigKeyName": "k",
            "tsigSecretRef": {"name": "dns-key"},
        }
    }
}


def test_setup_alice_may_create_and_mallory_may_not() -> None:
    assert admit(ALICE, maildomain(relay=RELAY)) is None
    assert admit(MALLORY, maildomain(relay=RELAY)) is not None


def test_mallory_may_not_point_an_existing_relay_secret_at_her_host() -> None:
    before = maildomain(relay=RELAY)
    after = maildomain(relay={**RELAY, "host": "smtp.mallory.example"})
    # Postfix then logs in to smtp.mallory.example with relay's username and password (TLS
    # verified against that name: Mallory's own public certificate passes).
    assert admit(MALLORY, after, old=before) is not None, "admitted: relay password to Mallory"


def test_mallory_may_not_move_a_tsig_key_into_the_relay_password() -> None:
    # A TSIG key only signs (HMAC) updates; as relay password it is sent in the SASL exchange.
    before = maildomain(dns=TSIG)
    after = maildomain(
        relay={
            "host": "smtp.mallory.example",
            "credentialsSecretRef": {
                "name": "dns-key",
                "usernameKey": "secret",
                "passwordKey": "secret",
            },
        }
    )
    assert admit(MALLORY, after, old=before) is not None, "admitted: TSIG key sent as password"


def test_mallory_may_not_redirect_an_existing_dns_key_to_her_server() -> None:
    before = maildomain(
        dns={
            "provider": {
                "powerdns": {
                    "apiUrl": "https://pdns.example.net",
                    "apiKeySecretRef": {"name": "dns-key"},
                }
            }
        }
    )
    after = maildomain(
        dns={
            "provider": {
                "powerdns": {
                    "apiUrl": "https://pdns.mallory.example",
                    "apiKeySecretRef": {"name": "dns-key"},
                }
            }
        }
    )
    # The PowerDNS API key goes in the X-API-Key header to pdns.mallory.example.
    assert admit(MALLORY, after, old=before) is not None, "admitted: API key to Mallory's URL"
