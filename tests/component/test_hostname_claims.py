"""A tenant may not take another tenant's mail host name (``spec.hostname``): not with a proof of
its own name under a shared suffix, not by claiming it first, not by claiming it as a newer
domain, and the contest hands a host name over when its holder goes (``api.claims``,
``Documents.contenders``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.component.conftest import conditions, maildomain, settle, wait_ready
from tests.component.emulator import (
    ApiServer,
    builtin_resources,
    cert_manager_resources,
    crd_resources,
    external_dns_resources,
    wait_for,
)
from tests.component.harness import OperatorThread
from tests.component.test_limits import ZONE, namespace, policy, publish_txt
from tests.component.test_limits import bind as bind  # a fixture
from tests.component.test_limits import proving_operator as proving_operator  # a fixture
from tests.component.test_operator import in_namespace, wait_for_a_later_second
from tests.e2e.dnsservers import Bind

SHOP = f"shop.{ZONE}"
SHOP_HOST = f"mail.{SHOP}"
CERT_MANAGER = [*builtin_resources(), *crd_resources(), *cert_manager_resources()]
EXTERNAL_DNS = [*builtin_resources(), *crd_resources(), *external_dns_resources()]


def shared_zone(api: ApiServer) -> None:
    """A platform handing out names under its zone to two tenants, with a proof of control."""
    namespace(api, "tenant-a")
    namespace(api, "squatter")
    spec = {"domains": [f"*.{ZONE}"], "requireProof": True}
    api.create(policy("shared", namespaces=["tenant-a", "squatter"], **spec), None)


def prove(api: ApiServer, bind: Bind, name: str, ns: str) -> None:
    """Publish the TXT record the MailDomain's status asks for."""
    proof = wait_for(
        lambda: (api.get("maildomains", name, ns) or {}).get("status", {}).get("proof")
    )
    publish_txt(bind, proof["record"]["name"], proof["record"]["value"])


def squatter_refused(api: ApiServer) -> dict[str, Any]:
    def decided() -> dict[str, Any] | None:
        valid = conditions(api.get("maildomains", "squat", "squatter")).get("Valid")
        return valid if valid and valid["status"] == "False" else None

    return wait_for(decided, 60)


@pytest.mark.parametrize("api", [{"resources": CERT_MANAGER}], indirect=True)
def test_a_proven_tenant_gets_no_certificate_for_another_tenants_mail_host(
    api: ApiServer, proving_operator: OperatorThread, bind: Bind
) -> None:
    shared_zone(api)
    api.create(in_namespace(maildomain("shop", SHOP), "tenant-a"))
    prove(api, bind, "shop", "tenant-a")
    wait_ready(api, "shop", timeout=60, namespace="tenant-a")

    # The squatter proves its own name and names the owner's mail host, with a cert-manager
    # issuer: its Certificate would cover the owner's host name.
    tls = {
        "issuer": "certManager",
        "certManager": {"issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
    }
    squat = maildomain("squat", f"squat.{ZONE}", hostname=SHOP_HOST, tls=tls)
    api.create(in_namespace(squat, "squatter"))
    prove(api, bind, "squat", "squatter")
    valid = squatter_refused(api)
    assert valid["reason"] == "DomainNotGranted"
    assert f"{SHOP_HOST} needs a proof of control" in valid["message"]
    names = [n for c in api.list("certificates", "squatter") for n in c["spec"]["dnsNames"]]
    assert SHOP_HOST not in names
    assert api.list("statefulsets", "squatter") == []


@pytest.mark.parametrize("api", [{"resources": EXTERNAL_DNS}], indirect=True)
def test_a_proven_tenant_publishes_no_address_for_another_tenants_mail_host(
    api: ApiServer, proving_operator: OperatorThread, bind: Bind
) -> None:
    shared_zone(api)
    dns = {"provider": {"externalDNS": {}}}
    owner = maildomain("shop", SHOP, dns={**dns, "addresses": {"ipv4": ["192.0.2.10"]}})
    api.create(in_namespace(owner, "tenant-a"))
    prove(api, bind, "shop", "tenant-a")
    wait_for(lambda: api.list("dnsendpoints", "tenant-a") or None, 60)

    addresses = {"ipv4": ["203.0.113.66"]}
    squat = maildomain(
        "squat", f"squat.{ZONE}", hostname=SHOP_HOST, dns={**dns, "addresses": addresses}
    )
    api.create(in_namespace(squat, "squatter"))
    prove(api, bind, "squat", "squatter")
    assert squatter_refused(api)["reason"] == "DomainNotGranted"
    assert api.list("dnsendpoints", "squatter") == []
    endpoints = api.list("dnsendpoints", "tenant-a")
    assert SHOP_HOST in [e["dnsName"] for ep in endpoints for e in ep["spec"]["endpoints"]]


def test_a_host_name_is_one_namespaces_and_goes_to_the_next_when_its_holder_goes(
    api: ApiServer, operator: OperatorThread
) -> None:
    for ns in ("tenant-a", "tenant-b"):
        namespace(api, ns)
    both = ["tenant-a", "tenant-b"]
    api.create(policy("shared", namespaces=both, domains=["*.hosted.example"]), None)
    host = "mx.hosted.example"
    first = api.create(in_namespace(maildomain("a", "a.hosted.example", hostname=host), "tenant-a"))
    wait_ready(api, "a", namespace="tenant-a")
    wait_for_a_later_second(first)
    api.create(in_namespace(maildomain("b", "b.hosted.example", hostname=host), "tenant-b"))
    # The same tenant may share its mail host across its domains.
    api.create(in_namespace(maildomain("a2", "a2.hosted.example", hostname=host), "tenant-a"))
    wait_ready(api, "a2", namespace="tenant-a")
    valid = wait_for(
        lambda: (
            conditions(api.get("maildomains", "b", "tenant-b")).get("Valid", {}).get("reason")
            == "DomainConflict"
            and conditions(api.get("maildomains", "b", "tenant-b"))["Valid"]
        ),
        30,
    )
    assert "MailDomain/tenant-a/a" in valid["message"] and host in valid["message"]
    assert api.list("statefulsets", "tenant-b") == []

    for name in ("a", "a2"):
        api.delete("maildomains", name, "tenant-a")
    wait_ready(api, "b", timeout=60, namespace="tenant-b")


def _valid(api: ApiServer, name: str, ns: str) -> dict[str, Any]:
    return conditions(api.get("maildomains", name, ns)).get("Valid", {})


@pytest.mark.parametrize("api", [{"resources": EXTERNAL_DNS}], indirect=True)
def test_a_newer_domain_under_an_older_tenants_domain_does_not_withdraw_it(
    api: ApiServer, operator: OperatorThread
) -> None:
    """The re-check's R3. Attack: one wide grant for many tenants (``*.customers.example``, no
    proof: the docs say the OLDEST claim under it wins). tenant-a serves shop.customers.example
    (mail host mail.shop.customers.example, published through the shared external-dns). Later,
    the squatter creates a MailDomain whose DOMAIN is mail.shop.customers.example, with that as
    its host name. The host-name owner rule ("belongs to that domain's owner, whatever the
    ages") then withdraws tenant-a (DomainConflict: its pods, Services, DNSEndpoint go), and the
    squatter's DNSEndpoint publishes an A record for tenant-a's MX target. A second squatter
    MailDomain for shop.customers.example itself (sharing that host name, as one namespace's
    MailDomains may) then serves the victim's domain: its MX, SPF and DKIM records."""
    namespace(api, "tenant-a")
    namespace(api, "squatter")
    grant = {"domains": ["*.customers.example"]}
    api.create(policy("shared", namespaces=["tenant-a", "squatter"], **grant), None)
    dns = {"provider": {"externalDNS": {}}}
    victim = maildomain(
        "shop", "shop.customers.example", dns={**dns, "addresses": {"ipv4": ["192.0.2.10"]}}
    )
    api.create(in_namespace(victim, "tenant-a"))
    wait_for(lambda: _valid(api, "shop", "tenant-a").get("status") == "True", 30)
    wait_for(lambda: api.list("dnsendpoints", "tenant-a") or None, 30)
    time.sleep(1.1)  # a later creationTimestamp: the victim is the older claim

    squat = maildomain(
        "squat",
        "mail.shop.customers.example",
        hostname="mail.shop.customers.example",
        dns={**dns, "addresses": {"ipv4": ["203.0.113.66"]}},
    )
    api.create(in_namespace(squat, "squatter"))
    wait_for(lambda: _valid(api, "squat", "squatter").get("status") is not None, 30)
    time.sleep(1.1)
    # Then a second squatter MailDomain for the victim's domain itself, sharing the host name.
    steal = maildomain(
        "steal",
        "shop.customers.example",
        hostname="mail.shop.customers.example",
        dns={**dns, "addresses": {"ipv4": ["203.0.113.66"]}},
    )
    api.create(in_namespace(steal, "squatter"))
    wait_for(lambda: _valid(api, "steal", "squatter").get("status") is not None, 30)
    settle(api, operator)
    shop = _valid(api, "shop", "tenant-a")
    names = {
        (e["dnsName"], e["recordType"])
        for ep in api.list("dnsendpoints", "squatter")
        for e in ep["spec"]["endpoints"]
    }
    print("tenant-a Valid:", shop)
    print("squatter:", _valid(api, "squat", "squatter"), _valid(api, "steal", "squatter"))
    print("squatter's DNSEndpoint records:", sorted(names))
    problems = []
    if shop.get("status") != "True":
        problems.append(f"the older tenant was withdrawn: {shop.get('message')}")
    if not api.list("dnsendpoints", "tenant-a"):
        problems.append("tenant-a's DNSEndpoint was deleted")
    if ("mail.shop.customers.example", "A") in names:
        problems.append("the squatter publishes an A record for tenant-a's mail host")
    if ("shop.customers.example", "MX") in names:
        problems.append("the squatter publishes the MX record of tenant-a's domain")
    assert not problems, problems
