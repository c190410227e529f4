"""Owns the patch formats of PATCH requests: JSON merge patch (RFC 7386), strategic merge patch
(the list merge keys of the fields the tests patch; no ``$patch`` directives) and JSON patch
(RFC 6902; a failed ``test`` is 422).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch

from mailstack.kubedoc import Obj
from tests.component.emulator.resources import ApiStatus

# Strategic merge patch: list merge keys of the fields the tests patch.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "conditions": "type",
    "ownerReferences": "uid",
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    return _merge(target, patch, {})


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Merge patch, except that lists with a known merge key are merged item by item."""
    return _merge(target, patch, MERGE_KEYS)


def _merge(target: Any, patch: Any, merge_keys: Mapping[str, str], field_name: str = "") -> Any:
    if isinstance(patch, list) and isinstance(target, list) and field_name in merge_keys:
        key = merge_keys[field_name]
        result = [copy.deepcopy(item) for item in target]
        index = {item.get(key): i for i, item in enumerate(result) if isinstance(item, dict)}
        for item in patch:
            if isinstance(item, dict) and item.get(key) in index:
                i = index[item[key]]
                result[i] = _merge(result[i], item, merge_keys)
            else:
                result.append(copy.deepcopy(item))
        return result
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value, merge_keys, key)
    return merged


def json_patch(old: Obj, patch: Any) -> Obj:
    """RFC 6902 JSON patch; a failed ``test`` operation is 422 Invalid."""
    try:
        result: Obj = jsonpatch.apply_patch(old, patch)
    except jsonpatch.JsonPatchTestFailed as err:
        raise ApiStatus(422, "Invalid", f"the server rejected our request: {err}") from err
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
        raise ApiStatus(422, "Invalid", str(err)) from err
    return result
