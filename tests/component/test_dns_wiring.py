"""The operator publishes a MailDomain's DNS records at a real BIND (RFC 2136 + TSIG).

The operator runs against the API server emulator; the provider is a real ``named`` started by
``tests.e2e.dnsservers`` (skipped when BIND is not installed, a failure under
``MAILSTACK_REQUIRE_DAEMONS``). The records are checked by querying BIND with dnspython.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from mailstack.controller.config import FINALIZER
from tests.component.conftest import NS, USABLE_BY, conditions, maildomain, wait_ready
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.e2e.dnsservers import Bind, bind_server

ZONE = "example.org"
SELECTOR = "mailstack"


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    with bind_server(tmp_path / "named", ZONE, "www IN A 192.0.2.80\n") as server:
        yield server


def tsig_secret(value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "dns-tsig", "namespace": NS, "labels": {USABLE_BY: "maildomains"}},
        "stringData": {"secret": value},
    }


def domain_at(bind: Bind) -> dict[str, Any]:
    return maildomain(
        "example-org",
        ZONE,
        dns={
            "addresses": {"ipv4": ["192.0.2.25"]},
            "provider": {
                "rfc2136": {
                    "server": "127.0.0.1",
                    "port": bind.port,
                    "tsigKeyName": bind.key_name,
                    "tsigSecretRef": {"name": "dns-tsig"},
                }
            },
        },
    )


def lookup(bind: Bind, name: str, rdtype: str) -> list[str]:
    """The record's values as BIND answers them (empty when there is none)."""
    query = dns.message.make_query(name, rdtype)
    answer = dns.query.udp(query, "127.0.0.1", port=bind.port, timeout=2)
    assert answer.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(r.to_text() for rrset in answer.answer if rrset.rdtype == wanted for r in rrset)


def txt(values: list[str]) -> list[str]:
    return ["".join(part.strip('"') for part in value.split('" "')) for value in values]


def dns_ready(api: ApiServer, status: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (md := api.get("maildomains", "example-org")) is not None
            and conditions(md).get("DNSReady", {}).get("status") == status
            and md
        ),
        30,
    )


def test_records_are_published_and_removed_with_the_maildomain(
    api: ApiServer, operator: OperatorThread, bind: Bind
) -> None:
    api.create(tsig_secret(bind.secret))
    api.create(domain_at(bind))

    domain = dns_ready(api, "True")
    assert conditions(domain)["DNSReady"]["reason"] == "Published"
    records = domain["status"]["dns"]["records"]
    assert records and {r["state"] for r in records} == {"Published"}
    assert {"MX", "TXT", "A"} <= {r["type"] for r in records}
    wait_ready(api, "example-org")  # DNSReady=True does not hold Ready back

    assert lookup(bind, ZONE, "MX") == ["10 mail.example.org."]
    assert any(v.startswith("v=spf1") for v in txt(lookup(bind, ZONE, "TXT")))
    dkim = txt(lookup(bind, f"{SELECTOR}._domainkey.{ZONE}", "TXT"))
    assert dkim == [domain["status"]["dkim"]["record"]]
    assert lookup(bind, f"mail.{ZONE}", "A") == ["192.0.2.25"]

    # Nothing changed: further passes do not write to BIND again.
    serial = bind.serial()
    api.patch("maildomains", "example-org", {"metadata": {"labels": {"team": "mail"}}})
    time.sleep(1.5)
    assert bind.serial() == serial

    api.delete("maildomains", "example-org")
    wait_for(lambda: api.get("maildomains", "example-org") is None)
    assert lookup(bind, ZONE, "MX") == []
    assert not any(v.startswith("v=spf1") for v in txt(lookup(bind, ZONE, "TXT")))
    assert lookup(bind, f"{SELECTOR}._domainkey.{ZONE}", "TXT") == []
    assert lookup(bind, f"mail.{ZONE}", "A") == []
    assert lookup(bind, f"www.{ZONE}", "A") == ["192.0.2.80"]  # not ours: kept


def test_a_wrong_tsig_secret_is_reported_and_keeps_the_finalizer(
    api: ApiServer, bind: Bind
) -> None:
    operator = OperatorThread(api).start()
    try:
        wrong_secret_scenario(api, bind)
    finally:
        # kopf logs the finalizer's temporary failure as an error: expected here, nothing else.
        operator.stop(allow_errors=True)
    unexpected = [e for e in operator.errors if "removing the DNS records failed" not in e]
    assert unexpected == []
    assert operator.errors, "the finalizer's failure was reported"


def wrong_secret_scenario(api: ApiServer, bind: Bind) -> None:
    wrong = "c2VjcmV0LXRoYXQtYmluZC1kb2VzLW5vdC1rbm93LTEyMzQ1Njc4OTA="
    api.create(tsig_secret(wrong))
    api.create(domain_at(bind))

    domain = dns_ready(api, "False")
    dns_ready_condition = conditions(domain)["DNSReady"]
    assert dns_ready_condition["reason"] == "DNSCredentialsRefused", dns_ready_condition
    assert "rfc2136" in dns_ready_condition["message"]
    assert conditions(domain)["Rendered"]["status"] == "True"  # the pass went on
    wait_for(
        lambda: (
            conditions(api.get("maildomains", "example-org")).get("Ready", {}).get("reason")
            == "DNSCredentialsRefused"
        )
    )
    assert lookup(bind, ZONE, "MX") == []

    # Deleting it: the records cannot be removed, so the finalizer stays and says why.
    api.delete("maildomains", "example-org")
    wait_for(lambda: any(e["reason"] == "DNSCredentialsRefused" for e in api.list("events")), 30)
    time.sleep(1)
    still = api.get("maildomains", "example-org")
    assert still is not None and FINALIZER in still["metadata"]["finalizers"]

    # The right secret: the finalizer's retry succeeds and the MailDomain goes.
    api.patch("secrets", "dns-tsig", {"stringData": {"secret": bind.secret}})
    wait_for(lambda: api.get("maildomains", "example-org") is None, 45)


def test_a_corrected_tsig_secret_publishes_without_waiting_for_the_resync(
    api: ApiServer, operator: OperatorThread, bind: Bind
) -> None:
    api.create(tsig_secret("c2VjcmV0LXRoYXQtYmluZC1kb2VzLW5vdC1rbm93LTEyMzQ1Njc4OTA="))
    api.create(domain_at(bind))
    dns_ready(api, "False")
    api.patch("secrets", "dns-tsig", {"stringData": {"secret": bind.secret}})
    domain = dns_ready(api, "True")
    assert {r["state"] for r in domain["status"]["dns"]["records"]} == {"Published"}
    assert lookup(bind, ZONE, "MX") == ["10 mail.example.org."]
