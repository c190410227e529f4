"""The MailDomain and Mailbox CRDs: structure, schema, CEL rules, and parity with the parser.

There is no API server here, so the test emulates what one does with a custom resource:

- prune nulls and apply the schema's ``default`` values (``apply_defaults``);
- validate against the openAPIV3Schema with jsonschema, treating unknown fields as errors (what
  ``kubectl apply`` asks for with its default ``--validate=strict``) and patterns as RE2;
- evaluate every ``x-kubernetes-validations`` rule at its node with cel-python, with ``oldSelf``
  bound for transition rules on updates, and the few Kubernetes CEL string-extension functions the
  rules use (``indexOf``, ``substring``).

The source of truth is ``mailstack.api.parse``: the CRD must accept exactly the documents the
parser accepts. Where they differ because of a known parser bug, the parser side of the case is
marked ``xfail`` (see ``PARSER_ACCEPTS``); it reports XPASS once the parser is fixed.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailstack.api import parse as parser
from mailstack.api import validate as v
from mailstack.api.errors import FieldError, ValidationError
from mailstack.api.parse.common import host_or_ip
from mailstack.api.parse.server import parse_mailserver
from mailstack.api.policy import parse_policy
from mailstack.api.quantities import quantity
from tests.apiserver_dialects import RE2Validator, cel_program

ROOT = Path(__file__).resolve().parents[2]
CRD_FILES = {
    "MailDomain": ROOT / "crds" / "maildomain.yaml",
    "Mailbox": ROOT / "crds" / "mailbox.yaml",
    "MailDomainPolicy": ROOT / "crds" / "maildomainpolicy.yaml",
    "MailServer": ROOT / "crds" / "mailserver.yaml",
}
CASES = ROOT / "tests" / "crd_cases"
API_VERSION = "mailstack.dev/v1alpha1"

Doc = dict[str, Any]
Schema = dict[str, Any]
_MISSING: Any = object()
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# ------------------------------------------------------------------------------------------------
# Loading


@functools.cache
def crd(kind: str) -> Doc:
    docs = [d for d in yaml.load_all(CRD_FILES[kind].read_text(), Loader=_Loader) if d]
    assert len(docs) == 1, f"{CRD_FILES[kind].name} must hold exactly one document"
    result: Doc = docs[0]
    return result


def root_schema(kind: str) -> Schema:
    schema: Schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk_schema(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its path (``.spec.aliases[*]``, ``.spec.service.annotations{}``)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk_schema(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk_schema(node["additionalProperties"], f"{path}{{}}")
    if isinstance(node.get("items"), dict):
        yield from walk_schema(node["items"], f"{path}[*]")


def load_documents(path: Path) -> list[Doc]:
    return [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if isinstance(d, dict)]


def example_documents() -> list[tuple[str, Doc]]:
    found = []
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        for index, doc in enumerate(load_documents(path)):
            if doc.get("kind") in CRD_FILES:
                found.append((f"{path.relative_to(ROOT)}#{index}", doc))
    return found


# ------------------------------------------------------------------------------------------------
# What the API server does: prune nulls, default, validate the schema, run the CEL rules


def apply_defaults(node: Schema, value: Any) -> Any:
    """Drop nulls of non-nullable fields, then fill in defaults, top-down (as the API server)."""
    if isinstance(value, dict) and node.get("type") == "object":
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key in list(value):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if value[key] is None and sub is not None and not sub.get("nullable"):
                del value[key]
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(sub, value[key])
        if isinstance(extra, dict):
            for key in value:
                apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            apply_defaults(node["items"], item)
    return value


def to_jsonschema(node: Any) -> Any:
    """A structural schema as plain JSON Schema: closed objects, sets as uniqueItems."""
    if isinstance(node, list):
        return [to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key == "x-kubernetes-list-type" and value == "set":
            out["uniqueItems"] = True
        elif key.startswith("x-kubernetes-") or key in ("description", "default"):
            continue
        elif key == "properties":
            out[key] = {name: to_jsonschema(sub) for name, sub in value.items()}
        else:
            out[key] = to_jsonschema(value)
    if node.get("type") == "object" and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


def schema_validator(node: Schema, *, root: bool = False) -> Any:
    converted = to_jsonschema(node)
    if root:
        # Only metadata.name is constrained; the API server owns the rest of ObjectMeta.
        converted["properties"]["metadata"].pop("additionalProperties", None)
    return RE2Validator(converted, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@functools.cache
def document_validator(kind: str) -> Any:
    return schema_validator(root_schema(kind), root=True)


def typed(node: Schema, value: Any) -> Any:
    """The value as CEL sees it: `number` fields are doubles even when written as integers."""
    if node.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        return {
            k: typed(props.get(k, extra if isinstance(extra, dict) else {}), item)
            for k, item in value.items()
        }
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [typed(node["items"], item) for item in value]
    return value


_CEL_RESULTS: dict[tuple[str, str], Any] = {}


def cel_evaluate(expression: str, self_value: Any, old_value: Any = _MISSING) -> Any:
    """One evaluation; memoised, as cel-python is slow and the cases share most of their values."""
    values = [self_value] if old_value is _MISSING else [self_value, old_value]
    key = (expression, json.dumps(values, sort_keys=True))
    if key not in _CEL_RESULTS:
        activation = {"self": json_to_cel(self_value)}
        if old_value is not _MISSING:
            activation["oldSelf"] = json_to_cel(old_value)
        try:
            _CEL_RESULTS[key] = cel_program(expression).evaluate(activation)
        except (CELEvalError, ValueError, TypeError, KeyError) as err:
            _CEL_RESULTS[key] = err
    result = _CEL_RESULTS[key]
    if isinstance(result, Exception):
        raise result
    return result


def is_transition_rule(rule: Mapping[str, Any]) -> bool:
    return re.search(r"\boldSelf\b", rule["rule"]) is not None


def cel_errors(node: Schema, value: Any, old: Any = _MISSING, path: str = "") -> list[str]:
    """Evaluate every rule under ``node`` against ``value`` (and ``old`` for transition rules)."""
    errors: list[str] = []
    for rule in node.get("x-kubernetes-validations", []):
        if is_transition_rule(rule) and old is _MISSING:
            continue
        args = (typed(node, value), typed(node, old) if is_transition_rule(rule) else _MISSING)
        where = (path + rule.get("fieldPath", "")) or "<root>"
        try:
            ok = cel_evaluate(rule["rule"], *args)
        except (CELEvalError, ValueError, TypeError, KeyError) as err:
            errors.append(f"{where}: rule {rule['rule']!r} failed to evaluate: {err}")
            continue
        if ok is not True and ok != celtypes.BoolType(True):
            if "messageExpression" in rule:
                message = str(cel_evaluate(rule["messageExpression"], *args))
            else:
                message = rule.get("message", f"failed rule: {rule['rule']}")
            errors.append(f"{where}: {message}")
    if isinstance(value, dict):
        for key, sub in node.get("properties", {}).items():
            if key in value:
                old_sub = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
                errors += cel_errors(sub, value[key], old_sub, f"{path}.{key}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                old_sub = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
                errors += cel_errors(extra, item, old_sub, f"{path}[{key!r}]")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        # Items of atomic lists and sets are not correlated with the old object.
        for index, item in enumerate(value):
            errors += cel_errors(node["items"], item, _MISSING, f"{path}[{index}]")
    return errors


# Schema errors after which the API server does not run the CEL rules (pattern errors are not).
_BLOCKING = {"type", "required", "enum", "maxLength", "maxItems", "maxProperties"}


def is_blocking(error: jsonschema.ValidationError) -> bool:
    if error.validator == "anyOf":  # an int-or-string of neither type is a type error
        return any("type" in sub for sub in error.validator_value)
    return error.validator in _BLOCKING


def node_errors(validator: Any, node: Schema, value: Any, old: Any = _MISSING) -> list[str]:
    found = list(validator.iter_errors(value))
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]
    if any(is_blocking(e) for e in found):
        errors.append("some validation rules were not checked because the object was invalid")
    else:
        errors += cel_errors(node, value, old)
    return errors


def crd_errors(doc: Doc, old: Doc | None = None) -> list[str]:
    """Everything the API server would refuse in ``doc`` (an update of ``old`` if given)."""
    kind = doc["kind"]
    schema = root_schema(kind)
    value = apply_defaults(schema, copy.deepcopy(doc))
    previous = _MISSING if old is None else apply_defaults(schema, copy.deepcopy(old))
    return node_errors(document_validator(kind), schema, value, previous)


def parser_errors(doc: Doc) -> list[str]:
    parse = PARSERS[doc["kind"]]
    try:
        parse(doc)
    except ValidationError as err:
        return [str(p) for p in err.problems]
    return []


# ------------------------------------------------------------------------------------------------
# Cases


PARSERS: dict[str, Callable[[Doc], object]] = {
    "MailDomain": parser.parse_maildomain,
    "Mailbox": parser.parse_mailbox,
    "MailDomainPolicy": parse_policy,
    "MailServer": parse_mailserver,
}


def policy(name: str = "tenant-a", **spec: Any) -> Doc:
    return {
        "apiVersion": API_VERSION,
        "kind": "MailDomainPolicy",
        "metadata": {"name": name},
        "spec": {"namespaces": ["tenant-a"], "domains": ["tenant-a.example"], **spec},
    }


def maildomain(name: str = "example", **spec: Any) -> Doc:
    return {
        "apiVersion": API_VERSION,
        "kind": "MailDomain",
        "metadata": {"name": name},
        "spec": {"domain": "example.com", **spec},
    }


def mailbox(name: str = "bob", **spec: Any) -> Doc:
    return {
        "apiVersion": API_VERSION,
        "kind": "Mailbox",
        "metadata": {"name": name},
        "spec": {
            "address": "bob@example.com",
            "passwordSecretRef": {"name": "bob-password"},
            **spec,
        },
    }


RFC2136 = {
    "server": "ns1.example.com",
    "tsigKeyName": "mailstack",
    "tsigSecretRef": {"name": "tsig"},
}

INLINE_GOOD: list[tuple[str, Doc]] = [
    ("minimal-maildomain", maildomain()),
    ("maildomain-nulls-are-pruned", maildomain(hostname=None, tls={"issuer": None})),
    ("maildomain-rfc2136-minimal", maildomain(dns={"provider": {"rfc2136": RFC2136}})),
    (
        "maildomain-cert-manager-minimal",
        maildomain(tls={"issuer": "certManager", "certManager": {"issuerRef": {"name": "le"}}}),
    ),
    (
        "maildomain-acme-minimal",
        maildomain(tls={"issuer": "acme", "acme": {"email": "hostmaster@example.com"}}),
    ),
    (
        "maildomain-tsig-key-single-label-numeric",
        maildomain(dns={"provider": {"rfc2136": {**RFC2136, "tsigKeyName": "123"}}}),
    ),
    ("maildomain-relay-ipv4", maildomain(relay={"host": "192.0.2.1"})),
    ("maildomain-relay-ipv6-mapped", maildomain(relay={"host": "::ffff:192.0.2.1"})),
    (
        "maildomain-relay-ca-only",
        maildomain(relay={"host": "smtp.example.net", "caSecretRef": {"name": "relay-ca"}}),
    ),
    ("maildomain-message-size-bytes", maildomain(limits={"messageSize": 1024})),
    ("maildomain-message-size-max", maildomain(limits={"messageSize": "2147483648"})),
    ("maildomain-message-size-k", maildomain(limits={"messageSize": "2k"})),
    (
        "maildomain-thresholds-integers",
        maildomain(spam={"thresholds": {"addHeader": 0, "reject": 1}}),
    ),
    ("maildomain-thresholds-only-reject", maildomain(spam={"thresholds": {"reject": 7}})),
    ("maildomain-catch-all-address", maildomain(catchAll="alice@example.com")),
    ("maildomain-local-part-numeric-segment", maildomain(catchAll="a.1", aliases={"x.2": ["a.1"]})),
    ("maildomain-local-part-64", maildomain(catchAll="a" * 64)),
    ("maildomain-domain-253", maildomain(domain=".".join(["a" * 63] * 3 + ["b" * 61]))),
    (
        "maildomain-report-address-mailto-64",
        maildomain(dns={"dmarc": {"rua": ["mailto:" + "r" * 64 + "@example.com"]}}),
    ),
    ("minimal-mailbox", mailbox()),
    ("mailbox-aliases-bare-and-full", mailbox(aliases=["b", "b.x@example.com", "postmaster"])),
    ("mailbox-forward-keep-copy", mailbox(forwardTo=["bob@example.net"], keepCopy=True)),
    ("mailbox-quota-int", mailbox(quota=1048576)),
    ("mailbox-quota-ti", mailbox(quota="1Ti")),
    ("mailbox-sieve-unicode", mailbox(sieve="# Grüße\nkeep;\n")),
    ("mailbox-sieve-max-bytes", mailbox(sieve="k" * 65536)),
    ("mailbox-display-name-128", mailbox(displayName="é" * 128)),
    ("mailbox-hashed-key", mailbox(passwordSecretRef={"name": "s.1", "key": "Pass_word.1-x"})),
]


@functools.cache
def fixture_documents() -> list[tuple[str, Doc]]:
    found = []
    for path in sorted(CASES.glob("*.yaml")):
        for doc in load_documents(path):
            found.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return found


GOOD: list[tuple[str, Doc]] = INLINE_GOOD + fixture_documents() + example_documents()


def xfail(reason: str) -> pytest.MarkDecorator:
    # Not strict: the parser (api.parse) is being fixed in parallel. An XPASS means it now agrees
    # with the CRD, and the case can leave PARSER_ACCEPTS.
    return pytest.mark.xfail(strict=False, reason=reason)


# Known differences: the CRD refuses these documents, the parser accepts them (see the report of
# the CRD change for the proposed parser fixes).
TRAILING_NEWLINE = "parser bug: validators use re.match(...$), and $ matches before a final \\n"
EMPTY_SECRET_REF = "parser bug: an empty secret reference {} is accepted without a name"
EMPTY_RELAY_CREDENTIALS = "parser bug: relay.credentialsSecretRef {} is taken as no credentials"
IPV6_ZONE = "parser bug: ipaddress accepts an IPv6 zone index (%eth0)"
STRING_ALIAS = "parser leniency: a single string is accepted where a list of targets is expected"
INT_LOCAL_PART = "parser leniency: a bare integer is accepted as a local part"
PARSER_ACCEPTS: dict[str, str] = {}

NO_MATCH = "does not match"
UNKNOWN = "Additional properties are not allowed"
TOO_SMALL = "less than the minimum"
NOT_ONE_OF = "is not one of"
TLD = "the top-level label of a domain name cannot be numeric"
TLD_OF_ADDRESS = "the top-level label of the domain cannot be numeric"
LONG_LOCAL = "the local part is longer than 64 characters"
ALIAS_NAME = "alias names must be local parts"
ONE_PROVIDER = "set exactly one provider"
KEEP_COPY = "keepCopy is only meaningful with forwardTo"
NOT_GREATER = "must be greater than addHeader"
NAMED_BY_HOST_NAME = "must be given by its host name, not an IP address"


LABEL_KEYS = "label keys must be valid"
OPERATOR_KEYS = "keys are the operator's"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
SPREAD = {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}


def pods_quantity(value: Any) -> Doc:
    return maildomain(pods={"resources": {"postfix": {"limits": {"memory": value}}}})


def pods_toleration(**toleration: Any) -> Doc:
    return maildomain(pods={"tolerations": [toleration]})


def pods_node_requirement(operator: str, values: list[str] | None = None) -> Doc:
    requirement = {"key": "k", "operator": operator, **({"values": values} if values else {})}
    terms = [{"matchExpressions": [requirement]}]
    return maildomain(pods={"affinity": {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": terms}}}})


def required(field: str) -> str:
    return f"{field!r} is a required property"


def provider(**settings: Any) -> dict[str, Any]:
    return {"provider": settings}


def without(doc: Doc, key: str, path: tuple[str, ...] = ()) -> Doc:
    result = copy.deepcopy(doc)
    target = result
    for part in path:
        target = target[part]
    del target[key]
    return result


# (id, document, text expected in one of the CRD's errors)
BAD: list[tuple[str, Doc, str]] = [
    # The platform's policies
    ("policy-no-namespaces", policy(namespaces=[]), "should be non-empty"),
    ("policy-no-domains", policy(domains=[]), "should be non-empty"),
    ("policy-bad-namespace", policy(namespaces=["Tenant_A"]), NO_MATCH),
    ("policy-uppercase-domain", policy(domains=["Tenant-A.example"]), NO_MATCH),
    ("policy-bare-wildcard", policy(domains=["*"]), NO_MATCH),
    ("policy-inner-wildcard", policy(domains=["a.*.example"]), NO_MATCH),
    ("policy-wildcard-tld", policy(domains=["*.com"]), NO_MATCH),
    ("policy-numeric-tld", policy(domains=["tenant.123"]), TLD),
    ("policy-unknown-field", policy(quotas={}), UNKNOWN),
    ("policy-limit-negative", policy(limits={"maxMailboxes": -1}), TOO_SMALL),
    ("policy-limit-size", policy(limits={"maxQuota": "10GB"}), NO_MATCH),
    ("policy-limit-unknown", policy(limits={"maxUsers": 3}), UNKNOWN),
    ("policy-service-type", policy(service={"types": ["ExternalName"]}), "not one of"),
    ("policy-exposure-unknown", policy(service={"exposures": ["Ingress"]}), "not one of"),
    ("policy-no-exposures", policy(service={"exposures": []}), "should be non-empty"),
    ("policy-service-no-types", policy(service={"types": []}), "should be non-empty"),
    ("policy-annotation-key", policy(service={"annotations": ["bad key"]}), NO_MATCH),
    ("policy-annotation-inner-star", policy(service={"annotations": ["a*/b"]}), NO_MATCH),
    # The domain and the metadata
    ("uppercase-domain", maildomain(domain="Example.com"), NO_MATCH),
    ("idn-without-punycode", maildomain(domain="bücher.example"), NO_MATCH),
    ("single-label-domain", maildomain(domain="localhost"), NO_MATCH),
    ("trailing-dot-domain", maildomain(domain="example.com."), NO_MATCH),
    ("numeric-tld", maildomain(domain="example.123"), TLD),
    ("label-too-long", maildomain(domain="a" * 64 + ".com"), NO_MATCH),
    ("domain-too-long", maildomain(domain=".".join(["a" * 63] * 4)), "is too long"),
    ("domain-leading-hyphen", maildomain(domain="-x.example.com"), NO_MATCH),
    ("domain-trailing-newline", maildomain(domain="example.com\n"), NO_MATCH),
    ("domain-missing", without(maildomain(), "domain", ("spec",)), required("domain")),
    ("spec-missing", without(maildomain(), "spec"), required("spec")),
    ("name-too-long", {**maildomain(), "metadata": {"name": "a" * 49}}, "is too long"),
    ("name-not-dns-label", {**maildomain(), "metadata": {"name": "1st"}}, NO_MATCH),
    ("hostname-uppercase", maildomain(hostname="MAIL.example.com"), NO_MATCH),
    # Unknown fields
    ("unknown-spec-field", maildomain(domains=["example.com"]), UNKNOWN),
    ("unknown-nested-field", maildomain(limits={"maxSize": "10Mi"}), UNKNOWN),
    ("unknown-provider", maildomain(dns=provider(bind={})), UNKNOWN),
    ("unknown-field-in-empty-provider", maildomain(dns=provider(manual={"x": 1})), UNKNOWN),
    # Aliases and addresses
    ("alias-name-with-space", maildomain(aliases={"sales team": ["bob"]}), ALIAS_NAME),
    ("alias-name-with-quote", maildomain(aliases={'"sales"': ["bob"]}), ALIAS_NAME),
    ("alias-name-with-newline", maildomain(aliases={"sa\nles": ["bob"]}), ALIAS_NAME),
    ("alias-name-double-dot", maildomain(aliases={"sa..les": ["bob"]}), ALIAS_NAME),
    ("alias-name-uppercase", maildomain(aliases={"Sales": ["bob"]}), ALIAS_NAME),
    ("alias-name-too-long", maildomain(aliases={"a" * 65: ["bob"]}), ALIAS_NAME),
    ("alias-without-targets", maildomain(aliases={"sales": []}), "should be non-empty"),
    ("alias-target-string", maildomain(aliases={"sales": "bob"}), "is not of type 'array'"),
    ("alias-target-with-space", maildomain(aliases={"sales": ["bob smith"]}), NO_MATCH),
    (
        "alias-target-own-domain-uppercase",
        maildomain(aliases={"sales": ["Bob@example.com"]}),
        "alias targets on the domain itself",
    ),
    (
        "alias-target-own-domain-plus",
        maildomain(aliases={"sales": ["bob+x@example.com"]}),
        "alias targets on the domain itself",
    ),
    ("alias-target-duplicate", maildomain(aliases={"sales": ["bob", "bob"]}), "non-unique"),
    ("catch-all-other-domain", maildomain(catchAll="bob@example.net"), "is not on the domain"),
    ("catch-all-integer", maildomain(catchAll=1234), "is not of type 'string'"),
    (
        "postmaster-own-domain-plus",
        maildomain(postmaster="post+master@example.com"),
        "an address on the domain itself",
    ),
    ("postmaster-quoted", maildomain(postmaster='"post master"@example.net'), NO_MATCH),
    # Sizes and numbers
    ("message-size-with-space", maildomain(limits={"messageSize": "10 GB"}), NO_MATCH),
    ("message-size-lowercase-unit", maildomain(limits={"messageSize": "10mi"}), NO_MATCH),
    ("message-size-too-large", maildomain(limits={"messageSize": "3Gi"}), "from 1Ki to 2Gi"),
    ("message-size-too-small", maildomain(limits={"messageSize": "1k"}), "from 1Ki to 2Gi"),
    ("message-size-int-too-small", maildomain(limits={"messageSize": 1023}), TOO_SMALL),
    ("message-size-negative", maildomain(limits={"messageSize": -5}), TOO_SMALL),
    ("message-size-float", maildomain(limits={"messageSize": 1.5}), "is not valid under any"),
    ("volume-too-small", maildomain(storage={"queue": {"size": "512Ki"}}), "at least 1Mi"),
    ("recipients-zero", maildomain(limits={"recipientsPerMessage": 0}), TOO_SMALL),
    (
        "per-client-negative",
        maildomain(limits={"perClient": {"smtpLoginsPerMinute": -1}}),
        TOO_SMALL,
    ),
    (
        "exempt-network-prefix-too-long",
        maildomain(limits={"perClient": {"exemptNetworks": ["10.0.0.0/33"]}}),
        "is not valid under any",
    ),
    (
        "exempt-network-name",
        maildomain(limits={"perClient": {"exemptNetworks": ["mail.example.net"]}}),
        "is not valid under any",
    ),
    ("ttl-too-small", maildomain(dns={"ttl": 30}), TOO_SMALL),
    ("pct-too-large", maildomain(dns={"dmarc": {"pct": 101}}), "greater than the maximum"),
    ("boolean-as-string", maildomain(protocols={"imap": "yes"}), "is not of type 'boolean'"),
    ("threshold-negative", maildomain(spam={"thresholds": {"addHeader": -1}}), TOO_SMALL),
    (
        "reject-equal-add-header",
        maildomain(spam={"thresholds": {"addHeader": 10, "reject": 10}}),
        "reject (10.0) must be greater than addHeader (10.0)",
    ),
    ("reject-below-default", maildomain(spam={"thresholds": {"reject": 5}}), NOT_GREATER),
    (
        "antivirus-without-any-signatures",
        maildomain(spam={"antivirus": {"enabled": True, "signatures": {"official": False}}}),
        "without the official databases, list the urls of others",
    ),
    (
        "antivirus-mirror-without-official",
        maildomain(
            spam={
                "antivirus": {
                    "signatures": {
                        "official": False,
                        "privateMirror": "https://mirror.example.net",
                        "urls": ["https://mirror.example.net/x.ndb"],
                    }
                }
            }
        ),
        "privateMirror mirrors the official databases: unused",
    ),
    (
        "antivirus-unknown-action",
        maildomain(spam={"antivirus": {"action": "drop"}}),
        "is not one of",
    ),
    (
        "antivirus-url-not-http",
        maildomain(spam={"antivirus": {"signatures": {"urls": ["file:///etc/passwd"]}}}),
        NO_MATCH,
    ),
    # DNS
    ("two-dns-providers", maildomain(dns=provider(manual={}, rfc2136=RFC2136)), ONE_PROVIDER),
    ("zero-dns-providers", maildomain(dns=provider()), ONE_PROVIDER),
    (
        "rfc2136-without-secret",
        maildomain(dns=provider(rfc2136=without(RFC2136, "tsigSecretRef"))),
        required("tsigSecretRef"),
    ),
    (
        "rfc2136-empty-secret-ref",
        maildomain(dns=provider(rfc2136={**RFC2136, "tsigSecretRef": {}})),
        required("name"),
    ),
    (
        "rfc2136-server-bad-ip",
        maildomain(dns=provider(rfc2136={**RFC2136, "server": "192.0.2.256"})),
        "expected a host name or an IP address",
    ),
    (
        "rfc2136-tsig-key-numeric-tld",
        maildomain(dns=provider(rfc2136={**RFC2136, "tsigKeyName": "key.123"})),
        TLD,
    ),
    (
        "rfc2136-bad-algorithm",
        maildomain(dns=provider(rfc2136={**RFC2136, "tsigAlgorithm": "hmac-md5"})),
        NOT_ONE_OF,
    ),
    (
        "powerdns-bad-url",
        maildomain(dns=provider(powerdns={"apiUrl": "ftp://x", "apiKeySecretRef": {"name": "p"}})),
        NO_MATCH,
    ),
    (
        "cloudflare-bad-zone-id",
        maildomain(dns=provider(cloudflare={"zoneId": "XYZ", "apiTokenSecretRef": {"name": "c"}})),
        NO_MATCH,
    ),
    (
        "route53-bad-zone-id",
        maildomain(
            dns=provider(route53={"hostedZoneId": "z1", "credentialsSecretRef": {"name": "a"}})
        ),
        NO_MATCH,
    ),
    (
        "route53-without-credentials",
        maildomain(dns=provider(route53={"hostedZoneId": "Z123"})),
        required("credentialsSecretRef"),
    ),
    ("ipv4-in-ipv6-list", maildomain(dns={"addresses": {"ipv6": ["192.0.2.1"]}}), NO_MATCH),
    ("ipv6-invalid", maildomain(dns={"addresses": {"ipv6": ["1::2::3"]}}), "is not a 'ipv6'"),
    ("ipv6-zone-index", maildomain(dns={"addresses": {"ipv6": ["fe80::1%eth0"]}}), NO_MATCH),
    ("ipv4-leading-zero", maildomain(dns={"addresses": {"ipv4": ["192.0.2.01"]}}), NO_MATCH),
    ("spf-include-uppercase", maildomain(dns={"spf": {"includes": ["SPF.example.net"]}}), NO_MATCH),
    (
        "dmarc-rua-local-part-too-long",
        maildomain(dns={"dmarc": {"rua": ["mailto:" + "r" * 65 + "@example.com"]}}),
        LONG_LOCAL,
    ),
    ("dmarc-rua-numeric-tld", maildomain(dns={"dmarc": {"rua": ["r@x.1"]}}), TLD_OF_ADDRESS),
    ("dmarc-rua-http", maildomain(dns={"dmarc": {"rua": ["https://example.com/r"]}}), NO_MATCH),
    # TLS
    (
        "cert-manager-without-settings",
        maildomain(tls={"issuer": "certManager"}),
        "issuer certManager needs certManager.issuerRef",
    ),
    (
        "cert-manager-without-issuer-ref",
        maildomain(tls={"issuer": "certManager", "certManager": {}}),
        required("issuerRef"),
    ),
    (
        "cert-manager-settings-with-internal",
        maildomain(tls={"certManager": {"issuerRef": {"name": "le"}}}),
        "certManager is only allowed with issuer certManager (issuer is internal)",
    ),
    (
        "acme-settings-with-internal",
        maildomain(tls={"issuer": "internal", "acme": {"email": "hostmaster@example.com"}}),
        "acme is only allowed with issuer acme (issuer is internal)",
    ),
    ("acme-without-settings", maildomain(tls={"issuer": "acme"}), "issuer acme needs acme.email"),
    ("acme-without-email", maildomain(tls={"issuer": "acme", "acme": {}}), required("email")),
    ("unknown-issuer", maildomain(tls={"issuer": "vault"}), NOT_ONE_OF),
    # Relay, service, storage, resolvers, DKIM
    (
        "outbound-bind-without-address",
        maildomain(outbound={"bindAddress": True}),
        "bindAddress needs the address to bind to",
    ),
    (
        "outbound-bind-two-ipv4",
        maildomain(outbound={"addresses": ["81.2.69.142", "81.2.69.143"], "bindAddress": True}),
        "binds one",
    ),
    ("outbound-address-name", maildomain(outbound={"addresses": ["out.example.com"]}), NO_MATCH),
    ("outbound-helo-uppercase", maildomain(outbound={"heloName": "Out.example.com"}), NO_MATCH),
    (
        "outbound-addresses-with-relay",
        maildomain(relay={"host": "smtp.example.net"}, outbound={"addresses": ["81.2.69.142"]}),
        "mail leaves from the relay",
    ),
    (
        "outbound-bind-with-relay",
        maildomain(relay={"host": "smtp.example.net"}, outbound={"bindAddress": True}),
        "mail leaves from the relay",
    ),
    (
        "policy-outbound-bind-name",
        policy(outbound={"bindAddresses": ["out.example.com"]}),
        "not valid under any of the given schemas",
    ),
    (
        "server-ref-with-relay",
        maildomain(serverRef={"name": "shared"}, relay={"host": "smtp.example.net"}),
        "with spec.serverRef, the MailServer relays",
    ),
    (
        "server-ref-with-resolvers",
        maildomain(serverRef={"name": "shared"}, resolvers=["192.0.2.53"]),
        "with spec.serverRef, the MailServer relays",
    ),
    ("relay-without-host", maildomain(relay={"port": 25}), required("host")),
    (
        "relay-empty-credentials",
        maildomain(relay={"host": "smtp.example.net", "credentialsSecretRef": {}}),
        required("name"),
    ),
    ("relay-port-zero", maildomain(relay={"host": "smtp.example.net", "port": 0}), TOO_SMALL),
    (
        "relay-ipv4-with-credentials",
        maildomain(relay={"host": "192.0.2.1", "credentialsSecretRef": {"name": "relay"}}),
        NAMED_BY_HOST_NAME,
    ),
    (
        "relay-ipv6-with-ca",
        maildomain(relay={"host": "2001:db8::25", "caSecretRef": {"name": "relay-ca"}}),
        NAMED_BY_HOST_NAME,
    ),
    (
        "relay-ca-without-name",
        maildomain(relay={"host": "smtp.example.net", "caSecretRef": {"key": "ca.pem"}}),
        required("name"),
    ),
    (
        "relay-ca-key-with-slash",
        maildomain(
            relay={"host": "smtp.example.net", "caSecretRef": {"name": "ca", "key": "a/ca.crt"}}
        ),
        NO_MATCH,
    ),
    (
        "annotation-key-with-space",
        maildomain(service={"annotations": {"bad key": "x"}}),
        "annotation keys must be valid",
    ),
    (
        "annotation-value-not-string",
        maildomain(service={"annotations": {"a": 1}}),
        "is not of type 'string'",
    ),
    ("load-balancer-ip-name", maildomain(service={"loadBalancerIP": "lb.example.com"}), NO_MATCH),
    ("exposure-unknown", maildomain(service={"exposure": "Ingress"}), NOT_ONE_OF),
    (
        "exposure-type-mismatch",
        maildomain(service={"exposure": "NodePort", "type": "LoadBalancer"}),
        "type must be the Service type of the exposure",
    ),
    (
        "exposure-hostport-with-load-balancer",
        maildomain(service={"exposure": "HostPort", "type": "LoadBalancer"}),
        "type must be the Service type of the exposure",
    ),
    (
        "proxy-protocol-without-settings",
        maildomain(service={"exposure": "ProxyProtocol"}),
        "proxyProtocol is required with exposure ProxyProtocol",
    ),
    (
        "proxy-protocol-settings-without-exposure",
        maildomain(service={"proxyProtocol": {"trustedCIDRs": ["10.0.0.0/8"]}}),
        "proxyProtocol is required with exposure ProxyProtocol",
    ),
    (
        "proxy-protocol-without-cidrs",
        maildomain(service={"exposure": "ProxyProtocol", "proxyProtocol": {}}),
        required("trustedCIDRs"),
    ),
    (
        "proxy-protocol-empty-cidrs",
        maildomain(service={"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": []}}),
        "should be non-empty",
    ),
    (
        "proxy-protocol-trusts-everyone",
        maildomain(
            service={"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": ["0.0.0.0/0"]}}
        ),
        "is not valid under any",
    ),
    (
        "proxy-protocol-trusts-every-ipv6",
        maildomain(
            service={"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": ["::/0"]}}
        ),
        "is not valid under any",
    ),
    (
        "proxy-protocol-trusts-a-slash-7",
        maildomain(
            service={"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": ["10.0.0.0/7"]}}
        ),
        "is not valid under any",
    ),
    (
        "proxy-protocol-trusts-an-ipv6-slash-31",
        maildomain(
            service={"exposure": "ProxyProtocol", "proxyProtocol": {"trustedCIDRs": ["fd00::/31"]}}
        ),
        "is not valid under any",
    ),
    (
        "proxy-protocol-namespace-uppercase",
        maildomain(
            service={
                "exposure": "ProxyProtocol",
                "proxyProtocol": {"trustedCIDRs": ["10.0.0.0/8"], "internalNamespaces": ["Web"]},
            }
        ),
        NO_MATCH,
    ),
    ("storage-class-uppercase", maildomain(storage={"queue": {"storageClassName": "S"}}), NO_MATCH),
    ("retention-unknown", maildomain(storage={"retention": "Archive"}), NOT_ONE_OF),
    ("resolver-bad-ip", maildomain(resolvers=["8.8.8.256"]), "is not valid under any"),
    ("resolver-duplicate", maildomain(resolvers=["1.1.1.1", "1.1.1.1"]), "non-unique"),
    ("dkim-selector-uppercase", maildomain(dkim={"selector": "Mail"}), NO_MATCH),
    ("dkim-algorithm-unknown", maildomain(dkim={"algorithm": "rsa1024"}), NOT_ONE_OF),
    # spec.pods
    ("pods-unknown-field", maildomain(pods={"replicas": 2}), UNKNOWN),
    ("pods-unknown-container", maildomain(pods={"resources": {"nginx": {}}}), UNKNOWN),
    ("pods-quantity-with-space", pods_quantity("1 Gi"), NO_MATCH),
    ("pods-quantity-exponent", pods_quantity("1e3"), NO_MATCH),
    ("pods-quantity-lowercase-unit", pods_quantity("1gi"), NO_MATCH),
    ("pods-quantity-too-large", pods_quantity("2Pi"), "at most 1P"),
    ("pods-quantity-int-negative", pods_quantity(-1), TOO_SMALL),
    ("pods-quantity-int-too-large", pods_quantity(10**15 + 1), "greater than the maximum"),
    ("pods-quantity-float", pods_quantity(0.5), "is not valid under any"),
    ("pods-node-selector-bad-key", maildomain(pods={"nodeSelector": {"a b": "x"}}), LABEL_KEYS),
    ("pods-node-selector-bad-value", maildomain(pods={"nodeSelector": {"a": "-x"}}), NO_MATCH),
    ("pods-toleration-without-key", pods_toleration(value="x"), "without a key"),
    (
        "pods-toleration-exists-with-value",
        pods_toleration(key="a", operator="Exists", value="x"),
        "operator Exists has no value",
    ),
    (
        "pods-toleration-seconds-without-no-execute",
        pods_toleration(key="a", tolerationSeconds=30),
        "only meaningful with effect NoExecute",
    ),
    ("pods-toleration-empty-key", pods_toleration(key="", operator="Exists"), NO_MATCH),
    ("pods-toleration-bad-effect", pods_toleration(key="a", effect="NoEntry"), NOT_ONE_OF),
    ("pods-requirement-in-without-values", pods_node_requirement("In"), "need values"),
    (
        "pods-requirement-exists-with-values",
        pods_node_requirement("Exists", ["a"]),
        "take no values",
    ),
    ("pods-requirement-gt-not-integer", pods_node_requirement("Gt", ["x"]), "an integer"),
    ("pods-requirement-lt-two-values", pods_node_requirement("Lt", ["1", "2"]), "an integer"),
    ("pods-requirement-unknown-operator", pods_node_requirement("Like", ["a"]), NOT_ONE_OF),
    (
        "pods-node-selector-terms-empty",
        maildomain(pods={"affinity": {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": []}}}}),
        "should be non-empty",
    ),
    (
        "pods-node-affinity-match-fields",
        maildomain(
            pods={
                "affinity": {
                    "nodeAffinity": {
                        REQUIRED: {
                            "nodeSelectorTerms": [
                                {
                                    "matchFields": [
                                        {"key": "metadata.name", "operator": "In", "values": ["n"]}
                                    ]
                                }
                            ]
                        }
                    }
                }
            }
        ),
        UNKNOWN,
    ),
    (
        "pods-pod-affinity-without-topology-key",
        maildomain(pods={"affinity": {"podAffinity": {REQUIRED: [{"labelSelector": {}}]}}}),
        required("topologyKey"),
    ),
    (
        "pods-pod-anti-affinity-weight-too-large",
        maildomain(
            pods={
                "affinity": {
                    "podAntiAffinity": {
                        PREFERRED: [{"weight": 101, "podAffinityTerm": {"topologyKey": "zone"}}]
                    }
                }
            }
        ),
        "greater than the maximum",
    ),
    (
        "pods-label-selector-gt",
        maildomain(
            pods={
                "affinity": {
                    "podAffinity": {
                        REQUIRED: [
                            {
                                "topologyKey": "zone",
                                "labelSelector": {
                                    "matchExpressions": [
                                        {"key": "a", "operator": "Gt", "values": ["1"]}
                                    ]
                                },
                            }
                        ]
                    }
                }
            }
        ),
        NOT_ONE_OF,
    ),
    (
        "pods-spread-duplicate",
        maildomain(pods={"topologySpreadConstraints": [SPREAD, {**SPREAD, "maxSkew": 2}]}),
        "same topologyKey and whenUnsatisfiable",
    ),
    (
        "pods-spread-min-domains-schedule-anyway",
        maildomain(pods={"topologySpreadConstraints": [{**SPREAD, "minDomains": 2}]}),
        "minDomains is only meaningful",
    ),
    (
        "pods-spread-without-max-skew",
        maildomain(pods={"topologySpreadConstraints": [without(SPREAD, "maxSkew")]}),
        required("maxSkew"),
    ),
    ("pods-priority-class-uppercase", maildomain(pods={"priorityClassName": "High"}), NO_MATCH),
    (
        "pods-pull-secret-string",
        maildomain(pods={"imagePullSecrets": ["regcred"]}),
        "is not of type 'object'",
    ),
    (
        "pods-pull-secret-twice",
        maildomain(pods={"imagePullSecrets": [{"name": "a"}, {"name": "a"}]}),
        "each Secret may be listed once",
    ),
    (
        "pods-label-operators",
        maildomain(pods={"labels": {"app.kubernetes.io/instance": "x"}}),
        OPERATOR_KEYS,
    ),
    (
        "pods-annotation-operators-subdomain",
        maildomain(pods={"annotations": {"kopf.mailstack.dev/x": "y"}}),
        OPERATOR_KEYS,
    ),
    (
        "pods-label-statefulset-controller",
        maildomain(pods={"labels": {"controller-revision-hash": "x"}}),
        OPERATOR_KEYS,
    ),
    (
        "pods-annotation-bad-key",
        maildomain(pods={"annotations": {"a b": "x"}}),
        "annotation keys must be valid",
    ),
    ("pods-annotation-too-long", maildomain(pods={"annotations": {"a": "x" * 4097}}), "too long"),
    (
        "pods-too-many-labels",
        maildomain(pods={"labels": {f"k{i}": "v" for i in range(33)}}),
        "too many properties",
    ),
    (
        "pods-too-many-tolerations",
        maildomain(pods={"tolerations": [{"key": "a"}] * 33}),
        "too long",
    ),
    # Mailbox
    ("local-part-with-space", mailbox(address="bo b@example.com"), NO_MATCH),
    ("local-part-with-quote", mailbox(address='"bob"@example.com'), NO_MATCH),
    ("local-part-with-newline", mailbox(address="bo\nb@example.com"), NO_MATCH),
    ("local-part-trailing-newline", mailbox(address="bob@example.com\n"), NO_MATCH),
    ("local-part-double-dot", mailbox(address="bo..b@example.com"), NO_MATCH),
    ("local-part-leading-dot", mailbox(address=".bob@example.com"), NO_MATCH),
    ("local-part-plus", mailbox(address="bob+tag@example.com"), NO_MATCH),
    ("local-part-uppercase", mailbox(address="Bob@example.com"), NO_MATCH),
    ("local-part-too-long", mailbox(address="b" * 65 + "@example.com"), LONG_LOCAL),
    ("address-without-domain", mailbox(address="bob"), NO_MATCH),
    ("address-numeric-tld", mailbox(address="bob@example.123"), TLD_OF_ADDRESS),
    ("address-two-at", mailbox(address="bob@x@example.com"), NO_MATCH),
    ("keep-copy-without-forward", mailbox(keepCopy=True), KEEP_COPY),
    ("keep-copy-with-empty-forward", mailbox(keepCopy=True, forwardTo=[]), KEEP_COPY),
    ("quota-with-space", mailbox(quota="10 GB"), NO_MATCH),
    ("quota-too-small", mailbox(quota="512Ki"), "quota must be at least 1Mi"),
    ("quota-int-too-small", mailbox(quota=1000), TOO_SMALL),
    ("quota-boolean", mailbox(quota=True), "is not valid under any"),
    ("alias-other-domain", mailbox(aliases=["b@example.net"]), "must be on the mailbox's domain"),
    ("alias-own-local-part", mailbox(aliases=["bob"]), "must not be the mailbox's own address"),
    (
        "alias-own-address",
        mailbox(aliases=["bob@example.com"]),
        "must not be the mailbox's own address",
    ),
    ("alias-integer", mailbox(aliases=[1234]), "is not of type 'string'"),
    ("forward-to-single-label", mailbox(forwardTo=["bob@localhost"]), NO_MATCH),
    ("forward-to-quoted", mailbox(forwardTo=['"b b"@example.net']), NO_MATCH),
    ("forward-to-comma", mailbox(forwardTo=["a,b@example.net"]), NO_MATCH),
    ("display-name-newline", mailbox(displayName="Bob\nEvil"), NO_MATCH),
    ("display-name-too-long", mailbox(displayName="b" * 129), "is too long"),
    ("sieve-blank", mailbox(sieve=" \n\t\u3000"), NO_MATCH),
    ("sieve-nul", mailbox(sieve="keep;\x00"), NO_MATCH),
    ("sieve-too-many-bytes", mailbox(sieve="é" * 40000), "larger than 65536 bytes"),
    (
        "password-ref-missing",
        without(mailbox(), "passwordSecretRef", ("spec",)),
        required("passwordSecretRef"),
    ),
    ("password-ref-empty", mailbox(passwordSecretRef={}), required("name")),
    ("password-ref-bad-key", mailbox(passwordSecretRef={"name": "s", "key": "a b"}), NO_MATCH),
    ("mailbox-unknown-field", mailbox(password="hunter22"), UNKNOWN),
]

# Updates: (id, old, new, expected error or None for an allowed update)
UPDATES: list[tuple[str, Doc, Doc, str | None]] = [
    (
        "maildomain-change-domain",
        maildomain(),
        maildomain(domain="example.org"),
        "domain is immutable",
    ),
    ("maildomain-change-other-fields", maildomain(), maildomain(hostname="mx.example.com"), None),
    (
        "mailbox-change-address",
        mailbox(),
        mailbox(address="robert@example.com"),
        "address is immutable",
    ),
    ("mailbox-change-other-fields", mailbox(), mailbox(displayName="Bob", suspended=True), None),
]


# ------------------------------------------------------------------------------------------------
# The CRD objects


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [("MailDomain", "maildomains", "md"), ("Mailbox", "mailboxes", "mbx")],
)
def test_crd_identity(kind: str, plural: str, short: str) -> None:
    doc = crd(kind)
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["kind"] == "CustomResourceDefinition"
    assert doc["metadata"]["name"] == f"{plural}.mailstack.dev"
    spec = doc["spec"]
    assert spec["group"] == "mailstack.dev"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (kind, plural, kind.lower())
    assert names["shortNames"] == [short]
    assert names["categories"] == ["mailstack"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    ready = '.status.conditions[?(@.type=="Ready")]'

    def columns(kind: str) -> list[tuple[str, str, str]]:
        cols = crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
        return [(c["name"], c["type"], c["jsonPath"]) for c in cols]

    assert columns("MailDomain") == [
        ("Domain", "string", ".spec.domain"),
        ("Ready", "string", f"{ready}.status"),
        ("Reason", "string", f"{ready}.reason"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    assert columns("Mailbox") == [
        ("Address", "string", ".spec.address"),
        ("Ready", "string", f"{ready}.status"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


@pytest.mark.parametrize("version", ["1.28", "1.30"])
@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_crd_validates_against_the_kubernetes_api(kind: str, version: str) -> None:
    # 1.28 is the oldest release that knows every field used (fieldPath of a validation rule).
    kubernetes_validate.validate(crd(kind), version, strict=True)


_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
_FORBIDDEN_IN_JUNCTORS = {"type", "description", "default", "additionalProperties", "nullable"}


def structural_problems(node: Schema, path: str, in_status: bool) -> list[str]:
    """Violations of the structural-schema rules (and of this project's own conventions)."""
    problems: list[str] = []
    if node.get("x-kubernetes-int-or-string"):
        if "type" in node:
            problems.append(f"{path}: int-or-string must not have a type")
        if node.get("anyOf", _INT_OR_STRING_ANY_OF) != _INT_OR_STRING_ANY_OF:
            problems.append(f"{path}: int-or-string anyOf must be [integer, string] only")
    elif node.get("x-kubernetes-preserve-unknown-fields"):
        if not in_status:
            problems.append(f"{path}: preserve-unknown-fields is only acceptable under status")
    elif "type" not in node:
        problems.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: both properties and additionalProperties")
    if "additionalProperties" in node and not isinstance(node["additionalProperties"], dict):
        problems.append(f"{path}: additionalProperties must be a typed schema")
    if node.get("type") == "array" and not isinstance(node.get("items"), dict):
        problems.append(f"{path}: an array needs a single items schema")
    for junctor in ("anyOf", "allOf", "oneOf"):
        for sub in node.get(junctor, []):
            if junctor == "anyOf" and node.get("x-kubernetes-int-or-string"):
                continue
            bad = (_FORBIDDEN_IN_JUNCTORS | {"properties", "items"}) & set(sub)
            bad |= {k for k in sub if k.startswith("x-kubernetes-")}
            if bad:
                problems.append(f"{path}.{junctor}: must not set {sorted(bad)}")
    # Conventions: bounded strings and lists (for CEL cost and sanity), set semantics.
    standard = path in (".apiVersion", ".kind")  # as in every Kubernetes schema
    if node.get("type") == "string" and not (
        standard or "enum" in node or node.get("format") == "date-time" or "maxLength" in node
    ):
        problems.append(f"{path}: string without maxLength")
    if node.get("x-kubernetes-int-or-string") and "maxLength" not in node:
        problems.append(f"{path}: int-or-string without maxLength")
    if node.get("type") == "array" and "maxItems" not in node:
        problems.append(f"{path}: array without maxItems")
    if isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
        problems.append(f"{path}: map without maxProperties")
    if node.get("x-kubernetes-list-type") == "set" and node["items"].get("type") == "object":
        problems.append(f"{path}: a set of objects")
    return problems


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_schema_is_structural(kind: str) -> None:
    schema = root_schema(kind)
    problems = []
    for path, node in walk_schema(schema):
        problems += structural_problems(node, path or "<root>", path.startswith(".status"))
    # metadata: only `type: object` and constraints on metadata.name are allowed.
    meta = schema["properties"]["metadata"]
    assert set(meta) == {"type", "properties"} and set(meta["properties"]) == {"name"}
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_every_property_has_a_description(kind: str) -> None:
    missing = [
        f"{path}.{name}"
        for path, node in walk_schema(root_schema(kind))
        for name, sub in node.get("properties", {}).items()
        if f"{path}.{name}" != ".metadata" and not str(sub.get("description", "")).strip()
    ]
    assert not missing


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_defaults_are_valid_for_their_field(kind: str) -> None:
    for path, node in walk_schema(root_schema(kind)):
        if "default" in node:
            value = apply_defaults(node, copy.deepcopy(node["default"]))
            errors = node_errors(schema_validator(node), node, value)
            assert not errors, f"{path}: default {node['default']!r}: {errors}"


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_cel_rules_compile(kind: str) -> None:
    count = 0
    for path, node in walk_schema(root_schema(kind)):
        for rule in node.get("x-kubernetes-validations", []):
            assert ("message" in rule) != ("messageExpression" in rule), path
            cel_program(rule["rule"])
            if "messageExpression" in rule:
                cel_program(rule["messageExpression"])
            count += 1
    assert count > 0


def test_spec_has_no_preserve_unknown_fields() -> None:
    for kind in CRD_FILES:
        for path, node in walk_schema(root_schema(kind)):
            if path.startswith(".spec"):
                assert "x-kubernetes-preserve-unknown-fields" not in node, path


# ------------------------------------------------------------------------------------------------
# Documents


@pytest.mark.parametrize(("case", "doc"), GOOD, ids=[c for c, _ in GOOD])
def test_good_documents_are_accepted(case: str, doc: Doc) -> None:
    assert crd_errors(doc) == []


def test_examples_are_found() -> None:
    # The examples folder is part of the good cases; make sure the glob keeps working.
    assert all(doc["apiVersion"] == API_VERSION for _, doc in example_documents())


@pytest.mark.parametrize(("case", "doc", "expected"), BAD, ids=[c for c, *_ in BAD])
def test_bad_documents_are_refused(case: str, doc: Doc, expected: str) -> None:
    errors = crd_errors(doc)
    assert any(expected in error for error in errors), errors


@pytest.mark.parametrize(("case", "old", "new", "expected"), UPDATES, ids=[u[0] for u in UPDATES])
def test_updates(case: str, old: Doc, new: Doc, expected: str | None) -> None:
    assert crd_errors(old) == []
    errors = crd_errors(new, old)
    if expected is None:
        assert errors == []
    else:
        assert any(expected in error for error in errors), errors
        assert crd_errors(new) == []  # only the transition is refused


# ------------------------------------------------------------------------------------------------
# Parity with the parser


@pytest.mark.parametrize(("case", "doc"), GOOD, ids=[c for c, _ in GOOD])
def test_parser_accepts_the_good_documents(case: str, doc: Doc) -> None:
    assert parser_errors(doc) == []


@pytest.mark.parametrize(
    ("case", "doc"),
    [
        pytest.param(c, d, marks=[xfail(PARSER_ACCEPTS[c])] if c in PARSER_ACCEPTS else [])
        for c, d, _ in BAD
    ],
    ids=[c for c, *_ in BAD],
)
def test_parser_refuses_the_bad_documents(case: str, doc: Doc) -> None:
    assert parser_errors(doc) != []


def test_known_differences_name_real_cases() -> None:
    assert set(PARSER_ACCEPTS) <= {case for case, *_ in BAD}


@pytest.mark.parametrize(("case", "doc"), GOOD, ids=[c for c, _ in GOOD])
def test_schema_defaults_agree_with_parser_defaults(case: str, doc: Doc) -> None:
    parse = PARSERS[doc["kind"]]
    defaulted = apply_defaults(root_schema(doc["kind"]), copy.deepcopy(doc))
    assert parse(defaulted) == parse(doc)


def _object_nodes(node: Schema, value: Any, path: str) -> Iterator[tuple[str, Schema, Doc]]:
    """Each object (with fixed properties) of a document, with its schema and parser path."""
    if not isinstance(value, dict):
        return
    if "properties" in node:
        yield path, node, value
        for key, sub in node["properties"].items():
            if key in value:
                yield from _object_nodes(sub, value[key], f"{path}.{key}" if path else key)


def _set_at(doc: Doc, path: str, key: str, item: Any) -> Doc:
    result = copy.deepcopy(doc)
    target = result
    for part in path.split(".") if path else []:
        target = target[part]
    target[key] = item
    return result


@pytest.mark.parametrize(
    ("case", "doc"), fixture_documents(), ids=[c for c, _ in fixture_documents()]
)
def test_schema_fields_are_the_parser_fields(case: str, doc: Doc) -> None:
    """At every object of the document, the parser knows exactly the fields the schema declares.

    The parser names its known fields when it meets an unknown one, so each object gets one.
    """
    schema = root_schema(doc["kind"])
    checked = 0
    for path, node, _ in _object_nodes(schema, doc, ""):
        if path in ("metadata", "status"):
            continue
        bad = _set_at(doc, path, "zzUnknown", 1)
        where = f"{path}.zzUnknown" if path else "zzUnknown"
        messages = [m.split(": ", 1)[1] for m in parser_errors(bad) if f" {where}: " in m]
        assert messages, f"the parser did not refuse {where}"
        known = re.search(r"known fields here: ([^)]*)\)", messages[0])
        assert known, messages[0]
        parser_fields = [] if known.group(1) == "none" else known.group(1).split(", ")
        assert sorted(parser_fields) == sorted(node["properties"]), path
        checked += 1
    assert checked > 1


def _leaf_paths(node: Schema, path: str = "") -> Iterator[str]:
    if "properties" in node:
        for key, sub in node["properties"].items():
            yield from _leaf_paths(sub, f"{path}.{key}")
    else:
        yield path


def _used_paths(value: Any, path: str = "") -> Iterator[str]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _used_paths(item, f"{path}.{key}")


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_fixtures_use_every_spec_field(kind: str) -> None:
    used: set[str] = set()
    for _, doc in fixture_documents():
        if doc["kind"] == kind:
            used |= set(_used_paths(doc))
    spec_fields = [p for p in _leaf_paths(root_schema(kind)) if p.startswith(".spec.")]
    assert [p for p in spec_fields if p not in used] == []


# ------------------------------------------------------------------------------------------------
# Field by field, with generated values: the schema node (pattern, lengths, CEL) and the parser's
# validator for that field agree on accept/refuse.


def _node(kind: str, path: str) -> Schema:
    return dict(walk_schema(root_schema(kind)))[path]


def _accepts(validate: Callable[[Any], object]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        try:
            validate(value)
        except FieldError:
            return False
        return True

    return check


def _min_size(minimum: int, maximum: int | None = None) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        try:
            size = v.size_bytes(value)
        except FieldError:
            return False
        return size >= minimum and (maximum is None or size <= maximum)

    return check


FIELDS: list[tuple[str, str, str, Callable[[Any], bool]]] = [
    ("domain", "MailDomain", ".spec.domain", _accepts(v.domain_name)),
    ("own-address", "Mailbox", ".spec.address", _accepts(v.own_address)),
    ("external-address", "Mailbox", ".spec.forwardTo[*]", _accepts(v.external_address)),
    ("report-address", "MailDomain", ".spec.dns.dmarc.rua[*]", _accepts(v.report_address)),
    (
        "tsig-key-name",
        "MailDomain",
        ".spec.dns.provider.rfc2136.tsigKeyName",
        _accepts(v.domain_name_or_label),
    ),
    ("host-or-ip", "MailDomain", ".spec.relay.host", _accepts(host_or_ip)),
    ("any-ip", "MailDomain", ".spec.resolvers[*]", _accepts(v.any_ip_address)),
    ("ipv4", "MailDomain", ".spec.dns.addresses.ipv4[*]", _accepts(lambda x: v.ip_address(x, 4))),
    ("ipv6", "MailDomain", ".spec.dns.addresses.ipv6[*]", _accepts(lambda x: v.ip_address(x, 6))),
    ("selector", "MailDomain", ".spec.dkim.selector", _accepts(v.dkim_selector)),
    ("subdomain", "Mailbox", ".spec.passwordSecretRef.name", _accepts(v.kubernetes_subdomain)),
    ("secret-key", "Mailbox", ".spec.passwordSecretRef.key", _accepts(v.secret_key)),
    ("display-name", "Mailbox", ".spec.displayName", _accepts(v.display_name)),
    ("quota", "Mailbox", ".spec.quota", _min_size(1024**2)),
    ("message-size", "MailDomain", ".spec.limits.messageSize", _min_size(1024, 2 * 1024**3)),
    ("url", "MailDomain", ".spec.tls.acme.server", _accepts(v.http_url)),
    (
        "quantity",
        "MailDomain",
        ".spec.pods.resources.postfix.requests.cpu",
        _accepts(quantity),
    ),
    ("label-key", "MailDomain", ".spec.pods.tolerations[*].key", _accepts(v.label_key)),
    ("label-value", "MailDomain", ".spec.pods.tolerations[*].value", _accepts(v.label_value)),
]

_ALPHABET = "abz019.-_@:%AZ+\"' \n\x00é"
_SEEDS = [
    "example.com",
    "a.b",
    "xn--bcher-kva.example",
    "bob@example.com",
    "Bob.X+y@example.net",
    "mailto:r@example.com",
    "192.0.2.1",
    "::1",
    "2001:db8::1",
    "::ffff:1.2.3.4",
    "10.0.0.256",
    "25Mi",
    "1Ki",
    "2Gi",
    "3Gi",
    "1000",
    "1024",
    "k",
    "mailstack",
    "secret.key_1",
    "https://acme.example/dir",
    "key",
    "1.2.3.4.5",
    "a-.com",
    "a..b@c.d",
    "500m",
    "0.5",
    ".5",
    "1.5Gi",
    "1P",
    "1000T",
    "1001T",
    "2Pi",
    "1e3",
    "app.kubernetes.io/name",
    "a_b.c-D",
]


def _values() -> st.SearchStrategy[str]:
    seeds = st.sampled_from(_SEEDS)
    mutated = st.tuples(seeds, st.text(_ALPHABET, max_size=3), st.integers(0, 30)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
    )
    return st.one_of(seeds, mutated, st.text(_ALPHABET, max_size=12))


@pytest.mark.parametrize(("field", "kind", "path", "accepts"), FIELDS, ids=[f[0] for f in FIELDS])
def test_field_agrees_with_parser_validator(
    field: str, kind: str, path: str, accepts: Callable[[Any], bool]
) -> None:
    node = _node(kind, path)
    validator = schema_validator(node)

    @settings(
        max_examples=30,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_values())
    def check(value: str) -> None:
        assume(not value.endswith("\n"))  # the trailing-newline parser bug: see BAD
        assume("%" not in value or field not in ("any-ip", "ipv6", "host-or-ip"))  # IPV6_ZONE
        crd_ok = node_errors(validator, node, value) == []
        assert crd_ok == accepts(value), f"{value!r}: CRD {crd_ok}, parser {accepts(value)}"

    check()


@settings(max_examples=40, derandomize=True, deadline=None, database=None)
@given(_values(), st.sampled_from(["credentialsSecretRef", "caSecretRef", None]))
def test_relay_host_rule_agrees_with_the_parser(host: str, reference: str | None) -> None:
    # A verified relay (credentials or a CA) must be named by host name: the CRD's CEL rule and
    # the parser draw the line between names and IP addresses at the same place.
    assume(not host.endswith("\n") and "%" not in host)  # TRAILING_NEWLINE, IPV6_ZONE
    relay: Doc = {"host": host}
    if reference is not None:
        relay[reference] = {"name": "relay"}
    doc = maildomain(relay=relay)
    crd, parsed = crd_errors(doc), parser_errors(doc)
    assert (crd == []) == (parsed == []), f"{host!r}: CRD {crd}, parser {parsed}"
