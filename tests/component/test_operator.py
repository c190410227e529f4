"""The operator end to end against the API server emulator: create, update, drift, delete.

Each test starts the real operator (``mailstack.controller.serve.serve``, kopf in a thread)
against a fresh emulator, drives it with API writes as ``kubectl`` would, and checks what ends up
in the API: the children, their owners and content, the statuses, the Events, and how many
writes the operator made (the emulator logs every write with its field manager).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from mailstack.api.parse import parse_secret
from mailstack.api.parse.pods import parse_pod_defaults
from mailstack.controller import plan
from mailstack.controller.children import APPLIED_ANNOTATION, contains
from mailstack.controller.config import FINALIZER
from mailstack.controller.documents import address_domain
from mailstack.material.pki import generate_ca
from mailstack.render.objects import RenderOptions
from mailstack.render.users import sieve_file_name
from tests.component.conftest import (
    NS,
    USABLE_BY,
    condition,
    conditions,
    mailbox,
    maildomain,
    password,
    secret_text,
    settle,
    wait_ready,
)
from tests.component.emulator import ApiServer, Write, wait_for
from tests.component.harness import OperatorThread

HASH = "{BLF-CRYPT}$2b$10$oNX0qrTw9O53hLe7QUwJleCv/SNk366H0AaviuhdUL0m9Ve3uMtW."
CHILD_PLURALS = (
    "serviceaccounts",
    "configmaps",
    "secrets",
    "services",
    "statefulsets",
    "networkpolicies",
    "poddisruptionbudgets",
)
OPERATOR = "mailstack"  # the operator's field manager (and user agent)


def children(api: ApiServer, name: str) -> dict[tuple[str, str], dict]:
    found = {}
    for plural in CHILD_PLURALS:
        for obj in api.list(plural, NS, f"app.kubernetes.io/instance={name}"):
            found[(obj["kind"], obj["metadata"]["name"])] = obj
    return found


def operator_writes(writes: list[Write]) -> list[Write]:
    """Writes made over the API by anyone but the test itself and the emulated controllers."""
    return [w for w in writes if not w.internal and w.manager not in ("kubectl", "kubectl-patch")]


def child_writes(writes: list[Write]) -> set[tuple[str, str]]:
    return {
        (w.resource, w.name)
        for w in operator_writes(writes)
        if w.resource in CHILD_PLURALS and w.changed
    }


def expected_objects(api: ApiServer, name: str) -> list[dict]:
    """What render produces from what the cluster holds (its material Secrets included)."""
    domain = api.get("maildomains", name)
    assert domain is not None
    boxes = [b for b in api.list("mailboxes") if address_domain(b) == domain["spec"]["domain"]]
    secrets = {s["metadata"]["name"]: parse_secret(s) for s in api.list("secrets")}
    rendered = plan.render_domain(
        plan.DomainInputs(
            domain=domain, siblings=(), mailboxes=boxes, secrets=secrets, now=datetime.now(UTC)
        )
    )
    assert rendered.ok, (rendered.domain_problems, rendered.render_error)
    return rendered.objects


def populate(api: ApiServer, name: str = "example-org", boxes: int = 2, **spec: object) -> None:
    # An explicit postmaster: with the default one (postmaster@, no such mailbox), render falls
    # back to the first mailbox by address, which a new mailbox can change (see the xfail test).
    if boxes:
        spec.setdefault("postmaster", "user0@example.org")
    api.create(maildomain(name, "example.org", **spec))
    for index in range(boxes):
        box = f"user{index}"
        api.create(password(box, HASH))
        api.create(mailbox(box, f"{box}@example.org"))


# --- create ---------------------------------------------------------------------------------


def test_create_renders_every_child_with_owner_content_and_status(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(password("carol", "a plain password, hashed by the operator"))
    api.create(
        maildomain(
            "example-org",
            "example.org",
            labels={"argocd.argoproj.io/instance": "mail", "team": "platform"},
        )
    )
    api.create(mailbox("carol", "carol@example.org", sieve='require ["fileinto"];\n'))
    api.create(password("dave", HASH))
    api.create(mailbox("dave", "dave@example.org"))

    domain = wait_ready(api, "example-org")
    live = children(api, "example-org")
    expected = expected_objects(api, "example-org")
    assert {(o["kind"], o["metadata"]["name"]) for o in expected} == set(live)
    for obj in expected:
        got = live[(obj["kind"], obj["metadata"]["name"])]
        assert contains(got, {k: v for k, v in obj.items() if k != "apiVersion"}), obj["kind"]
        (ref,) = got["metadata"]["ownerReferences"]
        assert ref["uid"] == domain["metadata"]["uid"]
        assert (ref["kind"], ref["controller"], ref["blockOwnerDeletion"]) == (
            "MailDomain",
            True,
            True,
        )
        # The parent's labels are not copied (Argo CD would adopt and prune the children).
        labels = got["metadata"].get("labels", {})
        assert "team" not in labels and "argocd.argoproj.io/instance" not in labels
        assert APPLIED_ANNOTATION in got["metadata"]["annotations"]
        assert any(
            m["manager"] == OPERATOR and m["operation"] == "Apply"
            for m in got["metadata"]["managedFields"]
        )

    users = live[("Secret", "example-org-users")]
    passwd = secret_text(users, "passwd")
    assert "carol@example.org:{BLF-CRYPT}$2b$10$" in passwd
    assert f"dave@example.org:{HASH}" in passwd
    sieve = live[("ConfigMap", "example-org-sieve")]
    assert sieve["data"] == {sieve_file_name("carol@example.org"): 'require ["fileinto"];\n'}

    status = domain["status"]
    assert status["observedGeneration"] == 1
    assert [c["type"] for c in status["conditions"]] == [
        "Ready",
        "Valid",
        "Rendered",
        "WorkloadsReady",
        "CertificateReady",
        "DNSReady",
        "OutboundIdentityVerified",
        "ClientAddressesMasked",
    ]
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    assert conditions(domain)["DNSReady"]["reason"] == "NotConfigured"
    assert conditions(domain)["OutboundIdentityVerified"]["reason"] == "NotConfigured"
    # No clusterNetworks in the operator's configuration: the tripwire is off.
    assert conditions(domain)["ClientAddressesMasked"]["reason"] == "NotConfigured"
    assert status["mailboxes"] == 2
    assert status["dkim"]["selector"] == "mailstack"
    assert any(r["type"] == "MX" and r["state"] == "Manual" for r in status["dns"]["records"])
    assert {e["name"] for e in status["endpoints"]} >= {"smtp", "submission", "imaps"}
    assert FINALIZER in domain["metadata"]["finalizers"]
    assert all(k.startswith("mailstack.dev/") for k in domain["metadata"].get("annotations", {}))

    for name in ("carol", "dave"):
        box = wait_for(lambda n=name: condition(api.get("mailboxes", n), "Ready") == "True")
        box = api.get("mailboxes", name)
        assert box["status"]["mailDomain"] == "example-org"
        assert box["status"]["observedGeneration"] == 1
    events = {e["reason"] for e in api.list("events")}
    assert {"Ready", "Applied"} <= events


# --- mailboxes ------------------------------------------------------------------------------


def test_mailbox_changes_only_rewrite_the_account_objects(
    api: ApiServer, operator: OperatorThread
) -> None:
    populate(api)
    wait_ready(api, "example-org")
    start = settle(api, operator)

    # Add: the users Secret (and the new Mailbox's status, and the MailDomain's count).
    api.create(password("erin", HASH))
    api.create(mailbox("erin", "erin@example.org", sieve="keep;\n"))
    wait_for(
        lambda: "erin@example.org" in secret_text(api.get("secrets", "example-org-users"), "passwd")
    )
    mark = settle(api, operator)
    assert child_writes(api.writes(start)[: mark - start]) == {
        ("secrets", "example-org-users"),
        ("configmaps", "example-org-sieve"),
    }
    assert api.get("maildomains", "example-org")["status"]["mailboxes"] == 3
    assert condition(api.get("mailboxes", "erin"), "Ready") == "True"

    # Suspend: the login goes, the account stays.
    api.patch("mailboxes", "erin", {"spec": {"suspended": True}})
    wait_for(lambda: "nologin=y" in secret_text(api.get("secrets", "example-org-users"), "passwd"))
    after = settle(api, operator)
    assert child_writes(api.writes(mark)[: after - mark]) == {("secrets", "example-org-users")}
    assert api.get("mailboxes", "erin")["status"]["observedGeneration"] == 2

    # Remove: the account and its Sieve script go (server-side apply drops the key).
    api.delete("mailboxes", "erin")
    wait_for(
        lambda: (
            "erin@example.org" not in secret_text(api.get("secrets", "example-org-users"), "passwd")
        )
    )
    end = settle(api, operator)
    assert child_writes(api.writes(after)[: end - after]) == {
        ("secrets", "example-org-users"),
        ("configmaps", "example-org-sieve"),
    }
    assert not api.get("configmaps", "example-org-sieve").get("data")
    assert api.get("maildomains", "example-org")["status"]["mailboxes"] == 2


def test_mailbox_added_first_in_order_does_not_touch_the_configs(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(maildomain("example-org", "example.org"))
    api.create(password("user0", HASH))
    api.create(mailbox("user0", "user0@example.org"))
    wait_ready(api, "example-org")
    start = settle(api, operator)
    api.create(password("aaron", HASH))
    api.create(mailbox("aaron", "aaron@example.org"))
    wait_for(lambda: condition(api.get("mailboxes", "aaron"), "Ready") == "True")
    end = settle(api, operator)
    assert child_writes(api.writes(start)[: end - start]) == {("secrets", "example-org-users")}


def test_a_burst_of_mailboxes_is_rendered_once(api: ApiServer) -> None:
    populate(api, boxes=1)
    with OperatorThread(api, debounce=1.0) as op:
        wait_ready(api, "example-org")
        start = settle(api, op)
        passes = op.operator.reconciler.passes
        store = api.store

        def burst() -> None:  # forty writes in one go, as a `kubectl apply -f dir/` would
            for index in range(20):
                for doc in (
                    password(f"burst{index}", HASH),
                    mailbox(f"burst{index}", f"burst{index}@example.org"),
                ):
                    res = next(r for r in store.resources.values() if r.kind == doc["kind"])
                    store.create(res, NS, doc, manager="kubectl")

        api.call(burst)
        wait_for(lambda: api.get("maildomains", "example-org")["status"]["mailboxes"] == 21)
        settle(api, op)
        users_applies = [
            w
            for w in operator_writes(api.writes(start))
            if (w.resource, w.name, w.changed) == ("secrets", "example-org-users", True)
        ]
        assert len(users_applies) == 1
        assert op.operator.reconciler.passes - passes <= 3  # the burst, plus status echoes


def test_mailbox_without_password_secret_is_invalid_until_the_secret_appears(
    api: ApiServer, operator: OperatorThread
) -> None:
    populate(api, boxes=1)
    api.create(mailbox("frank", "frank@example.org"))
    wait_for(lambda: condition(api.get("mailboxes", "frank"), "Valid") == "False")
    frank = api.get("mailboxes", "frank")
    valid = conditions(frank)["Valid"]
    assert valid["reason"] == "PasswordUnavailable"
    assert "Secret frank not found" in valid["message"]
    assert any(
        e["reason"] == "InvalidPasswordUnavailable" and e["involvedObject"]["name"] == "frank"
        for e in api.list("events")
    )
    # The rest of the domain is served meanwhile.
    wait_ready(api, "example-org")

    api.create(password("frank", HASH))  # the Secret watch brings it in
    wait_for(lambda: condition(api.get("mailboxes", "frank"), "Ready") == "True")
    assert "frank@example.org:" in secret_text(api.get("secrets", "example-org-users"), "passwd")


def test_mailbox_of_an_unserved_domain_says_so(api: ApiServer, operator: OperatorThread) -> None:
    api.create(password("gina", HASH))
    api.create(mailbox("gina", "gina@nowhere.example"))
    wait_for(lambda: condition(api.get("mailboxes", "gina"), "Valid") == "False")
    valid = conditions(api.get("mailboxes", "gina"))["Valid"]
    assert valid["reason"] == "NoMailDomain"
    assert "nowhere.example" in valid["message"]


def test_password_change_reaches_the_users_secret(api: ApiServer, operator: OperatorThread) -> None:
    populate(api, boxes=1)
    wait_ready(api, "example-org")
    other = "{BLF-CRYPT}$2b$10$abcdefghijklmnopqrstuuCTanVkZ2Xz1qWq3h0oOlu2y9b2n2zgu"
    api.patch("secrets", "user0", {"stringData": {"password": other}})
    wait_for(
        lambda: (
            f"user0@example.org:{other}"
            in secret_text(api.get("secrets", "example-org-users"), "passwd")
        )
    )


# --- spec changes, drift ----------------------------------------------------------------


def test_spec_edit_updates_children_and_observed_generation(
    api: ApiServer, operator: OperatorThread
) -> None:
    populate(api)
    wait_ready(api, "example-org")
    start = settle(api, operator)
    before = api.get("configmaps", "example-org-postfix")["data"]["main.cf"]
    api.patch("maildomains", "example-org", {"spec": {"limits": {"messageSize": "10Mi"}}})
    wait_for(
        lambda: (
            api.get("maildomains", "example-org")["status"]["observedGeneration"] == 2
            and condition(api.get("maildomains", "example-org"), "Ready") == "True"
        )
    )
    after = api.get("configmaps", "example-org-postfix")["data"]["main.cf"]
    assert before != after and "message_size_limit = 10485760" in after
    written = child_writes(api.writes(start))
    assert ("configmaps", "example-org-postfix") in written
    assert ("statefulsets", "example-org-mta") in written  # the config checksum rolls the pods
    assert ("secrets", "example-org-dkim") not in written  # keys are never rotated by a render
    domain = api.get("maildomains", "example-org")
    assert {c["observedGeneration"] for c in domain["status"]["conditions"]} == {2}


def test_mail_pods_follow_spec_pods_over_the_operator_defaults(api: ApiServer) -> None:
    defaults = parse_pod_defaults(
        '{"nodeSelector": {"pool": "mail"}, "priorityClassName": "platform",'
        ' "tolerations": [{"key": "dedicated", "value": "mail", "effect": "NoSchedule"}],'
        ' "resources": {"dovecot": {"limits": {"memory": "1Gi"}}}}'
    )
    pods = {
        "priorityClassName": "tenant",
        "resources": {"postfix": {"requests": {"cpu": "0.2", "memory": "128Mi"}}},
        "annotations": {"backup.velero.io/backup-volumes": "mail"},
    }
    populate(api, boxes=1, pods=pods)
    with OperatorThread(api, render=RenderOptions(mail_pods=defaults), resync_interval=0.5) as op:
        wait_ready(api, "example-org")
        for name in ("example-org-mta", "example-org-mda"):
            template = api.get("statefulsets", name)["spec"]["template"]
            spec = template["spec"]
            assert spec["priorityClassName"] == "tenant"  # the MailDomain wins
            assert spec["nodeSelector"] == {"pool": "mail"}  # the operator's default
            # The API server filled in the CRD's default operator; the render says it too.
            assert spec["tolerations"] == [
                {"key": "dedicated", "operator": "Equal", "value": "mail", "effect": "NoSchedule"}
            ]
            assert template["metadata"]["annotations"]["backup.velero.io/backup-volumes"] == "mail"
        mta = api.get("statefulsets", "example-org-mta")["spec"]["template"]["spec"]
        (postfix,) = [c for c in mta["containers"] if c["name"] == "postfix"]
        assert postfix["resources"]["requests"] == {"cpu": "200m", "memory": "128Mi"}
        mda = api.get("statefulsets", "example-org-mda")["spec"]["template"]["spec"]
        assert mda["containers"][0]["resources"]["limits"] == {"memory": "1Gi"}
        # Resyncs find nothing to do.
        start = settle(api, op)
        passes = op.operator.reconciler.passes
        wait_for(lambda: op.operator.reconciler.passes >= passes + 3)
        assert child_writes(api.writes(start)) == set()
        # An edit of spec.pods reaches both StatefulSets, and only them.
        start = settle(api, op)
        api.patch("maildomains", "example-org", {"spec": {"pods": {"nodeSelector": {"a": "b"}}}})
        wait_for(
            lambda: (
                api.get("statefulsets", "example-org-mda")["spec"]["template"]["spec"][
                    "nodeSelector"
                ]
                == {"a": "b", "pool": "mail"}
            )
        )
        settle(api, op)
        assert child_writes(api.writes(start)) == {
            ("statefulsets", "example-org-mta"),
            ("statefulsets", "example-org-mda"),
        }


def test_deleted_or_edited_children_are_restored(api: ApiServer, operator: OperatorThread) -> None:
    populate(api)
    wait_ready(api, "example-org")
    original = api.get("configmaps", "example-org-postfix")
    dkim = api.get("secrets", "example-org-dkim")

    api.delete("configmaps", "example-org-postfix")
    restored = wait_for(lambda: api.get("configmaps", "example-org-postfix"))
    assert restored["data"] == original["data"]
    assert restored["metadata"]["uid"] != original["metadata"]["uid"]

    api.patch("configmaps", "example-org-postfix", {"data": {"main.cf": "# hacked\n"}})
    wait_for(
        lambda: (
            api.get("configmaps", "example-org-postfix")["data"]["main.cf"]
            == original["data"]["main.cf"]
        )
    )
    api.delete("secrets", "example-org-dkim")
    again = wait_for(lambda: api.get("secrets", "example-org-dkim"))
    # A deleted key is a new key (nothing else holds it); a kept one is never rotated.
    assert again["data"] != dkim["data"]
    assert any(e["reason"] == "Restored" for e in api.list("events"))


# --- invalid specs --------------------------------------------------------------------------


def test_invalid_spec_is_reported_without_retries_and_recovers(
    api: ApiServer, operator: OperatorThread
) -> None:
    populate(api, boxes=1, catchAll="nobody@example.org")
    wait_for(lambda: condition(api.get("maildomains", "example-org"), "Valid") == "False")
    domain = api.get("maildomains", "example-org")
    valid = conditions(domain)["Valid"]
    assert valid["reason"] == "InvalidSpec"
    assert "spec.catchAll" in valid["message"] and "nobody@example.org" in valid["message"]
    assert condition(domain, "Ready") == "False"
    assert conditions(domain)["Ready"]["reason"] == "InvalidSpec"
    assert not children(api, "example-org")  # nothing rendered from an invalid spec
    # The Mailbox's status is written in its own pass, which may come after the domain's.
    wait_for(lambda: condition(api.get("mailboxes", "user0"), "Ready") == "False")

    quiet = settle(api, operator)
    time.sleep(1.5)
    assert api.write_count() == quiet  # no retry storm
    assert any(e["reason"] == "InvalidSpec" for e in api.list("events"))

    api.patch("maildomains", "example-org", {"spec": {"catchAll": "user0@example.org"}})
    wait_ready(api, "example-org")


def test_a_bad_relay_ca_is_reported_and_a_good_one_reaches_postfix(
    api: ApiServer, operator: OperatorThread
) -> None:
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "relay-ca", "namespace": NS, "labels": {USABLE_BY: "maildomains"}},
            "stringData": {"ca.crt": "not a certificate"},
        }
    )
    relay = {"host": "smtp.example.net", "caSecretRef": {"name": "relay-ca"}}
    populate(api, boxes=1, relay=relay)
    wait_for(lambda: condition(api.get("maildomains", "example-org"), "Valid") == "False")
    valid = conditions(api.get("maildomains", "example-org"))["Valid"]
    assert valid["reason"] == "InvalidSecret"
    assert "spec.relay.caSecretRef" in valid["message"]
    assert "Secret relay-ca key ca.crt: not PEM" in valid["message"]
    assert not children(api, "example-org")
    quiet = settle(api, operator)
    time.sleep(1.5)
    assert api.write_count() == quiet  # no retry storm, and the operator is still there

    ca = generate_ca("relay CA", datetime.now(UTC)).cert_pem
    api.patch("secrets", "relay-ca", {"stringData": {"ca.crt": ca}})  # the Secret watch sees it
    wait_ready(api, "example-org")
    postfix = api.get("configmaps", "example-org-postfix")
    assert postfix is not None and postfix["data"]["relay-ca.crt"] == ca
    assert "smtp_tls_CAfile = /etc/mailstack/postfix/relay-ca.crt" in postfix["data"]["main.cf"]


def test_schema_violations_never_reach_the_operator(api: ApiServer) -> None:
    from tests.component.emulator import ApiStatus

    with pytest.raises(ApiStatus) as err:
        api.create(maildomain("bad", "Not A Domain"))
    assert err.value.code == 422


def wait_for_a_later_second(obj: dict) -> None:
    """Until a new object's creationTimestamp (whole seconds) would be later than ``obj``'s."""
    created = obj["metadata"]["creationTimestamp"]
    wait_for(lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") > created)


def in_namespace(doc: dict, namespace: str) -> dict:
    doc["metadata"]["namespace"] = namespace
    return doc


def test_second_maildomain_for_the_same_domain_is_a_conflict(
    api: ApiServer, operator: OperatorThread
) -> None:
    populate(api, boxes=1)
    first = wait_ready(api, "example-org")
    # A claim of the same second would go by uid (random here): make the second one younger.
    wait_for_a_later_second(first)
    api.create(maildomain("example-org-2", "example.org"))
    wait_for(lambda: condition(api.get("maildomains", "example-org-2"), "Valid") == "False")
    valid = conditions(api.get("maildomains", "example-org-2"))["Valid"]
    assert valid["reason"] == "DomainConflict"
    assert "MailDomain/default/example-org" in valid["message"]
    assert condition(api.get("maildomains", "example-org"), "Ready") == "True"


def test_a_domain_claimed_by_two_tenants_is_served_by_the_oldest_claim_only(
    api: ApiServer, operator: OperatorThread
) -> None:
    # Tenant "default" serves example.org; tenant-b then claims the same domain. Its MailDomain
    # renders nothing (no pods, no Secrets, no DNS), its Mailbox is not served, and the first
    # claim is untouched. When the first claim goes, the domain passes to tenant-b.
    populate(api, boxes=1)
    first = wait_ready(api, "example-org")
    wait_for_a_later_second(first)
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant-b"}}, None)
    api.create(in_namespace(password("bob", HASH), "tenant-b"))
    api.create(in_namespace(mailbox("bob", "bob@example.org"), "tenant-b"))
    api.create(in_namespace(maildomain("victim", "example.org"), "tenant-b"))
    later = wait_for(
        lambda: (
            condition(api.get("maildomains", "victim", "tenant-b"), "Valid") == "False"
            and api.get("maildomains", "victim", "tenant-b")
        )
    )
    valid = conditions(later)["Valid"]
    assert valid["reason"] == "DomainConflict"
    assert "already served by MailDomain/default/example-org" in valid["message"]
    box = wait_for(lambda: condition(api.get("mailboxes", "bob", "tenant-b"), "Valid") == "False")
    assert box
    for plural in CHILD_PLURALS:
        assert api.list(plural, "tenant-b", "app.kubernetes.io/instance=victim") == []
    assert condition(api.get("maildomains", "example-org"), "Ready") == "True"

    api.delete("maildomains", "example-org")
    taken = wait_ready(api, "victim", timeout=60, namespace="tenant-b")
    assert taken["metadata"]["namespace"] == "tenant-b"
    assert api.list("statefulsets", "tenant-b", "app.kubernetes.io/instance=victim")
    wait_for(lambda: condition(api.get("mailboxes", "bob", "tenant-b"), "Ready") == "True")


def test_a_policy_decides_which_namespace_may_serve_a_domain(
    api: ApiServer, operator: OperatorThread
) -> None:
    # The first MailDomainPolicy turns grants on: example.org is not granted to "default", so
    # its MailDomain stops serving (and says whom to ask); granting it brings it back.
    populate(api, boxes=1)
    wait_ready(api, "example-org")
    grant = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomainPolicy",
        "metadata": {"name": "team-default"},
        "spec": {"namespaces": ["default"], "domains": ["*.example.org"]},
    }
    api.create(grant, None)
    refused = wait_for(
        lambda: (
            (md := api.get("maildomains", "example-org"))
            and condition(md, "Valid") == "False"
            and md
        )
    )
    valid = conditions(refused)["Valid"]
    assert valid["reason"] == "DomainNotGranted"
    assert "no MailDomainPolicy grants namespace default the domain example.org" in valid["message"]
    assert "MailDomainPolicy/team-default" in valid["message"]
    assert condition(refused, "Ready") == "False"
    # It stops serving: no pods, no Services; its keys stay for when the grant comes back.
    wait_for(lambda: not api.list("statefulsets") and not api.list("services"))
    assert api.get("secrets", "example-org-dkim") is not None
    api.patch(
        "maildomainpolicies",
        "team-default",
        {"spec": {"domains": ["example.org", "*.example.org"]}},
        namespace=None,
    )
    wait_for(lambda: condition(api.get("maildomains", "example-org"), "Valid") == "True")
    wait_ready(api, "example-org")


# --- workloads ------------------------------------------------------------------------------


@pytest.mark.parametrize("api", [{"statefulset_ready": False}], indirect=True)
def test_workloads_ready_follows_the_statefulsets(api: ApiServer, operator: OperatorThread) -> None:
    populate(api, boxes=1)
    wait_for(lambda: condition(api.get("maildomains", "example-org"), "WorkloadsReady") == "False")
    domain = api.get("maildomains", "example-org")
    assert conditions(domain)["WorkloadsReady"]["reason"] == "NotReady"
    assert condition(domain, "Ready") == "False"
    api.set_ready("example-org-mta", 1)
    api.set_ready("example-org-mda", 1)
    wait_ready(api, "example-org")
    api.set_ready("example-org-mda", 0)
    wait_for(lambda: condition(api.get("maildomains", "example-org"), "Ready") == "False")
    # The Event is posted after the status is written: wait for it too (it failed under load).
    warned = ("Warning", "NotReady")
    wait_for(lambda: any((e["type"], e["reason"]) == warned for e in api.list("events")))


REFUSED = (
    'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false, '
    'unrestricted capabilities (container "postfix" must set '
    'securityContext.capabilities.drop=["ALL"])'
)


@pytest.mark.parametrize("api", [{"pods_rejected": REFUSED}], indirect=True)
def test_pods_refused_at_admission_are_reported(api: ApiServer, operator: OperatorThread) -> None:
    """The StatefulSet controller's FailedCreate Event becomes WorkloadsReady=False with the
    admission message (PodRejected), until the pods are created after all."""
    populate(api, boxes=1)

    def workloads() -> dict[str, Any]:
        return conditions(api.get("maildomains", "example-org")).get("WorkloadsReady", {})

    refusals = [
        f"{sts}: create Pod {sts}-0 in StatefulSet {sts} failed error: "
        for sts in ("example-org-mda", "example-org-mta")
    ]
    wait_for(lambda: all(r in workloads().get("message", "") for r in refusals))
    assert (workloads()["status"], workloads()["reason"]) == ("False", "PodRejected")
    assert REFUSED in workloads()["message"]
    domain = api.get("maildomains", "example-org")
    assert (conditions(domain)["Ready"]["status"], conditions(domain)["Ready"]["reason"]) == (
        "False",
        "PodRejected",
    )
    # The namespace's policy relaxed: the controller's next try creates the pods.
    api.set_ready("example-org-mta", 1)
    api.set_ready("example-org-mda", 1)
    wait_ready(api, "example-org")


def test_events_are_read_only_while_pods_are_missing(
    api: ApiServer, operator: OperatorThread
) -> None:
    populate(api, boxes=1)
    wait_ready(api, "example-org")
    settle(api, operator)
    assert api.emulator is not None
    assert not [
        v for v in api.emulator.verbs if v[0] == "mailstack" and v[1:] == ("list", "", "events")
    ]


# --- deletion -------------------------------------------------------------------------------


@pytest.mark.parametrize("retention", ["Retain", "Delete"])
def test_deleting_a_maildomain_runs_the_finalizer(
    api: ApiServer, operator: OperatorThread, retention: str
) -> None:
    populate(api, boxes=1, storage={"retention": retention})
    wait_ready(api, "example-org")
    claims = wait_for(lambda: len(api.list("persistentvolumeclaims")) == 2)
    assert claims
    api.delete("maildomains", "example-org")
    wait_for(lambda: api.get("maildomains", "example-org") is None)
    wait_for(lambda: not children(api, "example-org"))  # garbage collected
    if retention == "Retain":
        remaining = api.list("persistentvolumeclaims")
        assert {c["metadata"]["name"] for c in remaining} == {
            "queue-example-org-mta-0",
            "mail-example-org-mda-0",
        }
    else:
        # Owned by their StatefulSets (whenDeleted: Delete): the garbage collector takes them.
        wait_for(lambda: api.list("persistentvolumeclaims") == [])
    # The operator itself never deletes a volume claim (its role may not).
    claim_deletes = [
        w for w in api.writes() if w.resource == "persistentvolumeclaims" and w.verb == "delete"
    ]
    assert all(w.internal for w in claim_deletes)
    assert any(e["reason"] == "Finalized" for e in api.list("events"))
    wait_for(lambda: condition(api.get("mailboxes", "user0"), "Valid") == "False")
    assert conditions(api.get("mailboxes", "user0"))["Valid"]["reason"] == "NoMailDomain"


# --- restarts -------------------------------------------------------------------------------


def test_restart_writes_nothing_when_nothing_changed(api: ApiServer) -> None:
    populate(api, boxes=3)
    api.create(maildomain("example-net", "example.net"))
    with OperatorThread(api) as first:
        wait_ready(api, "example-org")
        wait_ready(api, "example-net")
        settle(api, first)
    before = api.write_count()
    dkim = api.get("secrets", "example-org-dkim")
    with OperatorThread(api, resync_interval=0.5) as second:
        # Resume handlers, then the daemons' resyncs: several full passes over both domains.
        wait_for(lambda: second.operator.reconciler.passes >= 6)
        settle(api, second)
    writes = operator_writes(api.writes(before))
    assert writes == [], writes
    assert api.get("secrets", "example-org-dkim") == dkim


# --- peering --------------------------------------------------------------------------------


def test_peering_keeps_a_single_replica_active(api: ApiServer) -> None:
    api.create(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": "mailstack"},
        },
        namespace=None,
    )
    populate(api, boxes=1)
    with OperatorThread(api, peering="mailstack", identity="low", priority=0) as low:
        wait_ready(api, "example-org")
        peering = wait_for(
            lambda: (
                (api.get("clusterkopfpeerings", "mailstack", None) or {})
                .get("status", {})
                .get("low")
            )
        )
        assert peering["priority"] == 0
        with OperatorThread(api, peering="mailstack", identity="high", priority=10) as high:
            wait_for(lambda: not low.operator.peering.active())
            assert high.operator.peering.active()
            time.sleep(0.5)  # kopf pauses on the same peering event
            passes = low.operator.reconciler.passes
            api.create(password("zoe", HASH))
            api.create(mailbox("zoe", "zoe@nowhere.example"))  # an orphan: informer-written
            api.create(maildomain("example-net", "example.net"))
            wait_ready(api, "example-net")
            wait_for(lambda: condition(api.get("mailboxes", "zoe"), "Valid") == "False")
            settle(api, high)
            assert low.operator.reconciler.passes == passes  # the paused replica did nothing
            assert high.operator.reconciler.passes > 0
            orphan_writes = [
                w
                for w in api.writes()
                if (w.resource, w.name, w.subresource) == ("mailboxes", "zoe", "status")
            ]
            assert len(orphan_writes) == 1
        # The high-priority replica left the peering: the other one takes over.
        wait_for(lambda: low.operator.peering.active())
        api.patch("maildomains", "example-net", {"spec": {"limits": {"messageSize": "10Mi"}}})
        wait_for(lambda: api.get("maildomains", "example-net")["status"]["observedGeneration"] == 2)
        assert low.operator.reconciler.passes > passes


def test_storage_change_recreates_the_statefulset_and_keeps_the_volumes(
    api: ApiServer, operator: OperatorThread
) -> None:
    populate(api, boxes=1)
    wait_ready(api, "example-org")
    wait_for(lambda: len(api.list("persistentvolumeclaims")) == 2)
    claims = {c["metadata"]["uid"] for c in api.list("persistentvolumeclaims")}
    old = api.get("statefulsets", "example-org-mda")
    # volumeClaimTemplates are immutable: a plain apply gets 422 from the API server.
    api.patch("maildomains", "example-org", {"spec": {"storage": {"mailboxes": {"size": "50Gi"}}}})
    new = wait_for(
        lambda: (
            (s := api.get("statefulsets", "example-org-mda"))
            and s["metadata"]["uid"] != old["metadata"]["uid"]
            and s
        )
    )
    (template,) = new["spec"]["volumeClaimTemplates"]
    assert template["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert {c["metadata"]["uid"] for c in api.list("persistentvolumeclaims")} == claims
    domain = wait_ready(api, "example-org", generation=2)
    assert domain["status"]["observedGeneration"] == 2
    assert any(e["reason"] == "Recreated" for e in api.list("events"))
    deletions = [w for w in api.writes() if w.verb == "delete" and w.resource == "statefulsets"]
    assert [w.name for w in deletions] == ["example-org-mda"]  # the MTA was left alone
