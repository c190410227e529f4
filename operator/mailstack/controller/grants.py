"""The platform's MailDomainPolicies as the operator knows them (kept by an informer).

The policies are cluster-scoped: only an operator serving every namespace watches them (a
namespaced install serves one team; see docs/operator.md). Each change may grant or withdraw a
domain of any MailDomain, so the handlers mark every MailDomain when the set changes. A policy
the API server let through but the parser refuses (the CRD cannot check everything) grants
nothing and is logged, but still counts as a policy: grants stay required (it fails closed; a
typo in the only policy must not switch enforcement off).
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

    def update(self, event: str, body: Mapping[str, Any]) -> bool:
        """Apply one informer event; True when the grants changed."""
        name = doc_name(body)
        before = self.grants
        self._policies.pop(name, None)
        self._invalid.discard(name)
        if event != "DELETED":
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
        return Grants(policies, self.required or bool(self._invalid))
