"""Outside re-check of issue #13 (hostile tenants) on the emulator: attacks on the fixes of the
first check (``test_hostile_check*``). Each test FAILS while its attack works; its docstring says
the attack. Run one at a time:
    .venv/bin/pytest -q tests/component/test_recheck13_hostile.py -k NAME -s
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailstack.api.quantities import quantity_value
from tests.component.conftest import USABLE_BY, conditions, maildomain, secret_text, settle
from tests.component.emulator import (
    ApiServer,
    builtin_resources,
    crd_resources,
    external_dns_resources,
    wait_for,
)
from tests.component.harness import OperatorThread
from tests.component.test_limits import namespace as make_namespace
from tests.component.test_limits import policy


def in_ns(doc: dict[str, Any], ns: str) -> dict[str, Any]:
    doc["metadata"]["namespace"] = ns
    return doc


def valid(api: ApiServer, name: str, ns: str) -> dict[str, Any]:
    return conditions(api.get("maildomains", name, ns)).get("Valid", {})


# --- R3: a newer DOMAIN under an older tenant's domain takes the older one's mail host --------


@pytest.mark.parametrize(
    "api",
    [{"resources": [*builtin_resources(), *crd_resources(), *external_dns_resources()]}],
    indirect=True,
)
def test_a_newer_domain_under_an_older_tenants_domain_does_not_withdraw_it(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Attack: one wide grant for many tenants (``*.customers.example``, no proof: the docs say
    the OLDEST claim under it wins). tenant-a serves shop.customers.example (mail host
    mail.shop.customers.example, published through the shared external-dns). Later, the
    squatter creates a MailDomain whose DOMAIN is mail.shop.customers.example, with that as its
    host name. The host-name owner rule ("belongs to that domain's owner, whatever the ages")
    then withdraws tenant-a (DomainConflict: its pods, Services, DNSEndpoint go), and the
    squatter's DNSEndpoint publishes an A record for tenant-a's MX target. A second squatter
    MailDomain for shop.customers.example itself (sharing that host name, as one namespace's
    MailDomains may) then serves the victim's domain: its MX, SPF and DKIM records."""
    make_namespace(api, "tenant-a")
    make_namespace(api, "squatter")
    grant = {"domains": ["*.customers.example"]}
    api.create(policy("shared", namespaces=["tenant-a", "squatter"], **grant), None)
    dns = {"provider": {"externalDNS": {}}}
    victim = maildomain(
        "shop", "shop.customers.example", dns={**dns, "addresses": {"ipv4": ["192.0.2.10"]}}
    )
    api.create(in_ns(victim, "tenant-a"))
    wait_for(lambda: valid(api, "shop", "tenant-a").get("status") == "True", 30)
    wait_for(lambda: api.list("dnsendpoints", "tenant-a") or None, 30)
    time.sleep(1.1)  # a later creationTimestamp: the victim is the older claim

    squat = maildomain(
        "squat",
        "mail.shop.customers.example",
        hostname="mail.shop.customers.example",
        dns={**dns, "addresses": {"ipv4": ["203.0.113.66"]}},
    )
    api.create(in_ns(squat, "squatter"))
    wait_for(lambda: valid(api, "squat", "squatter").get("status") is not None, 30)
    time.sleep(1.1)
    # Then a second squatter MailDomain for the victim's domain itself, sharing the host name.
    steal = maildomain(
        "steal",
        "shop.customers.example",
        hostname="mail.shop.customers.example",
        dns={**dns, "addresses": {"ipv4": ["203.0.113.66"]}},
    )
    api.create(in_ns(steal, "squatter"))
    wait_for(lambda: valid(api, "steal", "squatter").get("status") is not None, 30)
    settle(api, operator)
    shop = valid(api, "shop", "tenant-a")
    names = {
        (e["dnsName"], e["recordType"])
        for ep in api.list("dnsendpoints", "squatter")
        for e in ep["spec"]["endpoints"]
    }
    print("tenant-a Valid:", shop)
    print("squatter:", valid(api, "squat", "squatter"), valid(api, "steal", "squatter"))
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


# --- R4: maxStorage outgrown by renaming (volumes of a deleted MailDomain are retained) ------


def _claimed(api: ApiServer, ns: str) -> tuple[int, list[str]]:
    claims = api.list("persistentvolumeclaims", ns)
    total = sum(int(quantity_value(c["spec"]["resources"]["requests"]["storage"])) for c in claims)
    return total, sorted(c["metadata"]["name"] for c in claims)


def test_renaming_a_maildomain_does_not_outgrow_max_storage(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Attack: maxStorage 3Gi. The tenant creates d0 (2Gi + 1Gi), deletes it (the default
    retention, Retain, keeps its volume claims, which count against nothing), creates d1 with
    the same sizes under another name, and so on: each round adds 3Gi of real volumes while the
    limit sees 3Gi in all. (Shrinking spec.storage does the same: existing volumes keep their
    size, the limit counts the spec.)"""
    make_namespace(api, "tenant-a")
    limits = {"maxMailDomains": 1, "maxStorage": "3Gi"}
    api.create(policy("a", namespaces=["tenant-a"], domains=["*.a.example"], limits=limits), None)
    storage = {"mailboxes": {"size": "2Gi"}, "queue": {"size": "1Gi"}}
    for round_ in range(3):
        name = f"d{round_}"
        api.create(in_ns(maildomain(name, f"{name}.a.example", storage=storage), "tenant-a"))
        wait_for(lambda name=name: valid(api, name, "tenant-a").get("status") == "True", 30)
        want = 2 * (round_ + 1)  # a mail volume and a queue volume per MailDomain
        wait_for(lambda want=want: len(_claimed(api, "tenant-a")[1]) >= want or None, 30)
        api.delete("maildomains", name, "tenant-a")
        wait_for(lambda name=name: api.get("maildomains", name, "tenant-a") is None, 30)
    total, names = _claimed(api, "tenant-a")
    print(f"{total / 2**30:g}Gi of volume claims in tenant-a: {names}")
    assert total <= 3 * 2**30, f"{total / 2**30:g}Gi claimed under maxStorage 3Gi: {names}"


# --- R5: new MailDomains are rendered on the operator's event loop --------------------------


def test_new_maildomains_of_one_tenant_do_not_stall_another(api: ApiServer) -> None:
    """Attack: the tenant creates 12 MailDomains at once, granted and within its limits
    (maxMailDomains 12), no DNS provider. Each first pass generates a DKIM key, a CA, server and
    client certificates (RSA) inside ``plan.render_domain``, on the operator's event loop, so
    the operator's 4 reconcile slots do not run in parallel and every other tenant waits for
    all of them (about 1.3 s each on the test machine; deleting and creating them again repeats
    it, since a new uid gets new keys: the limits bound the number, not the rate). Measured
    in the re-check: 15.7 s; with the 12 naming a blackholed PowerDNS instead, 16.5 s (the
    blackhole adds nothing measurable: that part of the first check's fix holds)."""
    operator = OperatorThread(api).start()  # the default parallel_reconciles (4)
    try:
        for ns, domain in (("hostile", "h.example"), ("tenant-b", "b.example")):
            make_namespace(api, ns)
            grant: dict[str, Any] = {"domains": [domain, f"*.{domain}"]}
            if ns == "hostile":
                grant["limits"] = {"maxMailDomains": 12}
            api.create(policy(ns, namespaces=[ns], **grant), None)
        count = 12
        for i in range(count):
            api.create(in_ns(maildomain(f"x{i}", f"x{i}.h.example"), "hostile"))
        time.sleep(0.5)  # the hostile passes have started
        started = time.monotonic()
        api.create(in_ns(maildomain("b", "b.example"), "tenant-b"))
        wait_for(lambda: valid(api, "b", "tenant-b").get("status") == "True", 120)
        took = time.monotonic() - started
        print(f"tenant-b reconciled after {took:.1f} s")
        assert took < 4.0, f"tenant-b waited {took:.1f} s behind {count} new MailDomains"
    finally:
        operator.stop(allow_errors=True)


# --- R6: a planted bcrypt cost in the operator's own users Secret freezes the operator -------

# A valid bcrypt hash (made at cost 4, its cost field raised to 16): checking a password
# against it costs 2^6 times the operator's own cost 10 (about 10 s here). Cost 31 would cost
# 2^21 times (days); 16 keeps the test short.
PLANTED = "{BLF-CRYPT}$2b$16$tOEdbk4gmVygvJJD4mJeBOINOxqptvRAGhyqabQb4lyBaifz1lxRy"


def test_a_planted_bcrypt_cost_in_the_users_secret_does_not_stall_other_tenants(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Attack: the tenant (who may write the Secrets of its namespace) edits the operator's own
    ``a-users`` Secret, replacing one hash of its passwd-file by a ``$2b$31$`` one. The next
    pass (the edit itself triggers it: a child changed) checks the Mailbox's plain password
    against that "previous" hash (``material.passwords.password_hash``) with bcrypt.checkpw, on
    the operator's event loop: every tenant's reconciles, watches and status writes stop for
    as long as the planted cost says (here 16: seconds; 31: days)."""
    for ns in ("tenant-a", "tenant-b"):
        make_namespace(api, ns)
    api.create(in_ns(maildomain("a", "a.example"), "tenant-a"))
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "alice", "namespace": "tenant-a", "labels": {USABLE_BY: "mailboxes"}},
        "stringData": {"password": "correct-horse-battery"},  # plain: hashed by the operator
    }
    api.create(secret)
    box = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "Mailbox",
        "metadata": {"name": "alice", "namespace": "tenant-a"},
        "spec": {"address": "alice@a.example", "passwordSecretRef": {"name": "alice"}},
    }
    api.create(box)
    users = wait_for(
        lambda: (
            (s := api.get("secrets", "a-users", "tenant-a")) is not None
            and "alice@a.example" in secret_text(s, "passwd")
            and s
        ),
        30,
    )
    settle(api, operator)
    lines = secret_text(users, "passwd").splitlines()
    planted = [
        ":".join([f[0], PLANTED, *f[2:]]) if f[0] == "alice@a.example" else ":".join(f)
        for f in (line.split(":") for line in lines)
    ]
    api.patch(
        "secrets", "a-users", {"stringData": {"passwd": "\n".join(planted) + "\n"}}, "tenant-a"
    )
    assert PLANTED in secret_text(api.get("secrets", "a-users", "tenant-a"), "passwd")
    time.sleep(0.5)  # the pass that checks the planted hash has started
    started = time.monotonic()
    api.create(in_ns(maildomain("b", "b.example"), "tenant-b"))
    wait_for(lambda: valid(api, "b", "tenant-b").get("status") == "True", 60)
    took = time.monotonic() - started
    passwd = secret_text(api.get("secrets", "a-users", "tenant-a"), "passwd")
    print(f"tenant-b reconciled after {took:.1f} s; planted hash still there: {PLANTED in passwd}")
    assert took < 4.0, f"tenant-b waited {took:.1f} s behind tenant-a's planted bcrypt cost"


# --- R8: an orphaned cert-manager Secret of another app passes as the MailDomain's own -------

from tests.component.emulator import cert_manager_resources  # noqa: E402


@pytest.mark.parametrize(
    "api",
    [{"resources": [*builtin_resources(), *crd_resources(), *cert_manager_resources()]}],
    indirect=True,
)
def test_an_orphaned_cert_manager_secret_of_another_app_is_not_mounted(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Attack: an app's Ingress had its certificate from cert-manager (Certificate ``shop-tls``,
    Secret ``shop-tls`` annotated ``cert-manager.io/certificate-name: shop-tls``); the
    Certificate was removed, the Secret stays (cert-manager's default). A user who may create
    MailDomains but not read Secrets creates MailDomain ``shop`` with ``tls.issuer:
    certManager``: its rendered Certificate is ``shop-tls`` too, so ``ownership`` takes the
    app's Secret for cert-manager's issue of the MailDomain's own Certificate, and the MTA
    and MDA pods mount the app's certificate and private key (and cert-manager, where the
    Certificate's privateKey.rotationPolicy is Never, re-issues for the mail host with that
    same key). Expected: NameTaken, as for any object of a child's name that is not the
    MailDomain's (the first check's #1)."""
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "shop-tls",
                "namespace": "default",
                "annotations": {"cert-manager.io/certificate-name": "shop-tls"},
            },
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": "SHOP-CERT", "tls.key": "SHOP-PRIVATE-KEY"},
        },
        manager="cert-manager-certificates-issuing",
    )
    tls = {
        "issuer": "certManager",
        "certManager": {"issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
    }
    api.create(maildomain("shop", "shop.example", tls=tls))
    wait_for(lambda: valid(api, "shop", "default").get("status") is not None, 30)
    settle(api, operator)
    verdict = valid(api, "shop", "default")
    mounts = [
        volume["secret"]["secretName"]
        for sts in api.list("statefulsets", "default")
        for volume in sts["spec"]["template"]["spec"].get("volumes") or []
        if "secret" in volume
    ]
    print("shop Valid:", verdict, "mounted Secrets:", mounts)
    taken = verdict.get("reason") == "NameTaken"
    assert taken or "shop-tls" not in mounts, "the mail pods mount the app's orphaned key"


# --- R10: the operator keeps every labelled Secret of every tenant in memory, referenced or not -

MIB = 1024 * 1024


def test_unreferenced_labelled_secrets_do_not_grow_the_operators_memory(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Attack: the tenant (who may write its namespace's Secrets) creates many Secrets of up to
    1 MiB each, labelled ``mailstack.dev/usable-by: maildomains``, that nothing refers to. The
    operator's Secret informer selects by that label only, and ``SecretCache`` keeps each
    one's data, referenced or not: the operator's memory grows with what one tenant writes.
    Some 500-700 such Secrets pass the chart's 512Mi limit: the operator is OOM-killed, and
    after each restart lists them again, so no tenant is reconciled any more. Scaled down
    here: 24 Secrets of 700 KiB."""
    make_namespace(api, "hostile")
    payload = "x" * (700 * 1024)  # the emulator counts the base64 form against 1 MiB
    count = 24
    for i in range(count):
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": f"blob{i}",
                    "namespace": "hostile",
                    "labels": {USABLE_BY: "maildomains"},
                },
                "stringData": {"blob": payload},
            }
        )
    cache = operator.operator.secrets
    wait_for(lambda: cache.get("hostile", f"blob{count - 1}") is not None, 60)
    held = sum(
        len(value)
        for i in range(count)
        if (secret := cache.get("hostile", f"blob{i}")) is not None
        for _, value in secret.data
    )
    print(f"the operator holds {held / MIB:.1f} MiB of {count} unreferenced Secrets")
    assert held < 4 * MIB, f"{held / MIB:.1f} MiB of unreferenced Secrets held by the operator"


# --- R11: MailDomains that count against no limit (ungranted) still cost a pass each ---------


def test_many_ungranted_maildomains_do_not_delay_another_tenant(
    api: ApiServer, operator: OperatorThread
) -> None:
    """Attack: maxMailDomains bounds only MailDomains that may serve; ungranted ones (any domain
    outside the grant) count against nothing. The tenant creates 200 of them: each gets a
    pass and a status write (DomainNotGranted) through the same reconcile slots as every other
    tenant's, so another tenant's new MailDomain waits behind them."""
    make_namespace(api, "hostile")
    make_namespace(api, "tenant-b")
    limits = {"maxMailDomains": 1}
    api.create(policy("hostile", namespaces=["hostile"], domains=["h.example"], limits=limits))
    api.create(policy("b", namespaces=["tenant-b"], domains=["b.example", "*.b.example"]))
    count = 200
    for i in range(count):
        api.create(in_ns(maildomain(f"u{i}", f"u{i}.ungranted.example"), "hostile"))
    started = time.monotonic()
    api.create(in_ns(maildomain("b", "b.example"), "tenant-b"))
    wait_for(lambda: valid(api, "b", "tenant-b").get("status") == "True", 180)
    took = time.monotonic() - started
    refused = sum(
        valid(api, f"u{i}", "hostile").get("reason") == "DomainNotGranted" for i in range(count)
    )
    print(f"tenant-b reconciled after {took:.1f} s; {refused} of {count} refused by then")
    assert took < 4.0, f"tenant-b waited {took:.1f} s behind {count} ungranted MailDomains"
