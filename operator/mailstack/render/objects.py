"""Helpers shared by the object renderers: labels, metadata, checksums, options."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailstack import MAIL_IMAGE_VERSION, __version__
from mailstack.api.models import ClusterNetworks, MailDomain
from mailstack.api.pod_models import MailPods
from mailstack.kubedoc import Obj

CHECKSUM_ANNOTATION = "mailstack.dev/config-checksum"
DOMAIN_ANNOTATION = "mailstack.dev/domain"
# The labels that say an object is a MailDomain's (``controller.ownership`` checks them).
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGER = "mailstack"
# Pods per StatefulSet (``<name>-mta``, ``<name>-mda``, render.workloads): one each. The
# tripwire polls the MTA's pods by these ordinals (controller.tripwire).
STATEFULSET_REPLICAS = 1


@dataclass(frozen=True)
class RenderOptions:
    """Settings of the operator installation, not of a MailDomain."""

    image: str = f"mailstack/mail:{MAIL_IMAGE_VERSION}"
    image_pull_policy: str = "IfNotPresent"
    # The operator-wide defaults of the mail pods (the chart's mailPods), under each MailDomain's
    # spec.pods and over the built-in resources; empty for `mailstack render` and `up`.
    mail_pods: MailPods = field(default_factory=MailPods)
    # The cluster's pod, Service and node ranges (the chart's clusterNetworks): clients of the
    # public listeners from them are reported, never trusted (render.postfix, the tripwire).
    cluster_networks: ClusterNetworks = field(default_factory=ClusterNetworks)
    # The operator's namespace: its pods may read the MTA agent's observations (render.network).
    operator_namespace: str = ""


def labels(domain: MailDomain, component: str) -> dict[str, str]:
    """The app.kubernetes.io labels of every object; ``selector_labels`` is the stable subset."""
    return {**pod_labels(domain, component), "app.kubernetes.io/version": __version__}


def pod_labels(domain: MailDomain, component: str) -> dict[str, str]:
    """The labels of the pods: those of every object but the operator's version, so that an
    operator upgrade alone changes no pod template (and rolls no mail pod). What runs in a pod
    is said by its image."""
    return {
        **selector_labels(domain, component),
        MANAGED_BY_LABEL: MANAGER,
        "app.kubernetes.io/part-of": "mailstack",
    }


def selector_labels(domain: MailDomain, component: str | None) -> dict[str, str]:
    result = {"app.kubernetes.io/name": "mailstack", INSTANCE_LABEL: domain.name}
    if component:
        result["app.kubernetes.io/component"] = component
    return result


def metadata(domain: MailDomain, name: str, component: str) -> Obj:
    return {
        "name": name,
        "namespace": domain.namespace,
        "labels": labels(domain, component),
        "annotations": {DOMAIN_ANNOTATION: domain.domain},
    }


def checksum(*parts: Mapping[str, Any]) -> str:
    """A stable digest of config data: changes exactly when the data does."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()
