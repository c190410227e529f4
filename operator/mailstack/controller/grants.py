"""The platform's MailDomainPolicies as the operator knows them (kept by an informer).

The policies are cluster-scoped: only an operator serving every namespace watches them (a
namespaced install serves one team; see docs/operator.md). Each change may grant or withdraw a
domain of any MailDomain, so the handlers mark every MailDomain when the set changes. A policy
the API server let through but the parser refuses (the CRD cannot check everything) grants
nothing and is logged, but still counts as a policy: grants stay required (it fails closed; a
typo in the only policy must not switch enforcement off). Likewise once this process has seen
any policy, grants stay required after the last one goes: replacing the only policy
(``kubectl replace --force``, a GitOps prune and re-create, a rename) must not open a window in
which the operator serves "as for a single team". A platform that means to go back to single-team
mode restarts the operator; one that restarts it during a replacement should set
``policy.requireGrant`` (docs/operator.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mailstack.api.errors import ValidationError
from mailstack.api.policy import Grants, MailDomainPolicy, parse_policy
from mailstack.controller.documents import doc_name

logger = logging.getLogger(__name__)


class PolicySet:
    """MailDomainPolicies by name, and the grants they make."""

    def __init__(self, required: bool = False) -> None:
        self.required = required
        self._policies: dict[str, MailDomainPolicy] = {}
        self._invalid: set[str] = set()
        self._seen = False  # a policy existed in this process's lifetime: sticky enforcement

    def update(self, event: str, body: Mapping[str, Any]) -> bool:
        """Apply one informer event; True when the grants changed."""
        name = doc_name(body)
        before = self.grants
        self._policies.pop(name, None)
        self._invalid.discard(name)
        if event != "DELETED":
            self._seen = True
            try:
                self._policies[name] = parse_policy(body, "cluster")
            except ValidationError as err:
                logger.warning("MailDomainPolicy %s grants nothing: %s", name, err)
                self._invalid.add(name)
        return self.grants != before

    def may_serve(self, namespace: str, domain: str) -> bool:
        """Whether the grants let ``namespace`` serve ``domain``."""
        return self.grants.refusal(namespace, domain) is None

    @property
    def grants(self) -> Grants:
        policies = tuple(self._policies[n] for n in sorted(self._policies))
        return Grants(policies, self.required or self._seen or bool(self._invalid))
