"""A v1 Secret document: ``data`` (base64) and ``stringData`` (plain) decoded into one mapping.

Owns: ``parse_secret``; ``stringData`` wins over ``data`` for a key in both, as in the API server.
The ``mailstack.dev/usable-by`` label is read into ``Secret.usable_by`` (``api.secret_access``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

from mailstack.api import models, validate
from mailstack.api.errors import FieldError
from mailstack.api.parse.common import METADATA_FIELDS, raise_problems, reader_for
from mailstack.api.reader import Reader, join, string
from mailstack.api.secret_access import usable_by


def parse_secret(
    doc: Mapping[str, Any], source: str = "", default_namespace: str = "default"
) -> models.Secret:
    """A v1 Secret document (``data`` base64, ``stringData`` plain) to a ``Secret``."""
    r = reader_for(doc, source, default_namespace)
    if doc.get("apiVersion") != "v1" or doc.get("kind") != "Secret":
        r.fail("kind", "expected apiVersion v1, kind Secret")
    meta = r.mapping(doc.get("metadata"), "metadata", METADATA_FIELDS)
    name = r.field(meta, "name", "metadata", validate.kubernetes_subdomain)
    namespace = r.field(meta, "namespace", "metadata", validate.kubernetes_name, default_namespace)
    data = _decoded(r, doc.get("data"), "data", "base64 value", _base64)
    data.update(_decoded(r, doc.get("stringData"), "stringData", "string", _plain))
    raise_problems(r)
    labels = meta.get("labels")
    return models.Secret(
        name=name,
        namespace=namespace,
        data=tuple(sorted(data.items())),
        usable_by=usable_by(labels if isinstance(labels, Mapping) else None),
    )


def _decoded(
    r: Reader, value: object, path: str, what: str, decode: Callable[[object], bytes]
) -> dict[str, bytes]:
    """``data`` or ``stringData``: each key checked, each value decoded."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        r.fail(path, f"expected a mapping of key to {what}")
        return {}
    data: dict[str, bytes] = {}
    for key, text in value.items():
        try:
            validate.secret_key(key)
            data[key] = decode(text)
        except FieldError as err:
            r.fail(join(path, str(key)), err.message)
    return data


def _base64(value: object) -> bytes:
    if not isinstance(value, str):
        raise FieldError("expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise FieldError("is not valid base64") from None


def _plain(value: object) -> bytes:
    return string(value).encode()
