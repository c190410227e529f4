"""A v1 Secret document: ``data`` (base64) and ``stringData`` (plain) decoded into one mapping.

Owns: ``parse_secret``; ``stringData`` wins over ``data`` for a key in both, as in the API server.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from mailstack.api import models, validate
from mailstack.api.errors import FieldError
from mailstack.api.parse.common import METADATA_FIELDS, raise_problems, reader_for
from mailstack.api.reader import Reader, join, string


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
    data = _data(r, doc.get("data"))
    data.update(_string_data(r, doc.get("stringData")))
    raise_problems(r)
    return models.Secret(name=name, namespace=namespace, data=tuple(sorted(data.items())))


def _data(r: Reader, value: object) -> dict[str, bytes]:
    if not value:
        return {}
    if not isinstance(value, Mapping):
        r.fail("data", "expected a mapping of key to base64 value")
        return {}
    data: dict[str, bytes] = {}
    for key, text in value.items():
        try:
            validate.secret_key(key)
            if not isinstance(text, str):
                raise FieldError("expected a base64 string")
            data[key] = base64.b64decode(text, validate=True)
        except FieldError as err:
            r.fail(join("data", str(key)), err.message)
        except (binascii.Error, ValueError):
            r.fail(join("data", str(key)), "is not valid base64")
    return data


def _string_data(r: Reader, value: object) -> dict[str, bytes]:
    if not value:
        return {}
    if not isinstance(value, Mapping):
        r.fail("stringData", "expected a mapping of key to string")
        return {}
    data: dict[str, bytes] = {}
    for key, text in value.items():
        try:
            validate.secret_key(key)
            data[key] = string(text).encode()
        except FieldError as err:
            r.fail(join("stringData", str(key)), err.message)
    return data
