"""The API resources the operator reads and writes, and how their URLs are built.

A static table instead of API discovery: the operator only ever touches these kinds, and a fixed
table keeps every request predictable (and the RBAC rules in the Helm chart in step with it:
``tests/unit/test_chart.py`` checks that every kind here is granted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote

from mailstack.api.models import GROUP, VERSION


@dataclass(frozen=True)
class Kind:
    """One API resource: ``apiVersion`` + ``kind`` and where it is served."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True
    status_subresource: bool = False

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        """The URL path of the collection, of one object, or of one object's subresource."""
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if sub:
                base += f"/{sub}"
        return base

    def key(self, name: str) -> ChildKey:
        """The key of this kind's object ``name`` among a MailDomain's children."""
        return ChildKey(self.api_version, self.kind, name)


class ChildKey(NamedTuple):
    """One child of a MailDomain: apiVersion, kind and name (its namespace is the MailDomain's)."""

    api_version: str
    kind: str
    name: str

    @property
    def resource(self) -> Kind:
        """The child's entry in the kind table (where it is served)."""
        return kind_of({"apiVersion": self.api_version, "kind": self.kind})

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


MAILDOMAIN = Kind(f"{GROUP}/{VERSION}", "MailDomain", "maildomains", status_subresource=True)
MAILBOX = Kind(f"{GROUP}/{VERSION}", "Mailbox", "mailboxes", status_subresource=True)
# A shared mail server (#18): its children are owned by it, its joined domains' by theirs.
MAILSERVER = Kind(f"{GROUP}/{VERSION}", "MailServer", "mailservers", status_subresource=True)
# The platform's grants (api.policy): cluster-scoped, read only.
MAILDOMAIN_POLICY = Kind(
    f"{GROUP}/{VERSION}", "MailDomainPolicy", "maildomainpolicies", namespaced=False
)
SECRET = Kind("v1", "Secret", "secrets")
CONFIG_MAP = Kind("v1", "ConfigMap", "configmaps")
SERVICE = Kind("v1", "Service", "services", status_subresource=True)
SERVICE_ACCOUNT = Kind("v1", "ServiceAccount", "serviceaccounts")
PVC = Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims", status_subresource=True)
EVENT = Kind("v1", "Event", "events")
# The MTA pods, listed for their addresses: the operator reads the tripwire's observations from
# their postfix agents (controller/tripwire.py).
POD = Kind("v1", "Pod", "pods", status_subresource=True)
STATEFUL_SET = Kind("apps/v1", "StatefulSet", "statefulsets", status_subresource=True)
NETWORK_POLICY = Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
PDB = Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", status_subresource=True)
CERTIFICATE = Kind("cert-manager.io/v1", "Certificate", "certificates", status_subresource=True)
DNS_ENDPOINT = Kind(
    "externaldns.k8s.io/v1alpha1", "DNSEndpoint", "dnsendpoints", status_subresource=True
)

# kopf's peering objects (the operator only reads them; kopf writes the keep-alives).
CLUSTER_PEERING = Kind("kopf.dev/v1", "ClusterKopfPeering", "clusterkopfpeerings", namespaced=False)
PEERING = Kind("kopf.dev/v1", "KopfPeering", "kopfpeerings")

# Everything render/ may produce, in the order it produces it, then the DNSEndpoint of the
# externalDNS provider (written once the Services' load-balancer addresses are known).
CHILD_KINDS: tuple[Kind, ...] = (
    SERVICE_ACCOUNT,
    CONFIG_MAP,
    SECRET,
    CERTIFICATE,
    SERVICE,
    STATEFUL_SET,
    NETWORK_POLICY,
    PDB,
    DNS_ENDPOINT,
)
# Kinds of other projects' CRDs, which a cluster may not serve: a 404 means "not installed".
OPTIONAL_KINDS: tuple[Kind, ...] = (CERTIFICATE, DNS_ENDPOINT)
ALL_KINDS: tuple[Kind, ...] = (
    MAILDOMAIN,
    MAILBOX,
    MAILSERVER,
    MAILDOMAIN_POLICY,
    *CHILD_KINDS,
    PVC,
    EVENT,
    POD,
    CLUSTER_PEERING,
    PEERING,
)
_BY_TYPE = {(k.api_version, k.kind): k for k in ALL_KINDS}


class UnknownKindError(KeyError):
    """An object of a kind the operator does not manage (a renderer/table mismatch)."""


def kind_of(obj: dict[str, object]) -> Kind:
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    try:
        return _BY_TYPE[key]
    except KeyError:
        raise UnknownKindError(f"{key[0]} {key[1]} is not in the operator's kind table") from None
