"""Owns the emulator's vocabulary: the resources it serves (``ResourceDef`` and the lists of
built-in kinds, mailstack's CRDs, cert-manager's and external-dns's), the Status failure every
part raises (``ApiStatus``) and the server's timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailstack.kubedoc import Obj
from tests.component.schema import CustomResourceSchema, load_crd

ROOT = Path(__file__).resolve().parents[3]
CRD_FILES = tuple(sorted((ROOT / "crds").glob("*.yaml")))


class ApiStatus(Exception):
    """A Kubernetes Status failure: HTTP code, reason, message, optional causes."""

    def __init__(
        self, code: int, reason: str, message: str, causes: list[str] | None = None
    ) -> None:
        self.code, self.reason, self.message, self.causes = code, reason, message, causes or []
        super().__init__(f"{code} {reason}: {message}")

    def body(self) -> Obj:
        details: Obj = {}
        if self.causes:
            details["causes"] = [{"message": c} for c in self.causes]
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
            "details": details,
        }


@dataclass
class ResourceDef:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False  # has a status subresource
    generation: bool = False  # metadata.generation is maintained
    schema: CustomResourceSchema | None = None  # custom resources
    validate: bool = False  # built-in: validate with kubernetes-validate
    singular: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)


def cert_manager_resources() -> list[ResourceDef]:
    """cert-manager's Certificate, for tests of the certManager issuer (no schema checks)."""
    return [
        ResourceDef(
            "cert-manager.io", "v1", "certificates", "Certificate", status=True, generation=True
        )
    ]


def external_dns_resources() -> list[ResourceDef]:
    """external-dns's DNSEndpoint, with its schema (``tests/fixtures/crds``)."""
    return crd_resources(
        [ROOT / "tests" / "fixtures" / "crds" / "dnsendpoints.externaldns.k8s.io.yaml"]
    )


def builtin_resources() -> list[ResourceDef]:
    r = ResourceDef
    return [
        r("", "v1", "namespaces", "Namespace", namespaced=False, status=True),
        r("", "v1", "configmaps", "ConfigMap", validate=True),
        r("", "v1", "secrets", "Secret", validate=True),
        r("", "v1", "services", "Service", status=True, validate=True),
        r("", "v1", "serviceaccounts", "ServiceAccount", validate=True),
        r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", status=True),
        r("", "v1", "events", "Event"),
        # Stored only (no kubelet): a test writes a pod's status, e.g. a podIP on loopback.
        r("", "v1", "pods", "Pod", status=True),
        r("events.k8s.io", "v1", "events", "Event"),
        r("apps", "v1", "statefulsets", "StatefulSet", status=True, generation=True, validate=True),
        r(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            generation=True,
            validate=True,
        ),
        r(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            status=True,
            generation=True,
            validate=True,
        ),
        r("coordination.k8s.io", "v1", "leases", "Lease"),
        r("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False),
        r("kopf.dev", "v1", "kopfpeerings", "KopfPeering"),
    ]


def crd_resources(paths: Iterable[Path] = CRD_FILES) -> list[ResourceDef]:
    result = []
    for path in paths:
        crd = load_crd(path)
        spec = crd["spec"]
        version = next(v for v in spec["versions"] if v.get("storage"))
        result.append(
            ResourceDef(
                spec["group"],
                version["name"],
                spec["names"]["plural"],
                spec["names"]["kind"],
                namespaced=spec["scope"] == "Namespaced",
                status="status" in (version.get("subresources") or {}),
                generation=True,
                schema=CustomResourceSchema.from_crd(crd),
                singular=spec["names"].get("singular", ""),
            )
        )
    return result


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
