"""Owns the inputs the DNS tests share (unit and e2e): an example.com MailDomain with spec
overrides, and Secrets.
"""

from __future__ import annotations

from typing import Any

from mailstack.api.models import MailDomain, Secret
from mailstack.api.parse import parse_maildomain


def maildomain(provider: dict[str, Any] | None = None, **spec: Any) -> MailDomain:
    """A MailDomain for example.com (namespace mail, name example-com) with spec overrides.

    ``dns`` overrides are merged into the default (which has addresses; ``addresses: None``
    removes them).
    """
    body: dict[str, Any] = {
        "domain": "example.com",
        "dns": {"addresses": {"ipv4": ["192.0.2.10"], "ipv6": ["2001:db8::10"]}},
    }
    body.update({k: v for k, v in spec.items() if k != "dns"})
    body["dns"] = {**body["dns"], **spec.get("dns", {})}
    if provider is not None:
        body["dns"] = {**body["dns"], "provider": provider}
    doc = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "example-com", "namespace": "mail"},
        "spec": body,
    }
    return parse_maildomain(doc)


def secret(name: str, **data: str) -> Secret:
    data_bytes = tuple(sorted((k, v.encode()) for k, v in data.items()))
    return Secret(name, "mail", data_bytes, usable_by=frozenset({"maildomains"}))
