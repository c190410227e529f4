"""Before a MailDomain goes: its DNS records, its mail volumes and its Mailboxes' statuses.

The children go with the MailDomain (ownerReferences, garbage collector). What lives outside
the cluster does not: the records the MailDomain published are removed first, and while the
provider fails the finalizer stays (``ReconcileError``: kopf retries, a Warning Event says why).
PersistentVolumeClaims belong to the StatefulSets, not the MailDomain, and the operator never
deletes one: each StatefulSet's ``persistentVolumeClaimRetentionPolicy`` says what happens to
them (``whenDeleted``: the MailDomain's ``storage.retention``; Kubernetes 1.27+ on by default,
GA in 1.32). With ``Retain`` (the default) they stay, so mail survives a deleted MailDomain;
with ``Delete`` the StatefulSet controller makes them the set's, and they go with it. So the
operator's account needs no right to delete a volume claim; it only lists them for the Event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from mailstack.api.errors import ValidationError
from mailstack.api.models import MailDomain
from mailstack.api.parse import parse_maildomain
from mailstack.controller import plan, reasons
from mailstack.controller.dns_publisher import host_guard
from mailstack.controller.documents import referenced_secret_names
from mailstack.controller.events import Notice, finalized_notice
from mailstack.controller.kinds import MAILDOMAIN, PVC
from mailstack.controller.kube import ApiError
from mailstack.controller.outcome import ReconcileError
from mailstack.controller.reconcile import Reconciler
from mailstack.dns.errors import DnsError, HostRefusedError
from mailstack.kubedoc import ObjectRef, spec_of
from mailstack.render.objects import selector_labels

logger = logging.getLogger(__name__)


def selector_labels_for(name: str) -> dict[str, str]:
    """The labels every PVC of MailDomain ``name`` carries (from the volumeClaimTemplates)."""
    return selector_labels(MailDomain(name=name, namespace="", domain="", hostname=""), None)


def retention(body: Mapping[str, Any]) -> str:
    """``spec.storage.retention`` of a raw MailDomain: ``Delete``, or ``Retain`` (the default)."""
    storage = spec_of(body).get("storage")
    if isinstance(storage, Mapping) and storage.get("retention") == "Delete":
        return "Delete"
    return "Retain"


def published_selector(body: Mapping[str, Any]) -> str | None:
    """The DKIM selector ``status.dkim`` reports: the one published, should the spec differ."""
    status = body.get("status")
    if isinstance(status, Mapping) and isinstance(status.get("dkim"), Mapping):
        selector = status["dkim"].get("selector")
        if isinstance(selector, str) and selector:
            return selector
    return None


async def finalize(
    reconciler: Reconciler, body: Mapping[str, Any], mailboxes: Sequence[Mapping[str, Any]]
) -> str:
    """Remove the DNS records, say what happens to the volume claims, report the Mailboxes
    orphaned; returns a summary for the Event and the log."""
    ref = ObjectRef.of(body)
    kube = reconciler.kube
    dns_summary = await _cleanup_dns(reconciler, body)
    selector = ",".join(f"{k}={v}" for k, v in sorted(selector_labels_for(ref.name).items()))
    try:
        claims = await kube.list(PVC, ref.namespace, selector)
    except ApiError as err:
        raise ReconcileError(
            f"listing the volume claims failed: {err}", reasons.FINALIZE_FAILED
        ) from err
    claim_names = sorted(ObjectRef.of(claim).name for claim in claims)
    if retention(body) == "Delete":
        summary = f"retention Delete: {len(claim_names)} volume claim(s) go with the StatefulSets"
    else:
        summary = f"retention Retain: kept {len(claim_names)} volume claim(s) holding mail" + (
            f" ({', '.join(claim_names)})" if claim_names else ""
        )
    if dns_summary:
        summary = f"{dns_summary}; {summary}"
    for doc in mailboxes:
        await reconciler.statuses.orphan(doc)
    reconciler.written.forget(MAILDOMAIN.kind, ref.namespace, ref.name)
    reconciler.metrics.forget(MAILDOMAIN.kind, ref.namespace, ref.name)
    reconciler.dns.forget(ref.namespace, ref.name, gone=True)
    reconciler.tripwire.forget(ref.uid)
    await reconciler.events.post(MAILDOMAIN, body, [finalized_notice(summary)])
    return summary


async def _cleanup_dns(reconciler: Reconciler, body: Mapping[str, Any]) -> str:
    """Remove the records the MailDomain published; ``ReconcileError`` keeps the finalizer.

    An invalid spec cannot name a provider: nothing is removed (and a warning logged).
    """
    ref = ObjectRef.of(body)
    try:
        model = parse_maildomain(body, plan.SOURCE)
    except ValidationError as err:
        logger.warning("%s: invalid spec, DNS records not removed: %s", ref, err)
        return ""
    if not model.dns.provider.pushes_records:
        return ""  # manual, externalDNS: nothing the operator published itself
    if not reconciler.dns.holds_records(ref, body.get("status")):
        return ""  # never published (refused before it served): its provider is not contacted
    secrets = await reconciler.user_secrets(ref.namespace, referenced_secret_names(body, ()))
    selector = published_selector(body)
    try:
        removed = await reconciler.dns.cleanup(
            model,
            secrets,
            [selector] if selector else [],
            guard=host_guard(reconciler.grants, model, removal=True),
        )
    except HostRefusedError as err:
        # Not a passing failure: the operator may not contact that host on the namespace's
        # behalf any more, so the finalizer would stay forever. The records stay instead.
        message = f"DNS records not removed: {err}"
        await reconciler.events.post(MAILDOMAIN, body, [Notice("Warning", err.reason, message)])
        return f"provider {model.dns.provider.kind}: {message}"
    except DnsError as err:
        message = f"removing the DNS records failed ({err.reason}): {err}"
        await reconciler.events.post(MAILDOMAIN, body, [Notice("Warning", err.reason, message)])
        raise ReconcileError(
            message + "; the finalizer stays until it succeeds", reasons.FINALIZE_FAILED
        ) from err
    count = len(removed.changes) if removed is not None else 0
    return f"provider {model.dns.provider.kind}: {count} DNS record set(s) removed"
