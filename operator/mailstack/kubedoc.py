"""Raw Kubernetes documents: the one type for them and typed access to their metadata.

Owns ``Obj`` (a Kubernetes object as the API serves it: plain JSON-like dicts) and
``ObjectRef`` (namespace, name and uid read once from a document's metadata), so no module
spells ``doc.get("metadata", {}).get("namespace", "")`` again. Imports nothing of mailstack:
every layer, the agent included, may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

Obj = dict[str, Any]


def meta_of(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The document's metadata, or an empty mapping when it has none (or not a mapping)."""
    meta = doc.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def spec_of(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The document's spec, or an empty mapping when it has none (or not a mapping)."""
    spec = doc.get("spec")
    return spec if isinstance(spec, Mapping) else {}


class ObjectRef(NamedTuple):
    """Which object a document is: namespace, name and uid, as strings ("" when absent)."""

    namespace: str
    name: str
    uid: str = ""

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> ObjectRef:
        meta = meta_of(doc)
        return cls(
            str(meta.get("namespace", "") or ""),
            str(meta.get("name", "") or ""),
            str(meta.get("uid", "") or ""),
        )

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"
