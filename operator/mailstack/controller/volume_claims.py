"""Owns what a namespace's mail volume claims request, for ``maxStorage`` (``api.limits``).

A MailDomain's volumes outlive it (``storage.retention: Retain``, the default) and keep their
size when its spec shrinks, so the specs alone let a tenant outgrow ``maxStorage`` by deleting
a MailDomain and creating it again under another name. A pass of a namespace with that limit
lists the namespace's claims carrying the labels of the volume claim templates and sums their
requests by the MailDomain (instance label) they were made for. A claim deleted, or a retained
one reused, reaches the limits at the next pass of the namespace's MailDomains (a change to one
of them, or the periodic resync).
"""

from __future__ import annotations

from collections import defaultdict

from mailstack.api.errors import FieldError
from mailstack.api.quantities import quantity_value
from mailstack.controller.kinds import PVC
from mailstack.controller.kube import Kube
from mailstack.kubedoc import Obj
from mailstack.render.objects import INSTANCE_LABEL

SELECTOR = "app.kubernetes.io/name=mailstack"  # every claim of a mail pod's volume templates


def requests_by_domain(claims: list[Obj]) -> dict[str, int]:
    """Bytes requested by the claims, by the MailDomain name their instance label gives."""
    found: dict[str, int] = defaultdict(int)
    for claim in claims:
        labels = (claim.get("metadata") or {}).get("labels") or {}
        name = labels.get(INSTANCE_LABEL)
        spec = claim.get("spec") or {}
        request = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if not isinstance(name, str) or not isinstance(request, str):
            continue
        try:
            found[name] += int(quantity_value(request))
        except (FieldError, ValueError):
            continue  # not a quantity the API server would have accepted
    return dict(found)


async def namespace_claims(kube: Kube, namespace: str) -> dict[str, int]:
    return requests_by_domain(await kube.list(PVC, namespace, SELECTOR))
