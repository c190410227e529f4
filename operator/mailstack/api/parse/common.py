"""What every document parser shares: the reader of one document, the header and metadata checks,
Secret key references, maps of strings, lists of sections and the host-or-IP validator.

Owns: ``document_ref`` (how messages name a document), ``MAX_NAME_LENGTH`` and the metadata fields
a document may carry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mailstack.api import models, validate
from mailstack.api.errors import FieldError, ValidationError
from mailstack.api.reader import Reader, integer, join, string
from mailstack.kubedoc import meta_of

T = TypeVar("T")

MAX_NAME_LENGTH = 48  # <name>-mta-0 plus the StatefulSet revision label must fit 63 characters

# What the API server may put in metadata; anything else there is a typo.
METADATA_FIELDS = frozenset(
    {
        "name",
        "namespace",
        "generation",
        "uid",
        "labels",
        "annotations",
        "resourceVersion",
        "creationTimestamp",
        "finalizers",
        "managedFields",
        "ownerReferences",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generateName",
        "selfLink",
    }
)


def document_ref(doc: object, default_namespace: str = "default") -> str:
    """``Kind/namespace/name`` for messages, as well as it can be told from a raw document."""
    if not isinstance(doc, Mapping):
        return f"?/{default_namespace}/?"
    meta = meta_of(doc)
    namespace = meta.get("namespace") or default_namespace
    return f"{doc.get('kind', '?')}/{namespace}/{meta.get('name', '?')}"


def reader_for(doc: object, source: str, default_namespace: str) -> Reader:
    """The reader of one document; a document that is no mapping is refused at once."""
    reader = Reader(document_ref(doc, default_namespace), source)
    if not isinstance(doc, Mapping):
        reader.fail("", "expected a mapping (a Kubernetes object)")
        raise ValidationError(reader.problems)
    return reader


def raise_problems(r: Reader) -> None:
    """Raise ``ValidationError`` with every problem noted, if there is any."""
    if r.problems:
        raise ValidationError(r.problems)


def option_json(r: Reader, text: str, path: str) -> object:
    """The JSON value of an operator option (the chart renders it with ``toJson``); None when
    empty. Raises ``ValidationError`` when it is not JSON."""
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError as err:
        r.fail(path, f"not JSON: {err}")
        raise ValidationError(r.problems) from None


def check_header(r: Reader, doc: Mapping[str, Any], kind: str, status: bool = True) -> None:
    """``apiVersion`` and ``kind`` of one of our resources, and no unknown top-level field
    (``status`` is one, unless the kind has none)."""
    if doc.get("apiVersion") != models.API_VERSION:
        r.fail("apiVersion", f"expected {models.API_VERSION}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != kind:
        r.fail("kind", f"expected {kind}, got {doc.get('kind')!r}")
    r.mapping(
        doc, "", {"apiVersion", "kind", "metadata", "spec"} | ({"status"} if status else set())
    )


def metadata(
    r: Reader, doc: Mapping[str, Any], default_namespace: str
) -> tuple[str, str, int, str]:
    """Name, namespace, generation and uid of one of our resources."""
    meta = r.mapping(doc.get("metadata"), "metadata", METADATA_FIELDS)
    name = r.field(meta, "name", "metadata", lambda x: validate.kubernetes_name(x, MAX_NAME_LENGTH))
    namespace = r.field(meta, "namespace", "metadata", validate.kubernetes_name, default_namespace)
    generation = r.field(meta, "generation", "metadata", integer(0, 2**63 - 1), 0)
    uid = r.field(meta, "uid", "metadata", string, "")
    return name, namespace, generation, uid


# The form the API server writes metadata.creationTimestamp in (RFC 3339, UTC, "Z").
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")


def _timestamp(value: object) -> str:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise FieldError(f"expected an RFC 3339 UTC time like 2026-01-31T12:00:00Z, got {value!r}")
    return value


def creation_timestamp(r: Reader, doc: Mapping[str, Any]) -> str:
    """``metadata.creationTimestamp`` ("" when absent, as in files): the age of a claim."""
    return r.field(meta_of(doc), "creationTimestamp", "metadata", _timestamp, "")


def secret_ref(
    r: Reader, value: object, path: str, default_key: str | None
) -> models.SecretKeyRef | None:
    """A required ``{name, key}`` reference; ``key`` is required too when there is no default."""
    if value is None:
        r.fail(path, "is required")
        return None
    if not isinstance(value, Mapping):
        r.mapping(value, path, {"name", "key"})  # reports "expected a mapping"
        return None
    ref = r.mapping(value, path, {"name", "key"})
    name = r.field(ref, "name", path, validate.kubernetes_subdomain)
    key = (
        r.field(ref, "key", path, validate.secret_key, default_key)
        if default_key
        else r.field(ref, "key", path, validate.secret_key)
    )
    if not (r.present(name) and r.present(key)):
        return None
    return models.SecretKeyRef(name, key)


def host_or_ip(value: object) -> str:
    """An IP address, or else a domain name (the message is the domain name's)."""
    try:
        return validate.any_ip_address(value)
    except FieldError:
        pass
    try:
        return validate.domain_name(value)
    except FieldError as err:
        raise FieldError(f"expected a host name or an IP address: {err.message}") from None


def string_map(
    r: Reader,
    value: object,
    path: str,
    key: Callable[[Any], str],
    item: Callable[[Any], str],
    what: str,
    max_entries: int | None = None,
) -> tuple[tuple[str, str], ...]:
    """A map of strings (``what``: "annotation key to value"), sorted by key."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        r.fail(path, f"expected a mapping of {what}")
        return ()
    if max_entries is not None and len(value) > max_entries:
        r.fail(path, f"at most {max_entries} entries, got {len(value)}")
    pairs: list[tuple[str, str]] = []
    for name, text in sorted(value.items(), key=lambda entry: str(entry[0])):
        try:
            pairs.append((key(name), item(text)))
        except FieldError as err:
            r.fail(join(path, str(name)), err.message)
    return tuple(pairs)


def sections(
    r: Reader,
    value: object,
    path: str,
    parse: Callable[[Reader, object, str], T],
    max_items: int,
    min_items: int = 0,
) -> tuple[T, ...]:
    """A list whose items are sections (mappings), each parsed at its own path."""
    items = r.listed(value, path, max_items)
    if isinstance(value, list) and len(items) < min_items:
        r.fail(path, f"at least {min_items} item{'s' if min_items > 1 else ''} needed")
    return tuple(parse(r, item, join(path, index)) for index, item in enumerate(items))
