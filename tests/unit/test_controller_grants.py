"""The operator's view of the MailDomainPolicies: changes, and a broken policy failing closed."""

from __future__ import annotations

from typing import Any

from mailstack.controller.grants import PolicySet


def policy(name: str, domains: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomainPolicy",
        "metadata": {"name": name},
        "spec": {"namespaces": ["tenant-a"], "domains": domains},
    }


def test_changes_are_reported_and_deletions_withdraw_the_grant() -> None:
    policies = PolicySet()
    assert not policies.grants.enforced
    assert policies.update("ADDED", policy("a", ["a.example"]))
    assert not policies.update("MODIFIED", policy("a", ["a.example"]))  # nothing new
    assert policies.grants.refusal("tenant-a", "a.example") is None
    assert policies.update("DELETED", policy("a", ["a.example"]))
    assert policies.grants.refusal("tenant-a", "a.example") is not None


def test_grants_stay_required_once_a_policy_was_seen() -> None:
    # The platform replaces its only policy (delete, then create): in between, no policy
    # exists, and the operator must not serve "as for a single team" (any name, any issuer).
    policies = PolicySet()
    assert not policies.grants.enforced  # a single team, never a policy: anything goes
    policies.update("ADDED", policy("a", ["a.example"]))
    policies.update("DELETED", policy("a", ["a.example"]))
    assert policies.grants.enforced
    assert policies.grants.refusal("tenant-a", "a.example") is not None


def test_a_policy_the_parser_refuses_keeps_grants_required() -> None:
    # The CRD let it through, the parser does not: it grants nothing, and as the only policy it
    # must not switch enforcement off (fail closed).
    policies = PolicySet()
    assert policies.update("ADDED", policy("typo", ["a.123"]))
    assert policies.grants.enforced
    assert policies.grants.refusal("tenant-a", "a.example") is not None
    assert policies.update("MODIFIED", policy("typo", ["a.example"]))
    assert policies.grants.refusal("tenant-a", "a.example") is None


def test_a_policy_replaced_under_another_name_or_an_invalid_one_deleted_keeps_grants_required() -> (
    None
):
    policies = PolicySet()
    policies.update("ADDED", policy("old", ["a.example"]))
    policies.update("DELETED", policy("old", ["a.example"]))
    policies.update("ADDED", policy("new", ["a.example"]))
    assert policies.grants.refusal("tenant-a", "a.example") is None
    assert policies.grants.refusal("tenant-b", "a.example") is not None
    invalid = PolicySet()
    invalid.update("ADDED", policy("typo", ["a.123"]))
    invalid.update("DELETED", policy("typo", ["a.123"]))
    assert invalid.grants.enforced


def test_after_a_restart_without_policies_require_grant_serves_nothing() -> None:
    assert PolicySet(required=True).grants.refusal("tenant-a", "a.example") is not None
