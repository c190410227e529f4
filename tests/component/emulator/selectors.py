"""Owns label and field selectors: the predicates of ``labelSelector`` and ``fieldSelector``
(lists and watches). Field selectors: ``metadata.name``, ``metadata.namespace`` and an Event's
``involvedObject.*``, ``reason`` and ``type``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from mailstack.kubedoc import Obj
from tests.component.emulator.resources import ApiStatus


def parse_label_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """The equality- and set-based label selector syntax."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for part in re.findall(r"(?:[^,(]|\([^)]*\))+", text or ""):
        part = part.strip()
        if not part:
            continue
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", part):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", part):
            key, op, value = m.groups()
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif part.startswith("!"):
            checks.append(lambda labels, k=part[1:]: k not in labels)
        elif re.fullmatch(r"[^=!\s]+", part):
            checks.append(lambda labels, k=part: k in labels)
        else:
            raise ApiStatus(400, "BadRequest", f"unable to parse requirement: {part!r}")
    return lambda labels: all(check(labels) for check in checks)


# The fields each kind may be selected by beyond metadata.name and metadata.namespace (the API
# server's field label conversions); a path into the object.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "type",
    ),
}


def _field(obj: Obj, path: str) -> str:
    value: object = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def parse_field_selector(text: str, kind: str = "") -> Callable[[Obj], bool]:
    """``metadata.name`` and ``metadata.namespace``, and the kind's own fields (``KIND_FIELDS``);
    any other field is refused with the API server's 400."""
    allowed = {"metadata.name", "metadata.namespace", *KIND_FIELDS.get(kind, ())}
    checks: list[Callable[[Obj], bool]] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = re.fullmatch(r"\s*([A-Za-z.]+)\s*(==|=|!=)\s*(\S*)\s*", part)
        if m is None or m.group(1) not in allowed:
            raise ApiStatus(400, "BadRequest", f"field label not supported: {part!r}")
        path, op, value = m.groups()

        def check(obj: Obj, p: str = path, v: str = value, neg: bool = op == "!=") -> bool:
            return (_field(obj, p) == v) != neg

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)
