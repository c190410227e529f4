"""What the API server does with a custom resource's structural schema, for the emulator.

For each write of a MailDomain or Mailbox the emulator, like kube-apiserver:

1. prunes fields the schema does not know (unless ``x-kubernetes-preserve-unknown-fields``) and
   nulls of non-nullable fields — silently, as with the default ``fieldValidation=Warn``;
2. applies the schema's ``default`` values, top-down;
3. validates against the schema (patterns as RE2, the API server's dialect), and runs the
   ``x-kubernetes-validations`` CEL rules (transition rules, those using ``oldSelf``, on updates
   only), with the two functions of the Kubernetes strings extension the CRDs use.

Failures become a 422 with one cause per problem. ``tests/unit/test_crds.py`` checks the CRDs
themselves with a similar reading; this one prunes instead of refusing unknown fields, because
that is what the server does for requests that do not ask for strict field validation.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from tests.apiserver_dialects import RE2Validator, cel_program

Schema = dict[str, Any]
_MISSING: Any = object()

# The metadata fields of a custom resource are the API server's, not the schema's.
_ROOT_KEEP = {"apiVersion", "kind", "metadata"}


def load_crd(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    if len(docs) != 1 or docs[0].get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path}: expected exactly one CustomResourceDefinition")
    return docs[0]


def prune(node: Schema, value: Any, root: bool = False) -> Any:
    """Drop unknown fields and nulls of non-nullable fields (in place; returns ``value``)."""
    if isinstance(value, dict) and node.get("type") == "object":
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return value
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key in list(value):
            if root and key in _ROOT_KEEP:
                continue
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            unknown = sub is None and extra is not True
            if unknown or (sub is not None and value[key] is None and not sub.get("nullable")):
                del value[key]
            elif sub is not None:
                prune(sub, value[key])
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            prune(node["items"], item)
    return value


def default(node: Schema, value: Any) -> Any:
    """Fill in ``default`` values top-down (in place; returns ``value``)."""
    if isinstance(value, dict) and node.get("type") == "object":
        props = node.get("properties", {})
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                default(sub, value[key])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for item in value.values():
                default(extra, item)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            default(node["items"], item)
    return value


def _to_jsonschema(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key == "x-kubernetes-list-type" and value in ("set", "map"):
            out["uniqueItems"] = True if value == "set" else out.get("uniqueItems", False)
        elif key.startswith("x-kubernetes-") or key in ("description", "default", "nullable"):
            continue
        elif key == "properties":
            out[key] = {name: _to_jsonschema(sub) for name, sub in value.items()}
        else:
            out[key] = _to_jsonschema(value)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@functools.lru_cache(maxsize=20000)
def _evaluate(expression: str, values: str) -> Any:
    args = json.loads(values)
    activation = {"self": json_to_cel(args[0])}
    if len(args) > 1:
        activation["oldSelf"] = json_to_cel(args[1])
    try:
        return cel_program(expression).evaluate(activation)
    except (CELEvalError, ValueError, TypeError, KeyError) as err:
        return err


def _typed(node: Schema, value: Any) -> Any:
    """CEL sees `number` fields as doubles even when written as integers."""
    if node.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        return {
            k: _typed(props.get(k, extra if isinstance(extra, dict) else {}), v)
            for k, v in value.items()
        }
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_typed(node["items"], item) for item in value]
    return value


def _cel_errors(node: Schema, value: Any, old: Any, path: str) -> list[str]:
    errors: list[str] = []
    for rule in node.get("x-kubernetes-validations", []):
        transition = re.search(r"\boldSelf\b", rule["rule"]) is not None
        if transition and old is _MISSING:
            continue
        args = [_typed(node, value)] + ([_typed(node, old)] if transition else [])
        key = json.dumps(args, sort_keys=True)
        result = _evaluate(rule["rule"], key)
        where = path + rule.get("fieldPath", "") or "<root>"
        if isinstance(result, Exception):
            errors.append(f"{where}: rule {rule['rule']!r} could not be evaluated: {result}")
        elif result is not True and result != celtypes.BoolType(True):
            message = rule.get("message", f"failed rule: {rule['rule']}")
            if "messageExpression" in rule:
                message = str(_evaluate(rule["messageExpression"], key))
            errors.append(f"{where}: {message}")
    if isinstance(value, dict):
        for key, sub in node.get("properties", {}).items():
            if key in value:
                old_sub = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
                errors += _cel_errors(sub, value[key], old_sub, f"{path}.{key}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                old_sub = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
                errors += _cel_errors(extra, item, old_sub, f"{path}[{key!r}]")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for index, item in enumerate(value):
            errors += _cel_errors(node["items"], item, _MISSING, f"{path}[{index}]")
    return errors


class CustomResourceSchema:
    """The structural schema of one CRD version, as the API server applies it."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        converted = _to_jsonschema(schema)
        meta = converted.get("properties", {}).pop("metadata", None)  # the server's, mostly
        self._validator = RE2Validator(converted)
        # ... except that a CRD may constrain metadata.name (and only that).
        name = ((meta or {}).get("properties") or {}).get("name")
        self._name_validator = RE2Validator(name) if isinstance(name, dict) else None

    @classmethod
    def from_crd(cls, crd: Mapping[str, Any]) -> CustomResourceSchema:
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        return cls(version["schema"]["openAPIV3Schema"])

    def admit(
        self, obj: dict[str, Any], old: Mapping[str, Any] | None = None, cel: bool = True
    ) -> list[str]:
        """Prune and default ``obj`` in place; return the validation errors (empty: valid).

        ``cel=False`` skips the CEL rules: cel-python takes milliseconds per rule, which the
        benchmark's ten thousand Mailboxes cannot afford (the component tests keep them).
        """
        prune(self.schema, obj, root=True)
        default(self.schema, obj)
        body = {k: v for k, v in obj.items() if k != "metadata"}
        found = list(self._validator.iter_errors(body))
        errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]
        if self._name_validator is not None:
            name = (obj.get("metadata") or {}).get("name", "")
            errors += [
                f"metadata.name: {e.message}" for e in self._name_validator.iter_errors(name)
            ]
        if errors or not cel:
            return errors  # like the server: CEL rules only run on schema-valid objects
        old_body: Any = _MISSING
        if old is not None:
            old_body = {k: v for k, v in old.items() if k != "metadata"}
        return _cel_errors(self.schema, body, old_body, "")
