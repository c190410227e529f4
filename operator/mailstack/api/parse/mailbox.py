"""The Mailbox document: one account, its password reference, aliases, forwarding and Sieve.

Owns: ``parse_mailbox`` and the rules that tie a mailbox's fields together (aliases on its own
domain and never its own address, ``keepCopy`` only with ``forwardTo``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailstack.api import models, validate
from mailstack.api.errors import FieldError
from mailstack.api.parse.common import (
    check_header,
    creation_timestamp,
    metadata,
    raise_problems,
    reader_for,
    secret_ref,
)
from mailstack.api.reader import boolean

SPEC_FIELDS = frozenset(
    {
        "address",
        "passwordSecretRef",
        "displayName",
        "quota",
        "aliases",
        "forwardTo",
        "keepCopy",
        "suspended",
        "sieve",
    }
)


def parse_mailbox(
    doc: Mapping[str, Any], source: str = "", default_namespace: str = "default"
) -> models.Mailbox:
    """A Mailbox document to a ``Mailbox``; raises ``ValidationError`` with every problem."""
    r = reader_for(doc, source, default_namespace)
    check_header(r, doc, "Mailbox")
    name, namespace, generation, uid = metadata(r, doc, default_namespace)
    created = creation_timestamp(r, doc)
    if doc.get("spec") is None:
        r.fail("spec", "is required")
    spec = r.mapping(doc.get("spec"), "spec", SPEC_FIELDS)
    address = r.field(spec, "address", "spec", validate.own_address)
    local, domain = address if r.present(address) else ("", "")
    default = models.Mailbox
    password = secret_ref(
        r, spec.get("passwordSecretRef"), "spec.passwordSecretRef", default.default_password_key
    )
    forward_to = r.items(spec, "forwardTo", "spec", validate.external_address)
    keep_copy = r.field(spec, "keepCopy", "spec", boolean, default.keep_copy)
    if keep_copy and not forward_to:
        r.fail("spec.keepCopy", "only meaningful with forwardTo")
    result = models.Mailbox(
        name=name,
        namespace=namespace,
        address=f"{local}@{domain}",
        local_part=local,
        domain=domain,
        password=password or models.SecretKeyRef("", default.default_password_key),
        display_name=r.field(
            spec, "displayName", "spec", validate.display_name, default.display_name
        ),
        quota=r.field(spec, "quota", "spec", _quota, default.quota),
        aliases=r.items(spec, "aliases", "spec", lambda value: _alias(value, local, domain)),
        forward_to=forward_to,
        keep_copy=keep_copy,
        suspended=r.field(spec, "suspended", "spec", boolean, default.suspended),
        sieve=r.field(spec, "sieve", "spec", validate.sieve_script, default.sieve),
        generation=generation,
        uid=uid,
        created=created,
    )
    raise_problems(r)
    return result


def _alias(value: object, local: str, domain: str) -> str:
    """Another address of ``local@domain``; a bare local part is completed with ``domain``."""
    if not isinstance(value, str):
        raise FieldError(f"expected an address or a local part (string), got {value!r}")
    text = value if "@" in value else f"{value}@{domain}"
    alias_local, alias_domain = validate.own_address(text)
    if domain and alias_domain != domain:
        raise FieldError(f"alias {text!r} must be on the mailbox's domain {domain}")
    if alias_local == local:
        raise FieldError(f"alias {text!r} is the mailbox's own address")
    return f"{alias_local}@{alias_domain}"


def _quota(value: object) -> int:
    size = validate.size_bytes(value)
    if size < 1024**2:
        raise FieldError(f"quota {value!r} is below 1Mi")
    return size
