"""The per-namespace limits of MailDomainPolicies: parsing, combining, and what they admit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailstack.api.assemble import assemble
from mailstack.api.errors import ValidationError
from mailstack.api.limits import (
    LIMIT_EXCEEDED,
    UNBOUNDED,
    NamespaceLimits,
    admit_domains,
    admit_mailboxes,
    combine,
    storage_of,
)
from mailstack.api.models import Mailbox, MailDomain
from mailstack.api.parse import parse_mailbox, parse_maildomain
from mailstack.api.policy import Grants, parse_policy
from mailstack.commands.main import main

API = "mailstack.dev/v1alpha1"
MI, GI = 1024**2, 1024**3


def policy(name: str, namespaces: list[str], **spec: Any) -> Any:
    doc = {
        "apiVersion": API,
        "kind": "MailDomainPolicy",
        "metadata": {"name": name},
        "spec": {"namespaces": namespaces, "domains": ["*.t.example"], **spec},
    }
    return parse_policy(doc)


def dom(name: str, created: str = "", uid: str = "", ns: str = "a", **spec: Any) -> MailDomain:
    meta = {"name": name, "namespace": ns, "uid": uid}
    if created:
        meta["creationTimestamp"] = created
    doc = {"apiVersion": API, "kind": "MailDomain", "metadata": meta}
    return parse_maildomain({**doc, "spec": {"domain": f"{name}.t.example", **spec}})


def box(name: str, domain: str, created: str = "", uid: str = "", **spec: Any) -> Mailbox:
    meta = {"name": name, "namespace": "a", "uid": uid}
    if created:
        meta["creationTimestamp"] = created
    spec = {"address": f"{name}@{domain}.t.example", "passwordSecretRef": {"name": "pw"}, **spec}
    return parse_mailbox({"apiVersion": API, "kind": "Mailbox", "metadata": meta, "spec": spec})


def t(second: int) -> str:
    return f"2026-12-07T10:00:{second:02d}Z"


# --- parsing and combining --------------------------------------------------------------------


def test_limits_parse_counts_and_quantities() -> None:
    limits = {"maxMailDomains": 2, "maxMailboxes": 0, "maxQuota": "10Gi", "maxStorage": 5000}
    parsed = policy("p", ["a"], limits=limits, requireProof=True)
    assert parsed.limits == NamespaceLimits(2, 0, 10 * GI, 5000)
    assert parsed.require_proof is True
    assert policy("p", ["a"]).limits == UNBOUNDED and not UNBOUNDED.bounded


@pytest.mark.parametrize(
    ("limits", "path"),
    [
        ({"maxMailDomains": -1}, "spec.limits.maxMailDomains"),
        ({"maxMailDomains": True}, "spec.limits.maxMailDomains"),
        ({"maxMailboxes": "3"}, "spec.limits.maxMailboxes"),
        ({"maxQuota": "10GB"}, "spec.limits.maxQuota"),
        ({"maxStorage": -5}, "spec.limits.maxStorage"),
        ({"maxUsers": 3}, "spec.limits.maxUsers"),
        ("3", "spec.limits"),
    ],
)
def test_bad_limits_are_refused_with_their_place(limits: Any, path: str) -> None:
    with pytest.raises(ValidationError) as raised:
        policy("p", ["a"], limits=limits)
    assert [p.path for p in raised.value.problems] == [path]


def test_several_policies_give_a_namespace_the_most_generous_limit() -> None:
    tight = policy("tight", ["a", "b"], limits={"maxMailDomains": 1, "maxQuota": "1Gi"})
    loose = policy("loose", ["a"], limits={"maxMailDomains": 3, "maxStorage": "100Gi"})
    grants = Grants((tight, loose))
    a = grants.limits_for("a")
    # maxQuota and maxStorage are each unset in one policy naming a: unbounded.
    assert (a.max_mail_domains, a.max_quota, a.max_storage) == (3, None, None)
    assert a.source == "MailDomainPolicy/loose or MailDomainPolicy/tight"
    assert grants.limits_for("b") == NamespaceLimits(1, None, GI, None, "MailDomainPolicy/tight")
    assert grants.limits_for("c") == UNBOUNDED  # named by none: granted nothing anyway
    assert combine([]) == UNBOUNDED


def test_limits_are_not_enforced_without_policies() -> None:
    assert Grants().limits_for("a") == UNBOUNDED


# --- what is admitted -------------------------------------------------------------------------


def refused(admission: Any) -> list[str]:
    return sorted(p.document.rpartition("/")[2] for p in admission.problems)


def test_the_oldest_maildomains_within_the_count_are_admitted_at_the_boundary() -> None:
    limits = NamespaceLimits(max_mail_domains=2, source="MailDomainPolicy/p")
    doms = [dom("c", t(3)), dom("a", t(1)), dom("b", t(2))]
    admission = admit_domains(limits, doms)
    assert refused(admission) == ["c"]
    problem = admission.problems[0]
    assert problem.kind == LIMIT_EXCEEDED and problem.path == "metadata.namespace"
    assert "maxMailDomains" in problem.message and "MailDomainPolicy/p" in problem.message
    assert "2 older one(s)" in problem.message
    assert refused(admit_domains(limits, doms[1:])) == []  # exactly at the limit
    assert refused(admit_domains(NamespaceLimits(max_mail_domains=0), doms)) == ["a", "b", "c"]


def test_equal_timestamps_go_by_uid_and_files_by_name() -> None:
    limits = NamespaceLimits(max_mail_domains=1)
    same = [dom("x", t(1), uid="b-uid"), dom("y", t(1), uid="a-uid")]
    assert refused(admit_domains(limits, same)) == ["x"]
    assert refused(admit_domains(limits, list(reversed(same)))) == ["x"]
    files = [dom("y"), dom("x")]
    assert refused(admit_domains(limits, files)) == ["y"]


def test_storage_counts_both_volumes_and_a_later_smaller_one_may_fit() -> None:
    assert storage_of(dom("a")) == 12 * GI  # the defaults: 10Gi of mail, 2Gi of queue
    small = {"mailboxes": {"size": "1Gi"}, "queue": {"size": "1Gi"}}
    doms = [dom("a", t(1)), dom("b", t(2)), dom("c", t(3), storage=small)]
    admission = admit_domains(NamespaceLimits(max_storage=14 * GI), doms)
    assert refused(admission) == ["b"]
    assert admission.problems[0].path == "spec.storage"
    assert "12Gi of namespace a's 14Gi" in admission.problems[0].message
    assert refused(admit_domains(NamespaceLimits(max_storage=26 * GI), doms)) == []


def test_mailboxes_are_refused_one_by_one_by_count_and_by_total_quota() -> None:
    boxes = [
        box("m1", "d", t(1), quota="20Mi"),
        box("m2", "d", t(2), quota="30Mi"),
        box("m3", "e", t(3), quota="10Mi"),
    ]
    assert refused(admit_mailboxes(NamespaceLimits(max_mailboxes=2), boxes)) == ["m3"]
    by_quota = admit_mailboxes(NamespaceLimits(max_quota=30 * MI), boxes)
    assert refused(by_quota) == ["m2"]  # m3 still fits: 20Mi + 10Mi
    assert "maxQuota" in by_quota.problems[0].message
    assert refused(admit_mailboxes(NamespaceLimits(max_quota=60 * MI), boxes)) == []


def test_under_a_total_quota_a_mailbox_needs_a_quota_of_its_own() -> None:
    admission = admit_mailboxes(NamespaceLimits(max_quota=GI), [box("m1", "d", t(1))])
    assert refused(admission) == ["m1"]
    assert admission.problems[0].path == "spec.quota"
    assert refused(admit_mailboxes(NamespaceLimits(max_mailboxes=5), [box("m1", "d")])) == []


# --- in assemble ------------------------------------------------------------------------------


def test_assemble_refuses_over_the_limit_per_namespace_before_the_contest() -> None:
    grants = Grants(
        (
            policy("a", ["a"], limits={"maxMailDomains": 1, "maxMailboxes": 1}),
            policy("b", ["b"]),
        )
    )
    first, second = dom("one", t(1)), dom("two", t(2))
    # Namespace b claims "two" later: a's refused claim takes no part, b serves it.
    other = dom("two", t(3), ns="b")
    boxes = [box("m1", "one", t(1)), box("m2", "one", t(2))]
    services, problems = assemble([second, first, other], boxes, grants)
    served = sorted(s.domain.ref for s in services)
    assert served == ["MailDomain/a/one", "MailDomain/b/two"]
    assert [p.document for p in problems if p.kind == LIMIT_EXCEEDED] == [
        "MailDomain/a/two",
        "Mailbox/a/m2",
    ]
    one = next(s for s in services if s.domain.name == "one")
    assert [b.name for b in one.mailboxes] == ["m1"]


def test_mailboxes_of_a_refused_maildomain_do_not_count() -> None:
    grants = Grants((policy("a", ["a"], limits={"maxMailDomains": 1, "maxMailboxes": 1}),))
    boxes = [box("early", "two", t(1)), box("late", "one", t(2))]
    services, problems = assemble([dom("one", t(1)), dom("two", t(2))], boxes, grants)
    assert [b.name for s in services for b in s.mailboxes] == ["late"]
    limited = [p.document for p in problems if p.kind == LIMIT_EXCEEDED]
    assert limited == ["MailDomain/a/two"]  # "early" is refused for having no MailDomain


def test_mailstack_render_applies_the_limits_in_its_files(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "in.yaml").write_text(
        f"apiVersion: {API}\nkind: MailDomainPolicy\nmetadata: {{name: p}}\n"
        "spec: {namespaces: [a], domains: ['*.t.example'], limits: {maxMailDomains: 1}}\n"
        + "".join(
            f"---\napiVersion: {API}\nkind: MailDomain\n"
            f"metadata: {{name: {n}, namespace: a}}\nspec: {{domain: {n}.t.example}}\n"
            for n in ("one", "two")
        )
    )
    assert main(["render", "-f", str(tmp_path / "in.yaml")]) == 2
    err = capsys.readouterr().err
    assert "MailDomain/a/two" in err and "maxMailDomains exceeded" in err


# --- in a controller pass: the namespace view -------------------------------------------------


def raw(kind: str, name: str, created: str, spec: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": name, "namespace": "a", "uid": f"uid-{name}", "creationTimestamp": created}
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


def test_a_pass_counts_the_whole_namespace_and_names_the_reasons() -> None:
    from datetime import UTC, datetime

    from mailstack.controller import plan, reasons
    from mailstack.controller.conditions import mailbox_verdicts

    grants = Grants((policy("p", ["a"], limits={"maxMailDomains": 1, "maxMailboxes": 1}),))
    one = raw("MailDomain", "one", t(1), {"domain": "one.t.example"})
    two = raw("MailDomain", "two", t(2), {"domain": "two.t.example"})
    pw = {"name": "pw"}
    early = raw("Mailbox", "early", t(1), {"address": "e@one.t.example", "passwordSecretRef": pw})
    late = raw("Mailbox", "late", t(2), {"address": "l@one.t.example", "passwordSecretRef": pw})

    def render(doc: dict[str, Any], boxes: list[Any], view: bool) -> plan.Rendered:
        return plan.render_domain(
            plan.DomainInputs(
                domain=doc, siblings=[], mailboxes=boxes, secrets={},
                now=datetime(2026, 12, 7, tzinfo=UTC), grants=grants,
                namespace_domains=[one, two] if view else [],
                namespace_mailboxes=[early, late] if view else [],
            )
        )  # fmt: skip

    refused_domain = render(two, [], True)
    assert refused_domain.invalid_reason == reasons.LIMIT_EXCEEDED and refused_domain.withdrawn
    assert render(two, [], False).ok  # without the view it cannot know (hence the view)
    served = render(one, [late], True)  # "early" is in the view only, and it counts first
    assert served.ok and served.service is not None
    assert [b.name for b in served.service.mailboxes] == ["early"]
    verdicts = {v.name: v for v in mailbox_verdicts(served, [late], "one")}
    assert verdicts["late"].valid.reason == reasons.LIMIT_EXCEEDED
    assert verdicts["late"].ready.status == "False"
