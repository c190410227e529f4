"""The controller's pure decisions: what to apply, which status to report, what to remember."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailstack.controller import plan
from mailstack.controller.children import (
    APPLIED_ANNOTATION,
    Owner,
    child_key,
    contains,
    decide,
    owned,
    plan_changes,
    stale_children,
)
from mailstack.controller.conditions import (
    Condition,
    mailbox_verdicts,
    orphan_verdict,
    valid_condition,
    workloads_condition,
)
from mailstack.controller.documents import doc_name, referenced_secret_names
from mailstack.controller.memory import Coalescer, Echoes, SecretCache, WrittenStatus, newer
from mailstack.controller.rejections import event_selector, pods_missing, refused_creation
from mailstack.controller.status import (
    DOMAIN_CONDITIONS,
    condition_list,
    domain_event_type,
    domain_status,
    summarise,
    transitions,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)
OWNER = Owner("example-org", "default", "uid-1")
HASH = "{BLF-CRYPT}$2b$10$oNX0qrTw9O53hLe7QUwJleCv/SNk366H0AaviuhdUL0m9Ve3uMtW."


def cm(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "example-org-postfix", "namespace": "default", "labels": {"a": "b"}},
        "data": data,
    }


def live_copy(obj: dict[str, Any], **extra_meta: Any) -> dict[str, Any]:
    """What the API server returns for an applied object: plus server fields."""
    result: dict[str, Any] = {k: v for k, v in obj.items()}
    result["metadata"] = {
        **obj["metadata"],
        "uid": "child-uid",
        "resourceVersion": "7",
        "managedFields": [{"manager": "mailstack"}],
        **extra_meta,
    }
    return result


# --- children -------------------------------------------------------------------------------


def test_owned_adds_owner_and_digest_without_touching_the_rendered_object() -> None:
    rendered = cm(x="1")
    applied = owned(rendered, OWNER)
    assert "ownerReferences" not in rendered["metadata"]
    (ref,) = applied["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "name": "example-org",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert applied["metadata"]["labels"] == {"a": "b"}  # only the rendered labels
    assert owned(cm(x="1"), OWNER) == applied  # deterministic
    assert (
        owned(cm(x="2"), OWNER)["metadata"]["annotations"][APPLIED_ANNOTATION]
        != applied["metadata"]["annotations"][APPLIED_ANNOTATION]
    )


def test_owned_refuses_an_object_of_another_namespace() -> None:
    other = cm()
    other["metadata"]["namespace"] = "elsewhere"
    with pytest.raises(ValueError):
        owned(other, OWNER)


def test_decide_creates_updates_restores_or_leaves_alone() -> None:
    desired = owned(cm(x="1"), OWNER)
    assert decide(desired, None) == "create"
    live = live_copy(desired)
    assert decide(desired, live) is None
    # Fields the server adds and empty fields it drops do not count as drift.
    with_status = {**live, "status": {"x": 1}}
    assert decide(desired, with_status) is None
    empty = owned({**cm(), "data": {}}, OWNER)
    assert decide(empty, {k: v for k, v in live_copy(empty).items() if k != "data"}) is None
    # A new render (a removed key, say) changes the digest.
    assert decide(owned(cm(), OWNER), live) == "update"
    # Edited by hand, same digest: restore.
    edited = live_copy(desired)
    edited["data"] = {"x": "hacked"}
    assert decide(desired, edited) == "restore"
    relabelled = live_copy(desired)
    relabelled["metadata"]["labels"] = {}
    assert decide(desired, relabelled) == "restore"


def test_contains_compares_lists_whole_and_types_exactly() -> None:
    assert contains({"a": [1, {"b": 2, "c": 3}]}, {"a": [1, {"b": 2}]})
    assert not contains({"a": [1, 2, 3]}, {"a": [1, 2]})
    assert not contains({"a": 1}, {"a": True})
    assert not contains({"a": "1"}, {"a": 1})
    assert contains({}, {"a": None, "b": [], "c": {}})
    assert not contains({"a": {"b": 1}}, {"a": {"b": 2}})


def test_plan_changes_keeps_render_order_and_skips_up_to_date() -> None:
    first = owned(cm(x="1"), OWNER)
    second = owned({**cm(y="1"), "metadata": {**cm()["metadata"], "name": "b"}}, OWNER)
    live = {child_key(first): live_copy(first), child_key(second): None}
    changes = plan_changes([first, second], live)
    assert [(c.action, c.describe()) for c in changes] == [("create", "ConfigMap/b")]


def test_stale_children_only_lists_owned_candidates() -> None:
    key = ("v1", "Secret", "example-org-ca")
    ours = {"metadata": {"ownerReferences": [{"uid": "uid-1"}]}}
    theirs = {"metadata": {"ownerReferences": [{"uid": "other"}]}}
    assert stale_children([], [key], {key: ours}, OWNER) == [key]
    assert stale_children([], [key], {key: theirs}, OWNER) == []
    assert stale_children([], [key], {key: None}, OWNER) == []
    wanted = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "example-org-ca"}}
    assert stale_children([wanted], [key], {key: ours}, OWNER) == []


# --- status ---------------------------------------------------------------------------------


def test_summarise_false_wins_then_unknown_except_manual_dns() -> None:
    ok = [Condition(t, "True", "Ok") for t in DOMAIN_CONDITIONS[1:5]]
    manual = Condition("DNSReady", "Unknown", "NotConfigured", "publish")
    assert summarise([*ok, manual], "x").status == "True"
    pending = Condition("WorkloadsReady", "Unknown", "Pending", "waiting")
    assert summarise([*ok[:2], pending, ok[3], manual], "x").reason == "Pending"
    bad = Condition("Valid", "False", "InvalidSpec", "spec.catchAll: no")
    ready = summarise([bad, *ok[1:], manual], "x")
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert ready.message == "Valid: spec.catchAll: no"
    other = Condition("DNSReady", "Unknown", "WaitingForExternalDNS", "")
    assert summarise([*ok, other], "x").status == "Unknown"


def test_condition_list_keeps_transition_times_and_needs_every_type() -> None:
    conds = [Condition(t, "True", "Ok") for t in ("Ready", "Valid")]
    first = condition_list(conds, ("Ready", "Valid"), None, 1, NOW)
    assert [c["lastTransitionTime"] for c in first] == ["2026-11-01T00:00:00Z"] * 2
    later = NOW + timedelta(hours=1)
    flipped = [Condition("Ready", "False", "NotReady", "x"), Condition("Valid", "True", "Ok2")]
    second = condition_list(flipped, ("Ready", "Valid"), first, 2, later)
    assert second[0]["lastTransitionTime"] == "2026-11-01T01:00:00Z"
    assert second[1]["lastTransitionTime"] == "2026-11-01T00:00:00Z"  # reason changed only
    assert {c["observedGeneration"] for c in second} == {2}
    with pytest.raises(ValueError):
        condition_list(conds[:1], ("Ready", "Valid"), None, 1, NOW)


def test_transitions_and_which_are_worth_an_event() -> None:
    def status(**truths: str) -> dict[str, Any]:
        return {"conditions": [{"type": t, "status": s} for t, s in truths.items()]}

    changes = transitions(status(Ready="Unknown", Valid="True"), status(Ready="True", Valid="True"))
    assert [(c.type, c.before, c.after) for c in changes] == [("Ready", "Unknown", "True")]
    assert domain_event_type(changes[0]) == "Normal"
    (first,) = [c for c in transitions(None, status(Ready="False")) if c.type == "Ready"]
    assert domain_event_type(first) is None  # first sight: the cause has its own event
    (lost,) = transitions(status(Ready="True"), status(Ready="False"))
    assert domain_event_type(lost) == "Warning"
    (invalid,) = transitions(status(Valid="True"), status(Valid="False"))
    assert domain_event_type(invalid) == "Warning"


# --- plan -----------------------------------------------------------------------------------


def domain_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {
            "name": "example-org",
            "namespace": "default",
            "uid": "uid-1",
            "generation": 3,
        },
        "spec": {"domain": "example.org", **spec},
    }


def box_doc(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "Mailbox",
        "metadata": {"name": name, "namespace": "default", "generation": 1},
        "spec": {"address": f"{name}@example.org", "passwordSecretRef": {"name": name}, **spec},
    }


def secret(name: str, value: str = HASH) -> Any:
    from mailstack.api.parse import parse_secret

    return parse_secret(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": "default",
                "labels": {"mailstack.dev/usable-by": "mailboxes"},
            },
            "data": {"password": base64.b64encode(value.encode()).decode()},
        }
    )


def test_render_domain_sorts_problems_by_document() -> None:
    inputs = plan.DomainInputs(
        domain=domain_doc(),
        siblings=(),
        mailboxes=[box_doc("alice"), box_doc("bob"), box_doc("carol", keepCopy=True)],
        secrets={"alice": secret("alice")},
        now=NOW,
    )
    rendered = plan.render_domain(inputs)
    assert rendered.ok and rendered.valid
    assert set(rendered.mailbox_problems) == {"bob", "carol"}
    verdicts = {v.name: v for v in mailbox_verdicts(rendered, inputs.mailboxes, "x")}
    assert verdicts["alice"].ready.status == "True"
    assert verdicts["bob"].valid.reason == "PasswordUnavailable"
    assert "Secret bob not found" in verdicts["bob"].valid.message
    assert verdicts["carol"].valid.reason == "InvalidSpec"
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == "uid-1" for o in rendered.objects)

    status = domain_status(
        rendered, generation=3, previous=None, now=NOW, valid_mailboxes=1, statefulsets={}
    )
    assert [c["type"] for c in status["conditions"]] == list(DOMAIN_CONDITIONS)
    assert status["observedGeneration"] == 3 and status["mailboxes"] == 1
    assert status["conditions"][0]["status"] == "Unknown"  # no workload status yet


def test_render_domain_stops_at_a_domain_problem_and_keeps_the_last_status() -> None:
    inputs = plan.DomainInputs(
        domain=domain_doc(catchAll="nobody@example.org"),
        siblings=(),
        mailboxes=[box_doc("alice")],
        secrets={"alice": secret("alice")},
        now=NOW,
    )
    rendered = plan.render_domain(inputs)
    assert not rendered.valid and rendered.objects == []
    assert "spec.catchAll" in valid_condition(rendered).message
    previous = {"dkim": {"selector": "s", "record": "r"}, "conditions": []}
    status = domain_status(rendered, generation=3, previous=previous, now=NOW)
    assert status["dkim"] == previous["dkim"]
    (verdict,) = mailbox_verdicts(rendered, inputs.mailboxes, "example-org")
    assert verdict.ready.reason == "MailDomainInvalid"


def test_duplicate_domain_does_not_speak_for_the_mailboxes() -> None:
    first = domain_doc()
    first["metadata"] = {**first["metadata"], "name": "a-first", "uid": "u0"}
    inputs = plan.DomainInputs(
        domain=domain_doc(), siblings=[first], mailboxes=[box_doc("alice")], secrets={}, now=NOW
    )
    rendered = plan.render_domain(inputs)
    assert valid_condition(rendered).reason == "DomainConflict"
    assert mailbox_verdicts(rendered, inputs.mailboxes, "example-org") == []


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        ({"name": "shared"}, "ServerPending"),
        ({"namespace": "platform", "name": "shared"}, "ServerNotAllowed"),
    ],
)
def test_a_maildomain_on_a_server_is_withdrawn_with_its_own_reason(
    server: dict[str, str], reason: str
) -> None:
    from mailstack.api.policy import Grants, parse_policy
    from tests.unit.test_policy import policy_doc

    grants = Grants((parse_policy(policy_doc("a", ["default"], ["example.org", "*.example.org"])),))
    inputs = plan.DomainInputs(
        domain=domain_doc(serverRef=server), siblings=(), mailboxes=[], secrets={}, now=NOW
    )
    rendered = plan.render_domain(dataclasses.replace(inputs, grants=grants))
    assert rendered.withdrawn and valid_condition(rendered).reason == reason
    assert "spec.serverRef" in valid_condition(rendered).message


def test_workloads_condition_reads_the_statefulset_status() -> None:
    def sts(generation: int, **status: Any) -> dict[str, Any]:
        return {"metadata": {"generation": generation}, "spec": {"replicas": 1}, "status": status}

    ready = sts(2, observedGeneration=2, readyReplicas=1, updatedReplicas=1)
    assert workloads_condition({"a": ready, "b": ready}).status == "True"
    assert workloads_condition({"a": sts(1)}).status == "Unknown"
    rolling = workloads_condition({"a": sts(3, observedGeneration=2, readyReplicas=1)})
    assert (rolling.status, rolling.reason) == ("False", "RollingOut")
    down = workloads_condition({"a": sts(1, observedGeneration=1, readyReplicas=0)})
    assert (down.status, down.reason, down.message) == ("False", "NotReady", "a: 0/1 ready")
    refused = workloads_condition(
        {"a": sts(1, observedGeneration=1, replicas=0), "b": ready}, {"a": "forbidden: x"}
    )
    assert (refused.status, refused.reason, refused.message) == (
        "False",
        "PodRejected",
        "a: forbidden: x; b: 1/1 ready",
    )


def _sts_event(reason: str, when: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"reason": reason, "lastTimestamp": when, "message": message, **extra}


def test_a_refused_creation_is_the_newest_failed_create() -> None:
    failed = _sts_event("FailedCreate", "2025-01-01T10:00:00Z", "forbidden: restricted")
    created = _sts_event("SuccessfulCreate", "2025-01-01T10:05:00Z")
    other = _sts_event("RecreatingFailedPod", "2025-01-01T11:00:00Z")
    assert refused_creation([]) is None
    assert refused_creation([failed, other]) == "forbidden: restricted"
    assert refused_creation([failed, created]) is None  # admitted after all
    again = _sts_event("FailedCreate", "2025-01-01T10:09:00Z", "forbidden: quota")
    assert refused_creation([failed, created, again]) == "forbidden: quota"
    # Whole seconds: a tie goes to the failure (this is asked only while a pod is missing).
    tied = _sts_event("SuccessfulCreate", "2025-01-01T10:00:00Z")
    assert refused_creation([tied, failed]) == "forbidden: restricted"
    # An events.k8s.io Event (eventTime, series) against a legacy one (lastTimestamp).
    series = _sts_event(
        "SuccessfulCreate",
        "",
        eventTime="2025-01-01T10:00:00.500000Z",
        series={"lastObservedTime": "2025-01-01T10:20:00.000001Z"},
    )
    assert refused_creation([again, series]) is None


def test_events_are_read_only_for_statefulsets_missing_pods() -> None:
    def sts(**status: Any) -> dict[str, Any]:
        return {"metadata": {"name": "a", "uid": "u1"}, "spec": {"replicas": 1}, "status": status}

    assert not pods_missing(None)
    assert not pods_missing(sts())  # not seen by the StatefulSet controller yet
    assert not pods_missing(sts(observedGeneration=1, replicas=1, readyReplicas=0))
    assert pods_missing(sts(observedGeneration=1, replicas=0))
    assert pods_missing(sts(observedGeneration=1))
    assert event_selector(sts()) == (
        "involvedObject.kind=StatefulSet,involvedObject.name=a,involvedObject.uid=u1"
    )


def test_orphan_verdict_names_the_missing_domain() -> None:
    valid, ready = orphan_verdict(box_doc("alice"))
    assert (valid.reason, ready.status) == ("NoMailDomain", "False")
    assert "example.org" in valid.message
    broken = box_doc("alice")
    broken["spec"]["address"] = "no-at-sign"
    assert orphan_verdict(broken)[0].reason == "InvalidSpec"


def test_referenced_secret_names_reads_raw_documents() -> None:
    domain = domain_doc(relay={"host": "smtp.example.net", "credentialsSecretRef": {"name": "r"}})
    assert referenced_secret_names(domain, [box_doc("a"), {"spec": 1}]) == {"r", "a"}
    # The relay's CA is a user Secret too: a new CA re-renders the MailDomain.
    relay = {"host": "smtp.example.net", "credentialsSecretRef": {"name": "r"}}
    domain = domain_doc(relay={**relay, "caSecretRef": {"name": "relay-ca"}})
    assert referenced_secret_names(domain, []) == {"r", "relay-ca"}


# --- memory ---------------------------------------------------------------------------------


def test_newer_compares_numeric_versions_and_trusts_others() -> None:
    assert newer("10", "9") and not newer("9", "10") and newer("a", "b") and newer("1", None)


def test_secret_cache_ignores_late_events() -> None:
    cache = SecretCache()

    def raw(version: str, value: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "ns", "resourceVersion": version},
            "data": {"password": base64.b64encode(value.encode()).decode()},
        }

    assert cache.put(raw("5", "one"))
    assert not cache.put(raw("4", "stale"))
    assert cache.get("ns", "s") is not None and cache.get("ns", "s").get("password") == b"one"
    assert not cache.put(raw("6", "one"))  # a new version, same content
    assert cache.drop("ns", "s") and cache.get("ns", "s") is None


def test_echoes_and_written_status() -> None:
    echoes = Echoes()
    obj = {"kind": "ConfigMap", "metadata": {"namespace": "n", "name": "c", "resourceVersion": "3"}}
    echoes.record(obj)
    assert echoes.is_echo(obj)
    assert not echoes.is_echo({**obj, "metadata": {**obj["metadata"], "resourceVersion": "4"}})
    written = WrittenStatus()
    written.put("Mailbox", "n", "a", "uid", {"x": 1})
    assert written.matches("Mailbox", "n", "a", "uid", {"x": 1})
    assert not written.matches("Mailbox", "n", "a", "other-uid", {"x": 1})
    assert not written.matches("Mailbox", "n", "a", "uid", {"x": 2})


def test_coalescer_merges_marks_until_cleared() -> None:
    async def scenario() -> tuple[bool, bool, list[Any]]:
        coalescer = Coalescer()
        key = ("n", "d")
        for _ in range(5):
            coalescer.mark(key)
        woke = await coalescer.wait(key, 1)
        pending = coalescer.pending()
        coalescer.clear(key)
        timed_out = await coalescer.wait(key, 0.01)
        return woke, timed_out, pending

    woke, timed_out, pending = asyncio.run(scenario())
    assert woke and not timed_out and pending == [("n", "d")]


# --- index ----------------------------------------------------------------------------------


def test_documents_index_mailboxes_domains_and_secret_users() -> None:
    from mailstack.controller.index import Documents

    docs = Documents()
    domain = domain_doc(relay={"host": "smtp.example.net", "credentialsSecretRef": {"name": "r"}})
    assert docs.put_domain(domain) == {("default", "example-org")}
    assert docs.put_mailbox(box_doc("alice")) == {("default", "example-org")}
    assert docs.put_mailbox(box_doc("bob")) == {("default", "example-org")}
    assert [doc_name(d) for d in docs.mailboxes("default", "example.org")] == ["alice", "bob"]
    assert docs.secret_users("default", "alice") == {("default", "example-org")}
    assert docs.secret_users("default", "r") == {("default", "example-org")}
    assert docs.secret_users("default", "nobody") == set()
    # An address moving to another domain concerns both domains' owners.
    other = domain_doc()
    other["metadata"] = {**other["metadata"], "name": "example-net", "uid": "u2"}
    other["spec"] = {"domain": "example.net"}
    docs.put_domain(other)
    moved = box_doc("bob")
    moved["spec"]["address"] = "bob@example.net"
    assert docs.put_mailbox(moved) == {("default", "example-org"), ("default", "example-net")}
    assert docs.drop_mailbox("default", "alice") == {("default", "example-org")}
    assert docs.mailboxes("default", "example.org") == []
    assert docs.drop_mailbox("default", "alice") == set()
    assert docs.mailbox_count() == 1
    # Siblings: two MailDomains claiming one domain, by name.
    twin = domain_doc()
    twin["metadata"] = {**twin["metadata"], "name": "a-first", "uid": "u3"}
    docs.put_domain(twin)
    assert docs.domain_names("default", "example.org") == ["a-first", "example-org"]
    assert docs.drop_domain("default", "example-org") >= {("default", "a-first")}
    assert docs.secret_users("default", "r") == set()


def test_peering_is_active_unless_a_live_peer_outranks_or_ties() -> None:
    from mailstack.controller.memory import Peering

    def peer(priority: int, seen: datetime, lifetime: int = 60) -> dict[str, Any]:
        return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}

    view = Peering("me", priority=5, enabled=True)
    assert view.active(NOW)
    view.update(("", "mailstack"), {"me": peer(5, NOW), "low": peer(1, NOW)})
    assert view.active(NOW)
    view.update(("", "mailstack"), {"me": peer(5, NOW), "high": peer(9, NOW)})
    assert not view.active(NOW)
    assert view.active(NOW + timedelta(seconds=61))  # the high one stopped renewing: dead
    view.update(("", "mailstack"), {"twin": peer(5, NOW)})
    assert not view.active(NOW)  # same priority: kopf pauses everyone
    assert Peering("me", 0, enabled=False).active(NOW)


# --- DNS publishing (dns_publisher.DnsPublisher) --------------------------------------------------


def test_dns_publisher_publishes_on_change_or_resync_and_reports_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailstack.api.assemble import assemble
    from mailstack.api.models import Secret
    from mailstack.api.parse import parse_maildomain
    from mailstack.controller import dns_publisher
    from mailstack.dns.errors import CredentialsError
    from mailstack.dns.plan import RecordStatus
    from mailstack.dns.records import desired_records
    from mailstack.kubedoc import ObjectRef
    from mailstack.material.dkim import generate_dkim_key

    doc = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "example-org", "namespace": "default"},
        "spec": {
            "domain": "example.org",
            "dns": {
                "addresses": {"ipv4": ["192.0.2.25"]},
                "provider": {
                    "rfc2136": {
                        "server": "127.0.0.1",
                        "tsigKeyName": "k",
                        "tsigSecretRef": {"name": "tsig"},
                    }
                },
            },
        },
    }
    assert referenced_secret_names(doc, ()) == {"tsig"}
    services, problems = assemble([parse_maildomain(doc)], [])
    assert not problems
    service = services[0]
    dkim = generate_dkim_key("mailstack", "rsa2048")
    calls: list[dict[str, Secret]] = []
    failing = [False]

    def fake(svc: Any, key: Any, secrets: dict[str, Secret], **_: Any) -> list[RecordStatus]:
        calls.append(secrets)
        if failing[0]:
            raise CredentialsError("TSIG BADSIG: wrong secret")
        return [RecordStatus.of(r, "Published") for r in desired_records(svc.domain, key)]

    monkeypatch.setattr(dns_publisher, "reconcile_dns", fake)
    publisher = dns_publisher.DnsPublisher()
    key = ObjectRef("default", "example-org", "uid-1")
    tsig = {"tsig": Secret("tsig", "default", (("secret", b"one"),)), "other": Secret("o", "d")}

    def publish(secrets: dict[str, Secret], resync: bool = False) -> dns_publisher.DnsOutcome:
        return asyncio.run(publisher.publish(key, service, dkim, secrets, resync=resync))

    first = publish(tsig)
    assert (first.condition.status, first.condition.reason) == ("True", "Published")
    assert {r["state"] for r in first.records} == {"Published"}
    assert list(calls[0]) == ["tsig"]  # only the provider's Secret goes to the provider
    assert publish(tsig) == first and len(calls) == 1  # unchanged: not asked again
    publish(tsig, resync=True)
    assert len(calls) == 2  # the periodic resync publishes anyway

    failing[0] = True
    changed = {"tsig": Secret("tsig", "default", (("secret", b"two"),))}
    failed = publish(changed)
    assert (failed.condition.status, failed.condition.reason) == ("False", "DNSCredentialsRefused")
    assert "BADSIG" in failed.condition.message
    assert publish(changed) == failed and len(calls) == 3  # retried on the resync, not each pass
    failing[0] = False
    assert publish(changed, resync=True).condition.status == "True"
    ready = summarise([failed.condition], "the mail service")
    assert (ready.status, ready.reason) == ("False", "DNSCredentialsRefused")
