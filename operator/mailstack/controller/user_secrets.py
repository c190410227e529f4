"""Owns how a pass gets the user Secrets its MailDomain and Mailboxes refer to.

From the watch cache (``memory.SecretCache``), never by a GET: the operator sees only Secrets
labelled ``mailstack.dev/usable-by`` (``api.secret_access``), and a GET would read an
unlabelled one too. The cache keeps the data of referenced Secrets only; one it knows without
its data (labelled, but nothing referred to it when it was watched) is read here on its first
reference, through the label selector, as a list of one name: still never an unlabelled one.
"""

from __future__ import annotations

from mailstack.api.models import Secret
from mailstack.api.secret_access import USABLE_BY_LABEL
from mailstack.controller import reasons
from mailstack.controller.kinds import SECRET
from mailstack.controller.kube import ApiError, Kube
from mailstack.controller.memory import SecretCache
from mailstack.controller.outcome import ReconcileError


async def read(
    kube: Kube, cache: SecretCache, namespace: str, names: set[str]
) -> dict[str, Secret]:
    """The Secrets of ``names`` that exist, labelled, in ``namespace``, by name."""
    result = {}
    for name in sorted(names):
        # A name the watch delivered (a valid one), that something able to serve refers to.
        if cache.unloaded(namespace, name) and cache.wanted(namespace, name):
            selector = f"metadata.name={name}"
            try:
                found = await kube.list(SECRET, namespace, USABLE_BY_LABEL, field_selector=selector)
            except ApiError as err:
                raise ReconcileError(
                    f"reading Secret {name} failed: {err}", reasons.READ_FAILED
                ) from err
            for obj in found:
                cache.put(obj)
        secret = cache.get(namespace, name)
        if secret is not None:
            result[name] = secret
    return result
