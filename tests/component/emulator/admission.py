"""Owns admission: what the API server refuses with 422 Invalid before it stores a write.

Object names and labels, ownerReferences, the CRD structural schemas (``schema.py``: prune,
default, validate, CEL rules), the Kubernetes 1.30 schemas of the built-in kinds
(``kubernetes-validate``, strict), StatefulSet spec immutability, the size of Secrets and
ConfigMaps and base64 in Secret data. A Secret's ``stringData`` is folded into ``data`` here.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from typing import Any

import jsonschema
import referencing
from kubernetes_validate.utils import schema_contents

from mailstack.kubedoc import Obj
from tests.component.emulator.resources import ApiStatus, ResourceDef

KUBE_VERSION = "1.30"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

# StatefulSet spec fields that may change after creation (apps/v1 validation).
_STS_MUTABLE = {
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
}


@functools.cache
def builtin_validator(api_version: str, kind: str) -> Any:
    """A strict Kubernetes 1.30 schema validator for one kind (kubernetes-validate's files)."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{KUBE_VERSION}.0-local-strict"
    schema = schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", KUBE_VERSION)
    definitions = schema_contents(f"{folder}/_definitions.json", KUBE_VERSION)
    # The same registry kubernetes_validate.validate builds, once per kind instead of per call.
    registry = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = referencing.Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def admit(
    res: ResourceDef, obj: Obj, old: Obj | None, *, cel: bool, validate_builtin: bool
) -> None:
    """Normalise ``obj`` (``stringData``) and raise 422 Invalid with every problem found."""
    if res.plural == "secrets" and "stringData" in obj:
        # stringData is write-only: merged into data (base64), never stored.
        data = obj.setdefault("data", {}) or {}
        for key, value in (obj.pop("stringData") or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
    meta = obj["metadata"]
    name = meta.get("name", "")
    errors: list[str] = []
    pattern = _DNS_LABEL if res.plural in ("services", "namespaces") else _DNS_SUBDOMAIN
    if not name or len(name) > 253 or not pattern.match(name):
        errors.append(f"metadata.name: Invalid value: {name!r}")
    for key, value in (meta.get("labels") or {}).items():
        label_name = key.rpartition("/")[2]
        if not _LABEL_NAME.match(label_name) or len(label_name) > 63:
            errors.append(f"metadata.labels: Invalid value: {key!r}: not a label name")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(f"metadata.labels: Invalid value: {value!r}: not a label value")
    for index, ref in enumerate(meta.get("ownerReferences") or []):
        for req in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(req):
                errors.append(f"metadata.ownerReferences[{index}].{req}: Required value")
    controllers = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    if len(controllers) > 1:
        errors.append("metadata.ownerReferences: Invalid value: only one controller")
    if res.schema is not None:
        errors += res.schema.admit(obj, old, cel=cel)
    elif res.validate and validate_builtin:
        body = {k: v for k, v in obj.items() if k != "status"}
        validator = builtin_validator(res.api_version, res.kind)
        for error in validator.iter_errors(body):
            errors.append(f"{'.'.join(map(str, error.absolute_path))}: {error.message}")
    if res.plural == "statefulsets" and old is not None:
        spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        changed = {k for k in set(spec) | set(old_spec) if spec.get(k) != old_spec.get(k)}
        if changed - _STS_MUTABLE:
            errors.append(
                "spec: Forbidden: updates to statefulset spec for fields other than "
                "'replicas', 'ordinals', 'template', 'updateStrategy', "
                "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                f"forbidden (changed: {', '.join(sorted(changed - _STS_MUTABLE))})"
            )
    if res.plural in ("secrets", "configmaps"):
        size = sum(len(json.dumps(obj.get(k) or {})) for k in ("data", "binaryData"))
        if size > 1024 * 1024:
            errors.append(f"data: Too long: must have at most 1048576 bytes ({size})")
    if res.plural == "secrets":
        for key, value in (obj.get("data") or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (ValueError, TypeError):
                errors.append(f"data[{key}]: Invalid value: not base64")
    if errors:
        raise ApiStatus(
            422,
            "Invalid",
            f'{res.kind} "{name}" is invalid: {"; ".join(errors)}',
            errors,
        )
