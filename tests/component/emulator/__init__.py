"""A Kubernetes API server emulator for component tests: kmock 0.8, made realistic.

kmock's ``KubernetesScaffold`` serves discovery (``/api``, ``/apis``, resource lists) and runs
on kmock's aiohttp test server; its ``KubernetesEmulator`` keeps objects as plain dicts, which
is not enough for an operator (measured: no resourceVersion, no uid, no server-side apply,
status subresource writes change the spec, ...). This package replaces the object handling with
a ``Store`` that behaves like kube-apiserver where an operator can tell:

- ``store``: metadata (uid, resourceVersion, generation, creationTimestamp, generateName),
  optimistic concurrency, status subresource separation, no-op writes, deletion with
  finalizers, and the write log the tests count the operator's writes with;
- ``apply``: managedFields and server-side apply with per-manager field ownership;
- ``patches``: JSON merge patch, JSON patch, strategic merge patch, PUT;
- ``admission``: CRD structural schemas from ``crds/*.yaml`` (see ``schema.py``) and the
  Kubernetes 1.30 schemas for built-in kinds, ownerReferences, label syntax, StatefulSet spec
  immutability → 422;
- ``watches`` and ``selectors``: resume, replay, 410 Gone, label and field selectors, bookmarks;
- ``controllers``: garbage collection through ownerReferences, a minimal StatefulSet
  controller, ClusterIP assignment for Services;
- ``http``: the routes on kmock's scaffold; ``api``: ``ApiServer``, the emulator on its own
  thread with a synchronous client for tests; ``resources``: the kinds served.

Not emulated: RBAC (the verbs are recorded, nothing is denied), admission webhooks, pods (stored
as written, never run),
strategic-merge directives (``$patch``), associative-list merging inside server-side apply
(lists are atomic here), field selectors beyond metadata.name/namespace and an Event's
involvedObject, reason and type.
"""

from tests.component.emulator.api import ApiServer, wait_for
from tests.component.emulator.http import Emulator
from tests.component.emulator.resources import (
    ApiStatus,
    ResourceDef,
    builtin_resources,
    cert_manager_resources,
    crd_resources,
    external_dns_resources,
)
from tests.component.emulator.store import Store, Write

__all__ = [
    "ApiServer",
    "ApiStatus",
    "Emulator",
    "ResourceDef",
    "Store",
    "Write",
    "builtin_resources",
    "cert_manager_resources",
    "crd_resources",
    "external_dns_resources",
    "wait_for",
]
