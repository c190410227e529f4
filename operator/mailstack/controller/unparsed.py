"""Owns what a MailDomain whose spec does not parse still claims: its domain and host name.

An invalid spec keeps the objects of the last valid one ("bad input loses nothing"), but only
while its namespace may still hold its names: whether the grants give them, and whether
another MailDomain serves its domain now (an invalid claim holds nothing in the contest, so
a younger claim wins it), is decided from ``spec.domain`` and ``spec.hostname`` alone, read
with the parser's validators, whatever else is wrong. Otherwise a tenant whose domain the
platform moves elsewhere would keep serving, publishing and certifying it behind a parse error
the CRD accepts. ``spec.domain`` is immutable (the CRD), so it names what the last objects
serve. Pure; ``plan.render_domain`` calls it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailstack.api import validate
from mailstack.api.errors import FieldError, Problem
from mailstack.api.parse.common import document_ref
from mailstack.api.policy import Grants
from mailstack.controller import reasons
from mailstack.kubedoc import meta_of


def _name(value: object) -> str | None:
    try:
        return validate.domain_name(value)
    except FieldError:
        return None


def claimed_names(doc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``spec.domain`` and ``spec.hostname`` (``mail.<domain>`` by default) of a raw
    MailDomain, each None when it does not validate."""
    spec = doc.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    domain = _name(spec.get("domain"))
    if spec.get("hostname") is not None:
        return domain, _name(spec.get("hostname"))
    return domain, f"mail.{domain}" if domain is not None else None


def unparsed_refusal(
    doc: Mapping[str, Any], grants: Grants, served_by: Mapping[str, str]
) -> tuple[str, Problem] | None:
    """Why the MailDomain ``doc``, whose spec does not parse, must stop serving (the reason and
    a problem saying what to do), or None when its last objects stay. ``served_by``: the
    domains the other MailDomains contending with it serve now, with the one serving each."""
    ref = document_ref(doc)
    namespace = str(meta_of(doc).get("namespace") or "default")
    domain, hostname = claimed_names(doc)
    if grants.enforced:
        for path, name in (("spec.domain", domain), ("spec.hostname", hostname)):
            if name is None:
                why = "is not a valid domain name, which no MailDomainPolicy grants"
                return reasons.DOMAIN_NOT_GRANTED, Problem(ref, path, why)
            refusal = grants.refusal(namespace, name)
            if refusal is not None:
                return reasons.DOMAIN_NOT_GRANTED, Problem(ref, path, refusal)
    if domain is not None and domain in served_by:
        why = (
            f"{domain} is served by {served_by[domain]} now: a spec that does not parse holds "
            "no claim; fix the spec's other problems to claim it again"
        )
        return reasons.DOMAIN_CONFLICT, Problem(ref, "spec.domain", why)
    return None
