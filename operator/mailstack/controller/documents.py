"""What the controller reads from raw documents before (or instead of) parsing them.

Owns the accessors that the informers, the index, the handlers, the plan and the reconciler
share: names, generations, the domain a MailDomain serves or a Mailbox's address is on, the
Secrets they refer to, the owner of a child, the addresses of a LoadBalancer Service, the
generation external-dns has read and whether a MailDomain's DNS records were published. Every
one is best effort: a document the parser would refuse yields an empty answer here, never an
exception (the parser reports what is wrong with it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mailstack.controller.kinds import MAILDOMAIN, Kind
from mailstack.kubedoc import ObjectRef, meta_of, spec_of


def namespaced_name(doc: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of a document: how the index, the caches and the informers key it."""
    ref = ObjectRef.of(doc)
    return ref.namespace, ref.name


def doc_name(doc: Mapping[str, Any]) -> str:
    return ObjectRef.of(doc).name


def doc_generation(doc: Mapping[str, Any]) -> int:
    value = meta_of(doc).get("generation", 0)
    return value if isinstance(value, int) else 0


def address_domain(mailbox: Mapping[str, Any]) -> str | None:
    """The domain part of a raw Mailbox's address (lowercased), or None when there is none."""
    address = spec_of(mailbox).get("address")
    if not isinstance(address, str) or "@" not in address:
        return None
    return address.rpartition("@")[2].strip().lower() or None


def served_domain(maildomain: Mapping[str, Any]) -> str | None:
    """The ``spec.domain`` a raw MailDomain serves (lowercased), or None when there is none."""
    value = spec_of(maildomain).get("domain")
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def served_hostname(maildomain: Mapping[str, Any]) -> str | None:
    """The ``spec.hostname`` of a raw MailDomain (lowercased; ``mail.<domain>`` by default),
    or None when there is neither."""
    value = spec_of(maildomain).get("hostname")
    if isinstance(value, str) and value.strip():
        return value.strip().lower().rstrip(".")
    domain = served_domain(maildomain)
    return f"mail.{domain}" if domain is not None else None


def _ref_name(ref: Any) -> str | None:
    """The name of a ``{name: ...}`` Secret reference, or None when it is not one."""
    if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
        return str(ref["name"])
    return None


def password_secret_name(mailbox: Mapping[str, Any]) -> str | None:
    """The Secret a raw Mailbox's ``spec.passwordSecretRef`` names, if any."""
    return _ref_name(spec_of(mailbox).get("passwordSecretRef"))


def dns_secret_names(maildomain: Mapping[str, Any]) -> set[str]:
    """Names of the Secrets a raw MailDomain's DNS provider settings refer to (its credentials:
    all that removing its records needs)."""
    names: set[str] = set()
    dns = spec_of(maildomain).get("dns")
    provider = dns.get("provider") if isinstance(dns, Mapping) else None
    if isinstance(provider, Mapping):
        for settings in provider.values():
            if not isinstance(settings, Mapping):
                continue
            for field_name, ref in settings.items():
                provider_secret = _ref_name(ref)
                if str(field_name).endswith("SecretRef") and provider_secret is not None:
                    names.add(provider_secret)
    return names


def referenced_secret_names(
    maildomain: Mapping[str, Any], mailboxes: Sequence[Mapping[str, Any]]
) -> set[str]:
    """Names of the user Secrets the raw documents refer to (best effort, before parsing)."""
    names = dns_secret_names(maildomain)
    relay = spec_of(maildomain).get("relay")
    if isinstance(relay, Mapping):
        for ref in ("credentialsSecretRef", "caSecretRef"):
            relay_secret = _ref_name(relay.get(ref))
            if relay_secret is not None:
                names.add(relay_secret)
    for box in mailboxes:
        password = password_secret_name(box)
        if password is not None:
            names.add(password)
    return names


def owner_name(child: Mapping[str, Any], kind: Kind = MAILDOMAIN) -> str | None:
    """The MailDomain (or resource of ``kind``) named in a child's ownerReferences."""
    for ref in meta_of(child).get("ownerReferences") or []:
        if (
            isinstance(ref, Mapping)
            and ref.get("kind") == kind.kind
            and ref.get("apiVersion") == kind.api_version
        ):
            return str(ref.get("name"))
    return None


def load_balancer_addresses(children: Iterable[Any]) -> list[str]:
    """The ingress addresses of the LoadBalancer Services among the children."""
    found: list[str] = []
    for obj in children:
        if not isinstance(obj, Mapping) or obj.get("kind") != "Service":
            continue
        status = obj.get("status")
        balancer = status.get("loadBalancer") if isinstance(status, Mapping) else None
        ingress = balancer.get("ingress") if isinstance(balancer, Mapping) else None
        for entry in ingress if isinstance(ingress, list) else []:
            if isinstance(entry, Mapping) and isinstance(entry.get("ip"), str):
                found.append(entry["ip"])
    return list(dict.fromkeys(found))


def observed_generation(endpoint: Mapping[str, Any] | None) -> int | None:
    """The generation external-dns has read of a DNSEndpoint, when it has read the current one."""
    if not endpoint:
        return None
    generation = meta_of(endpoint).get("generation")
    status = endpoint.get("status")
    observed = status.get("observedGeneration") if isinstance(status, Mapping) else None
    if isinstance(generation, int) and observed == generation:
        return generation
    return None


def published_before(status: object) -> bool:
    """Whether a MailDomain's last status says the operator may have written records for it:
    ``status.dns.published``. A status from before that marker with ``status.dns`` (written once
    the MailDomain rendered, after which its provider was published to) counts as published."""
    if not isinstance(status, Mapping) or not isinstance(status.get("dns"), Mapping):
        return False
    published = status["dns"].get("published")
    return published if isinstance(published, bool) else True
