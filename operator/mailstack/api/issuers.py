"""Owns which cert-manager issuers a MailDomain may name under the platform's policies (pure).

With ``tls.issuer: certManager`` the operator creates a Certificate with the ``issuerRef`` the
tenant writes, with the operator's account: tenants need no RBAC on Certificates, and without a
rule a tenant could name any ClusterIssuer of the cluster (the platform's internal CA, trusted
inside the cluster, or the shared ACME account, whose rate limits every tenant under the same
registered domain shares), the certificate and its key landing in a Secret of its namespace.
A policy's ``spec.issuers`` says which ClusterIssuers the MailDomains of its grant may use::

    issuers:
      clusterIssuers: [letsencrypt-prod]   # default: none

An ``Issuer`` of cert-manager (namespaced) is always allowed: it lives in the tenant's own
namespace and issues for it. Any other kind (a ClusterIssuer not listed, an external issuer's
kind, whose scope the operator cannot know) is refused under policies; several policies
granting the domain add up (one listing the ClusterIssuer is enough). Without any policy, a
single team's cluster, every issuer is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailstack.api import validate
from mailstack.api.errors import FieldError
from mailstack.api.models import MailDomain
from mailstack.api.reader import Reader

CERT_MANAGER_GROUP = "cert-manager.io"
MAX_ISSUERS = 64


@dataclass(frozen=True)
class IssuerLimits:
    """The ClusterIssuers a grant's MailDomains may name (cert-manager.io's own kind)."""

    cluster_issuers: tuple[str, ...] = ()


NO_CLUSTER_ISSUERS = IssuerLimits()


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise FieldError("expected a list of ClusterIssuer names")
    if len(value) > MAX_ISSUERS:
        raise FieldError(f"at most {MAX_ISSUERS} names")
    return tuple(sorted({validate.kubernetes_subdomain(item) for item in value}))


def parse_issuers(r: Reader, value: object, path: str = "spec.issuers") -> IssuerLimits:
    """``spec.issuers`` of a MailDomainPolicy (problems go to ``r``)."""
    section = r.mapping(value, path, {"clusterIssuers"})
    return IssuerLimits(r.field(section, "clusterIssuers", path, _names, ()))


Granting = Sequence[tuple[str, IssuerLimits]]  # (policy ref, its issuer limits)


def refusals(dom: MailDomain, granting: Granting) -> list[tuple[str, str]]:
    """(field path, why) when no grant of ``dom`` (policy ref, its issuer limits) allows the
    issuer its certificate names; [] without a grant (refused elsewhere)."""
    ref = dom.tls.cert_manager_issuer
    if not granting or dom.tls.issuer != "certManager" or ref is None:
        return []
    if ref.group == CERT_MANAGER_GROUP and ref.kind == "Issuer":
        return []  # the namespace's own
    cluster = ref.group == CERT_MANAGER_GROUP and ref.kind == "ClusterIssuer"
    if cluster and any(ref.name in limits.cluster_issuers for _, limits in granting):
        return []
    names = " or ".join(policy for policy, _ in granting)
    what = f"ClusterIssuer {ref.name}" if cluster else f"{ref.kind}.{ref.group} {ref.name}"
    why = (
        f"{what} is not allowed by {names} (its spec.issuers.clusterIssuers lists the "
        "ClusterIssuers this namespace may use; an Issuer of the namespace itself always is)"
    )
    return [("spec.tls.certManager.issuerRef", why)]
