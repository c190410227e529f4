"""Slim copies of Mailboxes and MailDomains, indexed the ways the handlers look them up.

Kept current by the informers; a reconcile reads its Mailboxes from here (no list call per
event), a Mailbox event finds its MailDomains here, a Secret event finds who refers to it.
Every ``put``/``drop`` returns the MailDomains whose render the change may affect (before and
after: a Mailbox whose address moved between domains concerns both).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from mailstack.api.claims import at_or_above, at_or_under
from mailstack.api.pod_models import MailPods
from mailstack.api.policy import Grants
from mailstack.controller.documents import (
    address_domain,
    dns_secret_names,
    namespaced_name,
    password_secret_name,
    published_before,
    referenced_secret_names,
    served_domain,
    served_hostname,
)
from mailstack.controller.memory import DomainKey
from mailstack.controller.plan import NamespaceView, forget_contender, parsed_contender
from mailstack.controller.serving_refs import WITHIN, OverLimits, on_shared_server, over_limits
from mailstack.kubedoc import Obj, meta_of

# creationTimestamp: the age of a MailDomain's claim on its domain (``MailDomain.claim_order``).
KEPT_METADATA = ("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp")


def slim(body: Mapping[str, Any]) -> Obj:
    """What is kept of an object: enough to parse it and to compare its status."""
    meta = meta_of(body)
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {key: meta[key] for key in KEPT_METADATA if key in meta},
        "spec": body.get("spec"),
        "status": body.get("status"),
    }


def _claim_of(doc: Mapping[str, Any]) -> tuple[object, ...]:
    """What the contest for names reads of a MailDomain (``api.claims``, ``plan``): its parsed
    spec (None when invalid: an invalid claim holds nothing, however it changes) but for the
    pod settings other than annotations (the only ones its admission reads), its identity, age
    and proof; a change elsewhere hands no name over, so another tenant's churn on them
    reconciles no other MailDomain."""
    meta = meta_of(doc)
    status = doc.get("status")
    proof = status.get("proof") if isinstance(status, Mapping) else None
    parsed = parsed_contender(doc)
    if parsed is not None:
        parsed = replace(parsed, generation=0, pods=MailPods(annotations=parsed.pods.annotations))
    return (parsed, meta.get("uid"), meta.get("creationTimestamp"), proof)


class Documents:
    def __init__(
        self,
        granted: Callable[[str, str], bool] | None = None,
        grants: Callable[[], Grants] = Grants,
    ) -> None:
        self._boxes: dict[tuple[str, str], Obj] = {}
        self._boxes_by_domain: dict[tuple[str, str | None], dict[str, Obj]] = defaultdict(dict)
        self._boxes_by_secret: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._domains: dict[tuple[str, str], Obj] = {}
        # Cluster-wide: a domain is served once across all namespaces (the oldest claim).
        self._domains_by_domain: dict[str | None, dict[DomainKey, Obj]] = defaultdict(dict)
        # Host names and nested names contend too (``api.claims``).
        self._domains_by_hostname: dict[str | None, dict[DomainKey, Obj]] = defaultdict(dict)
        self._domain_secrets: dict[tuple[str, str], set[str]] = defaultdict(set)
        # Called when nothing refers to a Secret any more (``SecretCache.release``).
        self.released: Callable[[str, str], None] = lambda namespace, secret: None
        # Whether the platform's policies let a namespace serve a domain (``Grants.refusal``):
        # a MailDomain they do not refers to nothing, nor do its Mailboxes.
        self.granted = granted or (lambda namespace, domain: True)
        # The grants in force (their limits): what of a bounded namespace they refuse, by
        # namespace, computed when a reference is asked for, forgotten when the namespace changes.
        self.grants = grants
        self._over_limits: dict[str, OverLimits] = {}
        # Whether a MailServer's last pass served the MailDomain (namespace, name): then its
        # references count as a stack's do (``server_handlers.Servers.serving``).
        self.served_by_server: Callable[[str, str], bool] = lambda namespace, name: False

    # --- Mailboxes ------------------------------------------------------------------------

    def put_mailbox(self, body: Mapping[str, Any]) -> set[DomainKey]:
        doc = slim(body)
        namespace, name = namespaced_name(doc)
        self._over_limits.pop(namespace, None)
        old = self._boxes.get((namespace, name))
        affected = self._drop_mailbox(namespace, name)
        domain = address_domain(doc)
        self._boxes[(namespace, name)] = doc
        self._boxes_by_domain[(namespace, domain)][name] = doc
        secret = password_secret_name(doc)
        if secret is not None:
            self._boxes_by_secret[(namespace, secret)].add(name)
        self._release(namespace, old)
        return affected | self._owners(namespace, domain)

    def drop_mailbox(self, namespace: str, name: str) -> set[DomainKey]:
        self._over_limits.pop(namespace, None)
        old = self._boxes.get((namespace, name))
        affected = self._drop_mailbox(namespace, name)
        self._release(namespace, old)
        return affected

    def _drop_mailbox(self, namespace: str, name: str) -> set[DomainKey]:
        old = self._boxes.pop((namespace, name), None)
        if old is None:
            return set()
        domain = address_domain(old)
        self._remove(self._boxes_by_domain, (namespace, domain), name)
        secret = password_secret_name(old)
        if secret is not None:
            self._discard(self._boxes_by_secret, (namespace, secret), name)
        return self._owners(namespace, domain)

    def mailboxes(self, namespace: str, domain: str | None) -> list[Obj]:
        """The Mailboxes of ``namespace`` whose address is on ``domain``, by name."""
        found = self._boxes_by_domain.get((namespace, domain), {})
        return [found[name] for name in sorted(found)]

    def mailbox(self, namespace: str, name: str) -> Obj | None:
        return self._boxes.get((namespace, name))

    def mailbox_count(self) -> int:
        return len(self._boxes)

    # --- MailDomains ----------------------------------------------------------------------

    def put_domain(self, body: Mapping[str, Any]) -> set[DomainKey]:
        doc = slim(body)
        namespace, name = namespaced_name(doc)
        self._over_limits.pop(namespace, None)
        old = self._domains.get((namespace, name))
        affected = self._drop_domain(namespace, name)
        domain = served_domain(doc)
        self._domains[(namespace, name)] = doc
        self._domains_by_domain[domain][(namespace, name)] = doc
        self._domains_by_hostname[served_hostname(doc)][(namespace, name)] = doc
        for secret in referenced_secret_names(doc, ()):
            self._domain_secrets[(namespace, secret)].add(name)
        self._release(namespace, old, maildomain=True)
        if old is not None and (
            not (self._takes_part(old) or self._takes_part(doc)) or _claim_of(old) == _claim_of(doc)
        ):
            # A metadata-only or status-only event (labels, conditions), or a change of a claim
            # the grants refuse before any contest: no other MailDomain is judged differently;
            # another tenant's churn costs nothing.
            return {(namespace, name)}
        return affected | self._affected_by(doc)

    def _takes_part(self, doc: Mapping[str, Any]) -> bool:
        """Whether the grants let the MailDomain ``doc``'s namespace hold its domain and host
        name: a claim they refuse takes part in no contest (``assemble``), whatever its spec
        says; a change of the grants re-checks every MailDomain anyway."""
        namespace = namespaced_name(doc)[0]
        names = (served_domain(doc), served_hostname(doc))
        return all(name is not None and self.granted(namespace, name) for name in names)

    def drop_domain(self, namespace: str, name: str) -> set[DomainKey]:
        self._over_limits.pop(namespace, None)
        old = self._domains.get((namespace, name))
        affected = self._drop_domain(namespace, name)
        self._release(namespace, old, maildomain=True)
        if old is not None:
            forget_contender(old)
        return affected

    def _drop_domain(self, namespace: str, name: str) -> set[DomainKey]:
        old = self._domains.pop((namespace, name), None)
        if old is None:
            return set()
        domain = served_domain(old)
        self._remove(self._domains_by_domain, domain, (namespace, name))
        self._remove(self._domains_by_hostname, served_hostname(old), (namespace, name))
        for secret in referenced_secret_names(old, ()):
            self._discard(self._domain_secrets, (namespace, secret), name)
        return self._affected_by(old) | {(namespace, name)}

    def siblings(self, domain: str | None) -> list[Obj]:
        """The MailDomains of every namespace that claim ``domain`` (``assemble`` picks the one
        that serves it: the oldest claim)."""
        found = self._domains_by_domain.get(domain, {})
        return [found[key] for key in sorted(found)]

    def contenders(self, doc: Mapping[str, Any]) -> list[Obj]:
        """The MailDomains of every namespace that ``assemble`` needs to judge the raw
        MailDomain ``doc``'s claim: those contending with it (``_contender_keys``) and those
        contending with the other claims on its domain (whether they hold their host names)."""
        keys = self._contender_keys(doc)
        for sibling in self._domains_by_domain.get(served_domain(doc), {}).values():
            keys |= self._contender_keys(sibling)
        return [self._domains[key] for key in sorted(keys)]

    def domain(self, namespace: str, name: str) -> Obj | None:
        return self._domains.get((namespace, name))

    def domain_keys(self) -> set[DomainKey]:
        return set(self._domains)

    def domain_count(self) -> int:
        return len(self._domains)

    def has_domain(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._domains

    def domain_names(self, namespace: str, domain: str | None) -> list[str]:
        """The MailDomains of ``namespace`` that claim ``domain``."""
        if domain is None:
            return []
        return sorted(n for ns, n in self._domains_by_domain.get(domain, {}) if ns == namespace)

    def in_namespace(self, namespace: str) -> NamespaceView:
        """Every MailDomain and every Mailbox of ``namespace``, by name (the namespace view
        its limits count)."""
        domains = [doc for (ns, _), doc in sorted(self._domains.items()) if ns == namespace]
        boxes = [doc for (ns, _), doc in sorted(self._boxes.items()) if ns == namespace]
        return NamespaceView(domains, boxes)

    def namespace_domain_keys(self, namespace: str) -> set[DomainKey]:
        return {key for key in self._domains if key[0] == namespace}

    # --- Secrets --------------------------------------------------------------------------

    def secret_users(self, namespace: str, secret: str) -> set[DomainKey]:
        """The MailDomains whose render reads the Secret (a password, relay credentials or CA)."""
        users = {(namespace, n) for n in self._domain_secrets.get((namespace, secret), ())}
        for box in self._boxes_by_secret.get((namespace, secret), ()):
            doc = self._boxes.get((namespace, box))
            if doc is not None:
                users |= self._owners(namespace, address_domain(doc))
        return users

    def references(self, namespace: str, secret: str) -> bool:
        """Whether a MailDomain of the namespace that may serve its domain names the Secret, or
        a Mailbox on the domain of such a MailDomain of its namespace does. A Mailbox of no
        MailDomain (or of an ungranted one) refers to nothing: a tenant's Mailboxes no one
        serves, each naming a large Secret, would otherwise fill the operator's memory (#13
        re-check F2). Of an ungranted MailDomain only what its withdrawal needs counts: its DNS
        provider's credentials, while it may hold records (``status.dns.published``); its relay
        Secrets are neither read nor kept (#13 check G11). The same holds for a MailDomain that
        serves nothing though granted: on a shared server, or over its namespace's
        ``maxMailDomains``; a Mailbox over ``maxMailboxes``/``maxQuota`` refers to nothing
        (``serving_refs``, #13 check H1)."""
        key = (namespace, secret)
        for name in self._domain_secrets.get(key, ()):
            doc = self._domains.get((namespace, name))
            if doc is not None and self._domain_refers(namespace, doc, secret):
                return True
        for name in self._boxes_by_secret.get(key, ()):
            box = self._boxes.get((namespace, name))
            if box is not None and self._box_refers(namespace, box):
                return True
        return False

    def _domain_refers(self, namespace: str, doc: Obj, secret: str) -> bool:
        """Whether the MailDomain ``doc``'s reference to ``secret`` counts (``references``)."""
        if self._serves(namespace, doc):
            return True
        return secret in dns_secret_names(doc) and published_before(doc.get("status"))

    def _box_refers(self, namespace: str, box: Obj) -> bool:
        """Whether the Mailbox ``box``'s password reference counts (``references``)."""
        if meta_of(box).get("name") in self._over_limits_of(namespace).mailboxes:
            return False
        domain = address_domain(box)
        return any(
            self._serves(namespace, doc)
            for name in self.domain_names(namespace, domain)
            if (doc := self._domains.get((namespace, name))) is not None
        )

    def _serves(self, namespace: str, doc: Obj) -> bool:
        """Whether the MailDomain ``doc`` may be rendered: granted, not on a shared server (but
        one that served it) and within its namespace's limits."""
        if not self._may_serve(namespace, served_domain(doc)):
            return False
        name = str(meta_of(doc).get("name"))
        if on_shared_server(doc) and not self.served_by_server(namespace, name):
            return False
        return meta_of(doc).get("name") not in self._over_limits_of(namespace).domains

    def _over_limits_of(self, namespace: str) -> OverLimits:
        found = self._over_limits.get(namespace)
        if found is None:
            grants = self.grants()
            found = WITHIN
            if grants.limits_for(namespace).bounded:
                view = self.in_namespace(namespace)
                found = over_limits(namespace, grants, view.domains, view.mailboxes)
            self._over_limits[namespace] = found
        return found

    def _may_serve(self, namespace: str, domain: str | None) -> bool:
        return domain is not None and self.granted(namespace, domain)

    def release_unreferenced(self, namespace: str | None = None) -> None:
        """Release every Secret (of ``namespace``, or all) that nothing refers to now: after the
        grants changed, a MailDomain may no longer serve."""
        self._over_limits.clear()
        keys = {*self._domain_secrets, *self._boxes_by_secret}
        for ns, secret in sorted(keys):
            if (namespace is None or ns == namespace) and not self.references(ns, secret):
                self.released(ns, secret)

    def _release(
        self, namespace: str, old: Mapping[str, Any] | None, maildomain: bool = False
    ) -> None:
        """The Secrets the replaced or dropped document ``old`` named that nothing names now
        (for a ``maildomain``, also those of the Mailboxes on its domain)."""
        if old is None:
            return
        names = {*referenced_secret_names(old, ()), password_secret_name(old)}
        if maildomain:
            boxes = self.mailboxes(namespace, served_domain(old))
            names |= {password_secret_name(box) for box in boxes}
        for secret in names:
            if secret is not None and not self.references(namespace, secret):
                self.released(namespace, secret)

    # --- helpers --------------------------------------------------------------------------

    def _owners(self, namespace: str, domain: str | None) -> set[DomainKey]:
        return {(namespace, n) for n in self.domain_names(namespace, domain)}

    def _affected_by(self, doc: Mapping[str, Any]) -> set[DomainKey]:
        """The MailDomains whose ``contenders`` hold ``doc``: one change may hand a domain or a
        host name over."""
        keys = self._contender_keys(doc)
        for key in list(keys):
            keys |= set(self._domains_by_domain.get(served_domain(self._domains[key]), {}))
        return keys

    def _contender_keys(self, doc: Mapping[str, Any]) -> set[DomainKey]:
        """Every MailDomain, in any namespace, whose claim contends with ``doc``'s (a relation
        both ways, ``api.claims``): the same domain or host name, a domain or host name its
        host name is or is under, a host name that is or is under its domain or its host name,
        a domain or host name its domain is under, a domain under its domain or equal to or
        under its host name."""
        domain, hostname = served_domain(doc), served_hostname(doc)
        keys = set(self._domains_by_domain.get(domain, {}))
        indexes = (self._domains_by_domain, self._domains_by_hostname)
        for above in {*at_or_above(hostname or ""), *at_or_above(domain or "")}:  # own names too
            for index in indexes:
                keys |= set(index.get(above, {}))
        for index in indexes:
            for name, claims in index.items():
                if name is None:
                    continue
                if (domain is not None and at_or_under(name, domain)) or (
                    hostname is not None and at_or_under(name, hostname)
                ):
                    keys |= set(claims)
        return keys

    @staticmethod
    def _remove(index: dict[Any, dict[Any, Obj]], key: Any, name: Any) -> None:
        bucket = index.get(key)
        if bucket is not None:
            bucket.pop(name, None)
            if not bucket:
                del index[key]

    @staticmethod
    def _discard(index: dict[Any, set[str]], key: Any, name: str) -> None:
        bucket = index.get(key)
        if bucket is not None:
            bucket.discard(name)
            if not bucket:
                del index[key]
