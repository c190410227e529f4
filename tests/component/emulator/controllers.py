"""Owns the controllers the emulator runs in place of kube-controller-manager: the garbage
collector (ownerReferences: background and orphan propagation, dangling owners), a minimal
StatefulSet controller (PVCs from volumeClaimTemplates, with ownerReferences when
``whenDeleted: Delete``; a status with ``readyReplicas``; or, with ``pods_rejected``, no pods and
the ``FailedCreate`` Event of a pod refused at admission) and ClusterIP assignment for Services.

Their writes are logged as ``internal``: the tests count the operator's writes apart from them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mailstack.kubedoc import Obj
from tests.component.emulator.resources import ResourceDef

if TYPE_CHECKING:
    from tests.component.emulator.store import Store


def assign_cluster_ip(obj: Obj, numbers: Iterator[int]) -> None:
    """A new Service's clusterIP unless it asks for one (the server's field: nobody owns it)."""
    spec = obj.setdefault("spec", {})
    if spec.get("clusterIP") in (None, ""):
        n = next(numbers)
        spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
        spec["clusterIPs"] = [spec["clusterIP"]]


def keep_cluster_ip(new: Obj, old: Obj) -> None:
    """A Service keeps its clusterIP when a write leaves it out."""
    spec = new.setdefault("spec", {})
    for sticky in ("clusterIP", "clusterIPs"):
        if sticky in (old.get("spec") or {}) and spec.get(sticky) in (None, ""):
            spec[sticky] = old["spec"][sticky]


def collect_garbage(store: Store, uid: str, propagation: str) -> None:
    """The garbage collector: dependents of a removed owner."""
    for res_key, objects in store.objects.items():
        res = store.resources[res_key]
        for (ns, name), obj in list(objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == uid for ref in refs):
                continue
            remaining = [r for r in refs if r.get("uid") != uid]
            alive = [r for r in remaining if r.get("uid") in store.uids]
            if propagation == "Orphan" or alive:
                _set_refs(store, res, ns, name, remaining, "garbage-collector")
            elif store.find(res, ns, name) is not None:
                store.delete(res, ns, name, manager="garbage-collector", internal=True)


def _set_refs(
    store: Store, res: ResourceDef, ns: str | None, name: str, refs: list[Obj], manager: str
) -> None:
    """An emulated controller's patch of an object's ownerReferences."""
    store.update(
        res,
        ns,
        name,
        lambda o: _with_refs(o, refs),
        subresource=None,
        manager=manager,
        verb="patch",
        internal=True,
    )


def _with_refs(obj: Obj, refs: list[Obj]) -> Obj:
    obj["metadata"]["ownerReferences"] = refs or None
    return obj


def after_write(store: Store, res: ResourceDef, obj: Obj, old: Obj | None) -> None:
    """What the controllers do about a committed write, a moment later (``controller_delay``):
    an object whose owners are all gone is collected, a StatefulSet with a new generation is
    synced."""
    refs = obj["metadata"].get("ownerReferences") or []
    if refs and not any(r.get("uid") in store.uids for r in refs):
        meta = obj["metadata"]
        _later(store, lambda: _delete_if_exists(store, res, meta.get("namespace"), meta["name"]))
    if res.plural == "statefulsets":
        generation = obj["metadata"].get("generation")
        observed = (obj.get("status") or {}).get("observedGeneration")
        if generation != observed:
            meta = obj["metadata"]
            _later(store, lambda: sync_statefulset(store, meta["namespace"], meta["name"]))


def _later(store: Store, fn: Callable[[], None]) -> None:
    asyncio.get_running_loop().call_later(store.controller_delay, fn)


def _delete_if_exists(store: Store, res: ResourceDef, namespace: str | None, name: str) -> None:
    if store.find(res, namespace, name) is not None:
        store.delete(res, namespace, name, manager="garbage-collector", internal=True)


def sync_statefulset(store: Store, namespace: str, name: str) -> None:
    """The StatefulSet controller: PVCs from the volumeClaimTemplates, then the status."""
    sts_res = store.resources[("apps", "statefulsets")]
    sts = store.find(sts_res, namespace, name)
    if sts is None or sts["metadata"].get("deletionTimestamp"):
        return
    pvc_res = store.resources[("", "persistentvolumeclaims")]
    spec = sts.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    delete_claims = (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get(
        "whenDeleted"
    ) == "Delete"
    owner: Obj = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": name,
        "uid": sts["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for template in spec.get("volumeClaimTemplates") or []:
        for ordinal in range(replicas):
            claim = f"{template['metadata']['name']}-{name}-{ordinal}"
            if (found := store.find(pvc_res, namespace, claim)) is not None:
                # As the real controller (StatefulSetAutoDeletePVC, on from 1.27): an existing
                # claim (adopted, or the policy changed) is owned by the StatefulSet exactly
                # when whenDeleted is Delete, so deleting the set deletes it.
                refs = [r for r in found["metadata"].get("ownerReferences") or []]
                others = [r for r in refs if r.get("kind") != "StatefulSet"]
                wanted = [*others, owner] if delete_claims else others
                if refs != wanted:
                    _set_refs(store, pvc_res, namespace, claim, wanted, "kube-controller-manager")
                continue
            meta: Obj = {
                "name": claim,
                "labels": dict(template["metadata"].get("labels") or {}),
            }
            if delete_claims:
                meta["ownerReferences"] = [owner]
            store.create(
                pvc_res,
                namespace,
                {"metadata": meta, "spec": template.get("spec") or {}},
                manager="kube-controller-manager",
                internal=True,
            )
    if store.pods_rejected is not None:
        reject_pods(store, namespace, name, store.pods_rejected)
        return
    set_statefulset_status(
        store, namespace, name, replicas if store.statefulset_ready else 0, sts=sts
    )


def reject_pods(store: Store, namespace: str, name: str, message: str) -> None:
    """What the StatefulSet controller does when admission refuses its pods: a status without
    pods, and a Warning Event ``FailedCreate`` on the StatefulSet with the API server's message
    (the StatefulSet itself gets no condition)."""
    sts = store.get(store.resources[("apps", "statefulsets")], namespace, name)
    set_statefulset_status(store, namespace, name, 0, sts=sts, created=0)
    pod = f"{name}-0"
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    store.create(
        store.resources[("", "events")],
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{store.rv:x}"},
            "involvedObject": {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": name,
                "namespace": namespace,
                "uid": sts["metadata"]["uid"],
                "resourceVersion": sts["metadata"]["resourceVersion"],
            },
            "reason": "FailedCreate",
            "message": f'create Pod {pod} in StatefulSet {name} failed error: pods "{pod}" is '
            f"forbidden: {message}",
            "type": "Warning",
            "source": {"component": "statefulset-controller"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        },
        manager="kube-controller-manager",
        internal=True,
    )


def set_statefulset_status(
    store: Store,
    namespace: str,
    name: str,
    ready: int,
    sts: Obj | None = None,
    created: int | None = None,
) -> None:
    """Write the status of a StatefulSet whose generation was observed: ``created`` pods (all
    by default), ``ready`` of them ready."""
    sts_res = store.resources[("apps", "statefulsets")]
    sts = sts or store.get(sts_res, namespace, name)
    replicas = int((sts.get("spec") or {}).get("replicas", 1))
    pods = replicas if created is None else created
    status = {
        "observedGeneration": sts["metadata"].get("generation", 1),
        "replicas": pods,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": pods,
        "updatedReplicas": pods,
        "currentRevision": f"{name}-{sts['metadata'].get('generation', 1)}",
        "updateRevision": f"{name}-{sts['metadata'].get('generation', 1)}",
        "collisionCount": 0,
    }
    store.update(
        sts_res,
        namespace,
        name,
        lambda o: {**o, "status": status},
        subresource="status",
        manager="kube-controller-manager",
        verb="patch",
        internal=True,
    )
