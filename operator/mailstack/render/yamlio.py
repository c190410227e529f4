"""Deterministic YAML output: block style, multi-line strings as literal blocks, stable order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if (
        "\n" in value
        and all(c == "\n" or c == "\t" or ord(c) >= 32 for c in value)
        and not any(line != line.rstrip() for line in value.split("\n"))
    ):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump_objects(objects: Iterable[dict[str, Any]]) -> str:
    """A multi-document YAML stream of the objects, in the given order."""
    return "".join(
        "---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
        for obj in objects
    )


def object_file_name(obj: dict[str, Any]) -> str:
    """``<namespace>/<kind>-<name>.yaml``: unique for every object of a render."""
    meta = obj["metadata"]
    return f"{meta['namespace']}/{obj['kind'].lower()}-{meta['name']}.yaml"
