"""Shared clusters: a MailDomainPolicy's per-namespace limits, and the DNS proof of control.

Two tenants against the API server emulator: the oldest objects within a limit are served, the
next ones refused (``LimitExceeded``) until room is made; a grant that requires proof serves a
domain once its TXT record is published at a real BIND (``tests.e2e.dnsservers``).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from tests.component.conftest import conditions, mailbox, maildomain, password, wait_ready
from tests.component.emulator import (
    ApiServer,
    builtin_resources,
    cert_manager_resources,
    crd_resources,
    wait_for,
)
from tests.component.harness import OperatorThread
from tests.component.test_operator import HASH, in_namespace, wait_for_a_later_second
from tests.e2e.dnsservers import Bind, bind_server


def namespace(api: ApiServer, name: str) -> None:
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, None)


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomainPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def valid_reason(api: ApiServer, name: str, ns: str) -> str | None:
    return conditions(api.get("maildomains", name, ns)).get("Valid", {}).get("reason")


def refused(api: ApiServer, plural: str, name: str, ns: str) -> dict[str, Any]:
    """The object once its Valid condition is False; returns that condition."""
    obj = wait_for(
        lambda: (
            (o := api.get(plural, name, ns)) is not None
            and conditions(o).get("Valid", {}).get("status") == "False"
            and o
        )
    )
    return conditions(obj)["Valid"]


def users_text(api: ApiServer, name: str, ns: str) -> str:
    secret = api.get("secrets", f"{name}-users", ns)
    assert secret is not None
    return "".join(base64.b64decode(v).decode() for v in secret["data"].values())


def test_the_oldest_maildomains_within_the_limit_are_served(
    api: ApiServer, operator: OperatorThread
) -> None:
    for ns in ("tenant-a", "tenant-b"):
        namespace(api, ns)
    api.create(policy("a", namespaces=["tenant-a"], domains=["*.a.example"],
                      limits={"maxMailDomains": 2}), None)  # fmt: skip
    api.create(policy("b", namespaces=["tenant-b"], domains=["*.b.example"]), None)
    created = None
    for name in ("one", "two", "three"):
        if created is not None:
            wait_for_a_later_second(created)  # the same second would go by (random) uid
        created = api.create(in_namespace(maildomain(name, f"{name}.a.example"), "tenant-a"))
    wait_ready(api, "one", namespace="tenant-a")
    wait_ready(api, "two", namespace="tenant-a")
    valid = refused(api, "maildomains", "three", "tenant-a")
    assert valid["reason"] == "LimitExceeded"
    assert "maxMailDomains" in valid["message"] and "MailDomainPolicy/a" in valid["message"]
    assert api.list("statefulsets", "tenant-a", "app.kubernetes.io/instance=three") == []
    # The other tenant is not limited by tenant-a's policy.
    for name in ("four", "five", "six"):
        api.create(in_namespace(maildomain(name, f"{name}.b.example"), "tenant-b"))
    for name in ("four", "five", "six"):
        wait_ready(api, name, namespace="tenant-b")
    # Deleting one admits the next; the older one stays served throughout.
    api.delete("maildomains", "one", "tenant-a")
    wait_ready(api, "three", timeout=60, namespace="tenant-a")
    assert conditions(api.get("maildomains", "two", "tenant-a"))["Ready"]["status"] == "True"


def test_mailboxes_over_the_total_quota_are_refused_one_by_one(
    api: ApiServer, operator: OperatorThread
) -> None:
    namespace(api, "tenant-a")
    limits = {"maxQuota": "40Mi", "maxMailboxes": 3}
    api.create(policy("a", namespaces=["tenant-a"], domains=["*.a.example"], limits=limits), None)
    api.create(in_namespace(maildomain("one", "one.a.example"), "tenant-a"))
    api.create(in_namespace(maildomain("two", "two.a.example"), "tenant-a"))
    # Quotas across both domains of the namespace add up: 20Mi + 10Mi fit in 40Mi, 20Mi more not.
    boxes = [("alice", "one", "20Mi"), ("bob", "two", "10Mi"), ("carol", "two", "20Mi")]
    created = None
    for box, domain, quota in boxes:
        if created is not None:
            wait_for_a_later_second(created)
        api.create(in_namespace(password(box, HASH), "tenant-a"))
        doc = mailbox(box, f"{box}@{domain}.a.example", quota=quota)
        created = api.create(in_namespace(doc, "tenant-a"))
    wait_ready(api, "one", namespace="tenant-a")
    valid = refused(api, "mailboxes", "carol", "tenant-a")
    assert valid["reason"] == "LimitExceeded"
    assert "maxQuota" in valid["message"]
    # Refused alone: its domain serves the others, and its account is not in the users list.
    wait_ready(api, "two", namespace="tenant-a")
    wait_for(lambda: "bob@two.a.example" in users_text(api, "two", "tenant-a"))
    assert "carol@" not in users_text(api, "two", "tenant-a")
    # Room made on the other domain: the Mailbox of this one is admitted.
    api.patch("mailboxes", "alice", {"spec": {"quota": "10Mi"}}, namespace="tenant-a")
    wait_for(lambda: "carol@two.a.example" in users_text(api, "two", "tenant-a"), timeout=60)
    box = api.get("mailboxes", "carol", "tenant-a")
    wait_for(lambda: conditions(api.get("mailboxes", "carol", "tenant-a"))["Valid"]["status"]
             == "True")  # fmt: skip
    assert box is not None


# --- proof of control -----------------------------------------------------------------------

ZONE = "proof.example"


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    with bind_server(tmp_path / "named", ZONE) as server:
        yield server


@pytest.fixture
def proving_operator(api: ApiServer, bind: Bind) -> Iterator[OperatorThread]:
    config = {"proof_resolver": "127.0.0.1", "proof_resolver_port": bind.port, "proof_recheck": 0.5}
    with OperatorThread(api, **config) as running:
        yield running


def publish_txt(bind: Bind, name: str, value: str) -> None:
    key = dns.tsig.Key(bind.key_name, bind.secret, bind.algorithm)
    update = dns.update.UpdateMessage(ZONE, keyring=key)
    update.add(name + ".", 60, "TXT", f'"{value}"')
    answer = dns.query.tcp(update, "127.0.0.1", port=bind.port, timeout=5)
    assert answer.rcode() == dns.rcode.NOERROR


def test_a_grant_requiring_proof_serves_the_domain_once_the_txt_record_is_seen(
    api: ApiServer, proving_operator: OperatorThread, bind: Bind
) -> None:
    namespace(api, "tenant-a")
    namespace(api, "squatter")
    spec = {"domains": ["*.proof.example"], "requireProof": True}
    api.create(policy("shared", namespaces=["tenant-a", "squatter"], **spec), None)
    # The squatter claims the domain first: without a proof it takes no part in the contest.
    squat = api.create(in_namespace(maildomain("squat", f"shop.{ZONE}"), "squatter"))
    wait_for_a_later_second(squat)
    api.create(in_namespace(maildomain("shop", f"shop.{ZONE}"), "tenant-a"))
    valid = refused(api, "maildomains", "shop", "tenant-a")
    assert valid["reason"] == "ProofPending"
    proof = wait_for(lambda: (api.get("maildomains", "shop", "tenant-a") or {})
                     .get("status", {}).get("proof"))  # fmt: skip
    record = proof["record"]
    assert record["name"] == f"_mailstack-challenge.shop.{ZONE}"
    assert record["value"] == f"mailstack-verification={proof['token']}"
    assert record["value"] in valid["message"] and proof["proven"] is False
    assert api.list("statefulsets", "tenant-a") == []
    squatter_proof = wait_for(lambda: (api.get("maildomains", "squat", "squatter") or {})
                              .get("status", {}).get("proof"))  # fmt: skip
    assert squatter_proof["token"] != proof["token"]

    publish_txt(bind, record["name"], record["value"])
    served = wait_ready(api, "shop", timeout=60, namespace="tenant-a")
    assert served["status"]["proof"]["proven"] is True
    # The owner's record proves nothing for the squatter's MailDomain.
    valid = conditions(api.get("maildomains", "squat", "squatter"))["Valid"]
    assert valid["reason"] == "ProofPending"


def test_spec_domain_cannot_be_changed_to_carry_a_proof_over(api: ApiServer) -> None:
    """Prove one's own name, then change ``spec.domain`` to the victim's: the CRD's
    ``self == oldSelf`` rule, which the API server (and the emulator) enforces, refuses it (and
    ``from_status`` would not carry the proof over: tests/unit/test_proof.py)."""
    namespace(api, "tenant-a")
    api.create(in_namespace(maildomain("a", "squat.a.example"), "tenant-a"))
    with pytest.raises(Exception, match="immutable"):
        api.patch("maildomains", "a", {"spec": {"domain": "shop.a.example"}}, "tenant-a")


WITH_CERT_MANAGER = {
    "resources": [*builtin_resources(), *crd_resources(), *cert_manager_resources()]
}


@pytest.mark.parametrize("api", [WITH_CERT_MANAGER], indirect=True)
def test_replacing_the_only_policy_opens_no_window_for_a_waiting_squatter(
    api: ApiServer, operator: OperatorThread
) -> None:
    """The platform has one MailDomainPolicy (tenant-b: b.example) and the chart's
    default ``policy.requireGrant=false``. Tenant-a waits with a refused MailDomain of its own
    domain whose host name is tenant-b's mail host, with a ClusterIssuer. The platform replaces
    its policy (``kubectl replace --force``, a GitOps prune and re-create, a rename): for the
    moment no policy exists, but the operator, having seen one, keeps grants required: no
    Certificate for mail.b.example is created for tenant-a through the operator's account."""
    for ns in ("tenant-a", "tenant-b"):
        namespace(api, ns)
    only = policy("b", namespaces=["tenant-b"], domains=["b.example", "*.b.example"])
    api.create(only, None)
    api.create(in_namespace(maildomain("b", "b.example"), "tenant-b"))
    wait_ready(api, "b", timeout=60, namespace="tenant-b")
    tls = {
        "issuer": "certManager",
        "certManager": {"issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
    }
    squat = maildomain("squat", "squat.example", hostname="mail.b.example", tls=tls)
    api.create(in_namespace(squat, "tenant-a"))
    wait_for(lambda: valid_reason(api, "squat", "tenant-a") == "DomainNotGranted", 60)

    api.delete("maildomainpolicies", "b", None)
    seen: set[str] = set()
    deadline = time.monotonic() + 4  # the replacement takes a few seconds
    while time.monotonic() < deadline:
        for cert in api.list("certificates", "tenant-a"):
            seen.update(cert["spec"]["dnsNames"])
        time.sleep(0.05)
    api.create(only, None)
    assert "mail.b.example" not in seen, (
        f"while the platform replaced its only policy, tenant-a got a Certificate for {seen}"
    )


def squatting_tenant(api: ApiServer) -> None:
    """Two granted tenants; tenant-a names tenant-b's mail host as the host name of a domain
    nobody claims, waiting for a moment in which the operator serves as for a single team."""
    for ns, dom in (("tenant-a", "a.example"), ("tenant-b", "b.example")):
        namespace(api, ns)
        api.create(policy(ns[-1], namespaces=[ns], domains=[dom, f"*.{dom}"]), None)
    squat = maildomain("a", "squat.example", hostname="mail.b.example")
    api.create(in_namespace(squat, "tenant-a"))


def squatter_served(api: ApiServer) -> bool:
    return bool(api.list("statefulsets", "tenant-a") or api.list("services", "tenant-a"))


@pytest.mark.parametrize("require_grant", [True, False], ids=["requireGrant", "default"])
def test_a_restart_while_no_policy_exists_serves_nothing_only_with_require_grant(
    api: ApiServer, require_grant: bool
) -> None:
    """requireGrant closes the window; without it an operator restarted while no policy exists
    serves as for a single team, as docs/operator.md says (this case documents that)."""
    squatting_tenant(api)
    with OperatorThread(api, require_domain_grant=require_grant):
        wait_for(lambda: valid_reason(api, "a", "tenant-a") == "DomainNotGranted", 60)
    for name in ("a", "b"):
        api.delete("maildomainpolicies", name, None)
    with OperatorThread(api, require_domain_grant=require_grant):
        if require_grant:
            time.sleep(5)
            assert valid_reason(api, "a", "tenant-a") == "DomainNotGranted"
            assert not squatter_served(api)
        else:
            wait_for(lambda: squatter_served(api), 60)  # the documented window


def test_policies_renamed_under_a_running_operator_serve_nothing_in_between(
    api: ApiServer, operator: OperatorThread
) -> None:
    squatting_tenant(api)
    wait_for(lambda: valid_reason(api, "a", "tenant-a") == "DomainNotGranted", 60)
    for name in ("a", "b"):
        api.delete("maildomainpolicies", name, None)
    time.sleep(3)
    assert valid_reason(api, "a", "tenant-a") == "DomainNotGranted"
    assert not squatter_served(api)
    api.create(policy("a2", namespaces=["tenant-a"], domains=["a.example", "*.a.example"]), None)
    api.create(policy("b2", namespaces=["tenant-b"], domains=["b.example", "*.b.example"]), None)
    time.sleep(3)
    assert valid_reason(api, "a", "tenant-a") == "DomainNotGranted"
    assert not squatter_served(api)
