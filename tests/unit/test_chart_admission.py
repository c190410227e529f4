"""The chart's ValidatingAdmissionPolicy: the author of a MailDomain or Mailbox must be allowed to
get every Secret it refers to.

Its CEL is evaluated with cel-python against allowed and refused requests, with an
``authorizer`` implementing the part of the Kubernetes CEL authorizer library the policy uses
(``group().resource().namespace().name().check().allowed()``) over a table of who may read what,
and the strings extension's ``join``. The rendered objects are validated against the Kubernetes
schemas of the releases the chart claims; and a walk of the CRDs fails for a Secret reference
field the policy does not check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel

from tests.unit.test_chart import CHART, helm, kinds, render, run
from tests.unit.test_crds import root_schema, walk_schema

ALICE, MALLORY = "alice", "mallory"
# Who may get which Secret: (user, namespace) -> names.
READABLE: dict[tuple[str, str], set[str]] = {
    (ALICE, "tenant-a"): {"alice-pw", "relay", "relay-ca", "dns-key", "pull"},
    (MALLORY, "tenant-a"): set(),
}


def policy() -> dict[str, Any]:
    (found,) = kinds(render(), "ValidatingAdmissionPolicy")
    return found


# --- the authorizer library, backed by READABLE ------------------------------------------------


def _with(key: str) -> Callable[[Any, Any], celtypes.MapType]:
    def builder(receiver: Any, value: Any) -> celtypes.MapType:
        return celtypes.MapType({**receiver, celtypes.StringType(key): value})

    return builder


def _check(receiver: Any, verb: Any) -> celtypes.MapType:
    attributes = {str(k): str(v) for k, v in receiver.items()}
    resource = (attributes["group"], attributes["resource"])
    allowed = (
        resource == ("", "secrets")
        and str(verb) == "get"
        and attributes.get("name", "")
        in READABLE.get((attributes["user"], attributes["namespace"]), set())
    )
    return celtypes.MapType({celtypes.StringType("allowed"): celtypes.BoolType(allowed)})


def _allowed(decision: Any) -> celtypes.BoolType:
    return celtypes.BoolType(bool(decision[celtypes.StringType("allowed")]))


def _join(items: Any, separator: Any) -> celtypes.StringType:
    return celtypes.StringType(str(separator).join(str(item) for item in items))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "group": _with("group"),
    "resource": _with("resource"),
    "namespace": _with("namespace"),
    "name": _with("name"),
    "check": _check,
    "allowed": _allowed,
    "join": _join,
}
ENV = celpy.Environment()


@functools.cache
def program(expression: str) -> Any:
    return ENV.program(ENV.compile(expression), functions=FUNCTIONS)


def admit(user: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> str | None:
    """None when the policy admits the request, else its message."""
    spec = policy()["spec"]
    resource = obj["kind"].lower() + ("es" if obj["kind"] == "Mailbox" else "s")
    activation: dict[str, Any] = {
        "object": json_to_cel(dict(obj)),
        "oldObject": json_to_cel(dict(old) if old is not None else None),
        "request": json_to_cel(
            {
                "operation": "CREATE" if old is None else "UPDATE",
                "namespace": obj["metadata"]["namespace"],
                "resource": {"group": "mailstack.dev", "version": "v1alpha1", "resource": resource},
                "userInfo": {"username": user},
            }
        ),
        "authorizer": celtypes.MapType({celtypes.StringType("user"): celtypes.StringType(user)}),
    }
    variables: dict[str, Any] = {}
    for variable in spec["variables"]:
        activation["variables"] = celtypes.MapType(variables)
        value = program(variable["expression"]).evaluate(activation)
        assert not isinstance(value, Exception), (variable["name"], value)
        variables[celtypes.StringType(variable["name"])] = value
    activation["variables"] = celtypes.MapType(variables)
    for validation in spec["validations"]:
        if not program(validation["expression"]).evaluate(activation):
            return str(program(validation["messageExpression"]).evaluate(activation))
    return None


def maildomain(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "example", "namespace": "tenant-a"},
        "spec": {"domain": "example.com", **spec},
    }


def mailserver(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailServer",
        "metadata": {"name": "shared", "namespace": "tenant-a"},
        "spec": {"hostname": "mx.example.com", **spec},
    }


def mailbox(secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "Mailbox",
        "metadata": {"name": "alice", "namespace": "tenant-a"},
        "spec": {"address": "alice@example.com", "passwordSecretRef": {"name": secret}},
    }


MAY_READ = (
    "MailDomain, MailServer or Mailbox may refer only to Secrets its author may read (the "
    "operator reads them)"
)
RELAY = {
    "host": "smtp.example.net",
    "credentialsSecretRef": {"name": "relay"},
    "caSecretRef": {"name": "relay-ca"},
}


def test_a_mailbox_may_name_only_a_secret_its_author_may_get() -> None:
    assert admit(ALICE, mailbox("alice-pw")) is None
    assert admit(MALLORY, mailbox("alice-pw")) == (
        "you may not get Secret alice-pw of namespace tenant-a, which this Mailbox refers to: a "
        + MAY_READ
    )
    assert admit(ALICE, mailbox("someone-elses")) is not None


def test_a_maildomain_names_every_unreadable_secret() -> None:
    dns = {
        "provider": {
            "powerdns": {"apiUrl": "https://pdns.example", "apiKeySecretRef": {"name": "dns-key"}}
        }
    }
    assert admit(ALICE, maildomain()) is None  # no reference: nothing to check
    assert admit(MALLORY, maildomain()) is None
    assert admit(ALICE, maildomain(relay=RELAY, dns=dns)) is None
    message = admit(MALLORY, maildomain(relay=RELAY, dns=dns))
    assert message is not None
    assert message.startswith("you may not get Secret relay, relay-ca, dns-key of namespace ")
    assert "this MailDomain refers to" in message


UPDATE_NOTE = "; a change of the spec is checked against every Secret it refers to"


def test_an_update_of_metadata_or_status_only_is_not_checked() -> None:
    before = maildomain(relay=RELAY)
    # kubectl label, kopf's finalizer and annotations, the operator's status: no spec change.
    relabelled = {**before, "metadata": {**before["metadata"], "labels": {"team": "a"}}}
    assert admit(MALLORY, relabelled, old=before) is None
    kopf_update = {
        **before,
        "metadata": {
            **before["metadata"],
            "finalizers": ["mailstack.dev/finalizer"],
            "annotations": {"mailstack.dev/last-handled-configuration": "{}"},
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert admit(MALLORY, kopf_update, old=before) is None
    assert admit(MALLORY, mailbox("alice-pw"), old=mailbox("alice-pw")) is None


def test_a_spec_change_is_checked_against_every_secret_it_refers_to() -> None:
    before = maildomain(relay=RELAY)
    # A reference changed to another Secret.
    moved = maildomain(relay={**RELAY, "credentialsSecretRef": {"name": "stolen"}})
    assert admit(MALLORY, moved, old=before) == (
        "you may not get Secret stolen, relay-ca of namespace tenant-a, which this MailDomain "
        "refers to: a " + MAY_READ + UPDATE_NOTE
    )
    assert admit(MALLORY, mailbox("other"), old=mailbox("alice-pw")) is not None
    # A change of a field that names no Secret, by someone who may get them all: admitted.
    bigger = maildomain(relay=RELAY, storage={"mailboxes": "20Gi"})
    assert admit(ALICE, bigger, old=before) is None
    # ... and by someone who may get none, when the spec names no Secret.
    assert admit(MALLORY, maildomain(storage={"mailboxes": "20Gi"}), old=maildomain()) is None


# The outside check's attacks: the MailDomain was created by ALICE (who may get "relay" and
# "dns-key"); MALLORY may update MailDomains but may get no Secret. Each update keeps the names
# of the Secrets and changes where they go or what they are used for.
TSIG = {
    "provider": {
        "rfc2136": {
            "server": "ns1.example.net",
            "tsigKeyName": "k",
            "tsigSecretRef": {"name": "dns-key"},
        }
    }
}


def _powerdns(url: str) -> dict[str, Any]:
    return {"provider": {"powerdns": {"apiUrl": url, "apiKeySecretRef": {"name": "dns-key"}}}}


def test_a_kept_relay_secret_may_not_be_pointed_at_another_host() -> None:
    relay = {"host": "smtp.example.net", "credentialsSecretRef": {"name": "relay"}}
    before = maildomain(relay=relay)
    assert admit(ALICE, before) is None
    assert admit(MALLORY, before) is not None
    # Postfix would log in to smtp.mallory.example with relay's username and password.
    after = maildomain(relay={**relay, "host": "smtp.mallory.example"})
    assert admit(MALLORY, after, old=before) == (
        "you may not get Secret relay of namespace tenant-a, which this MailDomain refers to: a "
        + MAY_READ
        + UPDATE_NOTE
    )
    assert admit(ALICE, after, old=before) is None


def test_a_tsig_key_may_not_be_moved_into_the_relay_password() -> None:
    # A TSIG key only signs updates (HMAC); as the relay password it is sent in the SASL exchange.
    before = maildomain(dns=TSIG)
    stolen = {"name": "dns-key", "usernameKey": "secret", "passwordKey": "secret"}
    after = maildomain(relay={"host": "smtp.mallory.example", "credentialsSecretRef": stolen})
    message = admit(MALLORY, after, old=before)
    assert message is not None and message.startswith("you may not get Secret dns-key of ")


def test_a_kept_dns_api_key_may_not_be_sent_to_another_url() -> None:
    before = maildomain(dns=_powerdns("https://pdns.example.net"))
    # The PowerDNS API key goes in the X-API-Key header to pdns.mallory.example.
    after = maildomain(dns=_powerdns("https://pdns.mallory.example"))
    message = admit(MALLORY, after, old=before)
    assert message is not None and message.startswith("you may not get Secret dns-key of ")
    assert admit(ALICE, after, old=before) is None


# --- every Secret reference of the CRDs is checked -----------------------------------------------


def secret_references(kind: str) -> Iterator[tuple[list[str], bool]]:
    """(path, is a list) of every field of ``kind`` that names a Secret: ``*SecretRef`` objects
    and arrays of ``{name}`` items whose field name ends in ``Secrets``."""
    for path, node in walk_schema(root_schema(kind)):
        field = path.rpartition(".")[2]
        parts = path.lstrip(".").split(".")
        if field.lower().endswith("secretref") and "name" in node.get("properties", {}):
            yield parts, False
        items = node.get("items") or {}
        if field.endswith("Secrets") and "name" in items.get("properties", {}):
            yield parts, True


def _object_with(kind: str, parts: list[str], is_list: bool) -> dict[str, Any]:
    doc = {"Mailbox": mailbox("x"), "MailServer": mailserver()}.get(kind) or maildomain()
    doc["spec"].pop("passwordSecretRef", None)
    node: dict[str, Any] = doc
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = [{"name": "unreadable"}] if is_list else {"name": "unreadable"}
    return doc


@pytest.mark.parametrize("kind", ["MailDomain", "MailServer", "Mailbox"])
def test_every_secret_reference_of_the_crds_is_checked(kind: str) -> None:
    found = list(secret_references(kind))
    assert found, f"no Secret reference found in the {kind} CRD: the walk is broken"
    for parts, is_list in found:
        message = admit(MALLORY, _object_with(kind, parts, is_list))
        assert message is not None and "Secret unreadable " in message, (
            f"{kind} .{'.'.join(parts)} is not checked by the ValidatingAdmissionPolicy "
            "(charts/mailstack/templates/admission.yaml)"
        )


def test_the_walk_sees_the_known_references() -> None:
    paths = {".".join(p) for p, _ in secret_references("MailDomain")}
    assert {"spec.relay.credentialsSecretRef", "spec.dns.provider.route53.credentialsSecretRef",
            "spec.pods.imagePullSecrets"} <= paths  # fmt: skip
    assert {".".join(p) for p, _ in secret_references("Mailbox")} == {"spec.passwordSecretRef"}
    assert {".".join(p) for p, _ in secret_references("MailServer")} == {
        "spec.relay.credentialsSecretRef",
        "spec.relay.caSecretRef",
        "spec.pods.imagePullSecrets",
    }


def test_a_mailserver_names_every_unreadable_secret_of_its_relay() -> None:
    assert admit(MALLORY, mailserver()) is None  # no reference: nothing to check
    assert admit(ALICE, mailserver(relay=RELAY)) is None
    message = admit(MALLORY, mailserver(relay=RELAY))
    assert message is not None
    assert "you may not get Secret relay, relay-ca of namespace tenant-a" in message
    assert "which this MailServer refers to" in message


# --- the rendered objects ------------------------------------------------------------------------


def _admission_objects(version: str, *extra: str) -> list[dict[str, Any]]:
    args = [helm(), "template", "mailstack", str(CHART), "--kube-version", f"{version}.0"]
    out = run(*args, *extra, "--show-only", "templates/admission.yaml", check=False).stdout
    return [d for d in yaml.safe_load_all(out) if d]


BETA_API = "admissionregistration.k8s.io/v1beta1/ValidatingAdmissionPolicy"


@pytest.mark.parametrize(
    ("version", "extra", "api_version"),
    [
        ("1.30", (), "admissionregistration.k8s.io/v1"),
        ("1.33", (), "admissionregistration.k8s.io/v1"),
        ("1.29", ("--api-versions", BETA_API), "admissionregistration.k8s.io/v1beta1"),
        ("1.28", ("--api-versions", BETA_API), "admissionregistration.k8s.io/v1beta1"),
        ("1.28", (), None),  # the beta API not served: nothing rendered
    ],
)
def test_the_policy_and_binding_are_valid_kubernetes_objects(
    version: str, extra: tuple[str, ...], api_version: str | None
) -> None:
    docs = _admission_objects(version, *extra)
    if api_version is None:
        assert docs == []
        return
    assert [(d["apiVersion"], d["kind"]) for d in docs] == [
        (api_version, "ValidatingAdmissionPolicy"),
        (api_version, "ValidatingAdmissionPolicyBinding"),
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    vap, binding = docs
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert vap["spec"]["failurePolicy"] == "Fail"
    (rule,) = vap["spec"]["matchConstraints"]["resourceRules"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    assert set(rule["resources"]) == {"maildomains", "mailboxes", "mailservers"}


def test_the_policy_can_be_switched_off() -> None:
    assert kinds(render(), "ValidatingAdmissionPolicyBinding")
    off = render("admission.secretAccess.enabled=false")
    assert not kinds(off, "ValidatingAdmissionPolicy")
    assert not kinds(off, "ValidatingAdmissionPolicyBinding")
