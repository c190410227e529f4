"""A MailDomain whose spec does not parse: its last objects stay only while its namespace may
still hold its names (``controller.unparsed``, ``plan.render_domain``)."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.api.policy import Grants, parse_policy
from mailstack.controller import plan
from mailstack.controller.conditions import rendered_condition, valid_condition
from tests.unit.test_controller import NOW, domain_doc
from tests.unit.test_policy import policy_doc

# Refused by the operator's parser, accepted by the CRD before its rule on serverRef.
BROKEN: dict[str, dict[str, Any]] = {
    "serverRef+relay": {"serverRef": {"name": "shared"}, "relay": {"host": "smtp.example.net"}},
    "serverRef+limits": {"serverRef": {"name": "shared"}, "limits": {"messageSize": "1Mi"}},
}
OURS = parse_policy(policy_doc("a", ["default"], ["example.org", "*.example.org"]))
OTHERS = parse_policy(policy_doc("b", ["tenant-b"], ["example.org", "*.example.org"]))


def rendered(doc: dict[str, Any], *policies: Any, siblings: Any = ()) -> plan.Rendered:
    inputs = plan.DomainInputs(
        domain=doc, siblings=siblings, mailboxes=[], secrets={}, now=NOW, grants=Grants(policies)
    )
    return plan.render_domain(inputs)


@pytest.mark.parametrize("broken", list(BROKEN))
def test_an_ungranted_maildomain_is_withdrawn_even_when_its_spec_does_not_parse(
    broken: str,
) -> None:
    # The platform moved example.org to tenant-b: the parse error must not keep default's
    # StatefulSets, Certificate and DNSEndpoint for it.
    out = rendered(domain_doc(**BROKEN[broken]), OTHERS)
    assert out.withdrawn and out.invalid_reason == "DomainNotGranted"
    assert not out.serves_mailboxes
    message = valid_condition(out).message
    assert message.startswith("spec.domain: no MailDomainPolicy grants namespace default")
    assert len(out.domain_problems) > 1  # the parse problems are still reported
    assert "what made it serve is removed" in rendered_condition(out, None).message


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_granted_maildomain_whose_spec_does_not_parse_keeps_its_last_objects(
    broken: str,
) -> None:
    for policies in [(OURS,), ()]:  # granted, or no policies at all (a single team)
        out = rendered(domain_doc(**BROKEN[broken]), *policies)
        assert not out.valid and not out.withdrawn and out.invalid_reason == "InvalidSpec"
        assert "the objects of the last valid spec stay" in rendered_condition(out, None).message


def test_an_ungranted_or_invalid_host_name_withdraws_an_unparsed_spec() -> None:
    only_domain = parse_policy(policy_doc("a", ["default"], ["example.org"]))
    broken = BROKEN["serverRef+relay"]
    out = rendered(domain_doc(hostname="mx.example.org", **broken), only_domain)
    assert out.invalid_reason == "DomainNotGranted" and out.withdrawn
    assert valid_condition(out).message.startswith("spec.hostname: no MailDomainPolicy grants")
    out = rendered(domain_doc(hostname="MX.example.org", **broken), OURS)
    assert out.invalid_reason == "DomainNotGranted" and out.withdrawn
    # Without policies a name is granted to all: only the parse error is reported.
    assert not rendered(domain_doc(hostname="MX.example.org", **broken)).withdrawn


def test_an_invalid_domain_name_under_policies_is_granted_to_no_one() -> None:
    doc = domain_doc(**BROKEN["serverRef+relay"])
    doc["spec"]["domain"] = "Example.org"
    out = rendered(doc, OURS)
    assert out.withdrawn and out.invalid_reason == "DomainNotGranted"


def test_an_unparsed_spec_whose_domain_another_maildomain_serves_now_is_withdrawn() -> None:
    # An invalid claim holds nothing: a younger MailDomain of tenant-b wins example.org, and
    # the older one must not go on serving it beside it.
    rival = domain_doc()
    rival["metadata"] = {"name": "b", "namespace": "tenant-b", "uid": "u-b", "generation": 1}
    out = rendered(domain_doc(**BROKEN["serverRef+limits"]), OURS, OTHERS, siblings=[rival])
    assert out.withdrawn and out.invalid_reason == "DomainConflict"
    assert "served by MailDomain/tenant-b/b now" in valid_condition(out).message
    # A rival that is refused itself (not granted) serves nothing: the last objects stay.
    out = rendered(domain_doc(**BROKEN["serverRef+limits"]), OURS, siblings=[rival])
    assert not out.withdrawn and out.invalid_reason == "InvalidSpec"
