"""One reconcile pass for one shared MailServer and the MailDomains joining it (#18).

``ServerPass.reconcile`` reads, decides (``server_plan.render_server_pass``) and writes only what
differs, with the MailDomain pass's own functions (``Reconciler.read_children``,
``write_child``, ``user_secrets``; ``children``, ``ownership``):
1. gather: the server's material Secrets in its namespace and each joined domain's in its own
   (only the operator's own are read back, ``ownership.own_secrets``), and the user Secrets its
   Mailboxes and aliases refer to. A read failing aborts the pass (a key would rotate).
2. render (in a thread: keys and hashes).
3. apply, namespace by namespace: each joined domain's own Secrets first (its material must be
   kept before the server serves it), owned by its MailDomain; then the server's objects, owned
   by the MailServer. A set with a name not the operator's is not written (``NameTaken``); a
   domain whose set is is rendered out of the server first (its key would be new every pass).
4. the MailServer's status: domains and Mailboxes served, MTA/MDA readiness, Valid and Ready;
   and the statuses of the served domains' Mailboxes (``conditions.mailbox_verdicts``, on their
   problems in this pass: the MailDomain's own pass renders none of them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mailstack.api.errors import Problem
from mailstack.api.models import Secret
from mailstack.controller import reasons
from mailstack.controller.children import Owner, plan_changes
from mailstack.controller.conditions import mailbox_verdicts
from mailstack.controller.documents import doc_generation, referenced_secret_names
from mailstack.controller.kinds import MAILSERVER, SECRET, STATEFUL_SET
from mailstack.controller.kube import ApiError
from mailstack.controller.outcome import Outcome, ReconcileError
from mailstack.controller.ownership import names_to_check, own_secrets, taken_names
from mailstack.controller.plan import Rendered, secrets_from_live, statefulset_names
from mailstack.controller.reconcile import Children, Reconciler
from mailstack.controller.server_plan import (
    DomainKey,
    ServerInputs,
    ServerRendered,
    render_server_pass,
)
from mailstack.kubedoc import Obj, ObjectRef
from mailstack.material.resolve import domain_material_secret_names, material_secret_names

logger = logging.getLogger(__name__)

SERVER_OWNER_KIND = MAILSERVER.kind


class ServerPass:
    """Reads, plans and writes for MailServers, with the MailDomains' ``Reconciler``."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.passes = 0

    async def reconcile(
        self,
        server: Mapping[str, Any],
        domains: Sequence[Mapping[str, Any]],
        contenders: Sequence[Mapping[str, Any]],
        mailboxes: Mapping[DomainKey, Sequence[Mapping[str, Any]]],
        *,
        now: datetime | None = None,
    ) -> tuple[Outcome, ServerRendered, Obj]:
        """Bring the server's children, its domains' own Secrets and its status in line.

        ``mailboxes``: by joined MailDomain (namespace, name), its raw Mailboxes.
        """
        self.passes += 1
        r = self.reconciler
        outcome = Outcome()
        inputs = ServerInputs(
            server=server,
            domains=domains,
            contenders=contenders,
            mailboxes=[box for boxes in mailboxes.values() for box in boxes],
            secrets=await self._gather(server, domains, mailboxes),
            now=now or datetime.now(UTC),
            options=r.options,
            grants=r.grants,
        )
        loop = asyncio.get_running_loop()
        rendered = await loop.run_in_executor(None, render_server_pass, inputs)
        uids = {ObjectRef.of(d)[:2]: ObjectRef.of(d).uid for d in domains}
        taken = await self._taken_domains(rendered, uids)
        if taken:  # such a domain is left out: its key would be new at every pass
            kept = [d for d in domains if ObjectRef.of(d)[:2] not in taken]
            inputs = dataclasses.replace(inputs, domains=kept)
            rendered = await loop.run_in_executor(None, render_server_pass, inputs)
            for key, names in taken.items():
                message = f"{', '.join(names)} exist and are not this MailDomain's"
                rendered.domain_problems[key].append(
                    Problem(f"MailDomain/{key[0]}/{key[1]}", "metadata.name", message)
                )
        outcome.valid = rendered.ok
        live: Children = {}
        error: ApiError | None = None
        server_taken: list[str] = []
        if rendered.ok and rendered.model is not None:
            sets = [
                (Owner(key[1], key[0], uids[key]), objects)
                for key, objects in rendered.domain_objects.items()
            ]
            ref = ObjectRef.of(server)
            owner = Owner(ref.name, ref.namespace, ref.uid, SERVER_OWNER_KIND)
            sets.append((owner, rendered.server_objects))
            for set_owner, objects in sets:
                set_error, set_taken, set_live = await self._apply(set_owner, objects, outcome)
                error = error or set_error
                server_taken = set_taken if set_owner == owner else server_taken
                if set_owner == owner:
                    live = set_live
        status = server_status(server, rendered, live, error, server_taken, inputs.now)
        if await r.statuses.write(MAILSERVER, server, status):
            outcome.status_writes += 1
        failed = error.short() if error is not None else None
        for service in rendered.served:  # the Mailboxes of the domains it serves
            key = (service.domain.namespace, service.domain.name)
            problems = {n: p for (ns, n), p in rendered.mailbox_problems.items() if ns == key[0]}
            view = Rendered(mailbox_problems=defaultdict(list, problems))
            verdicts = mailbox_verdicts(view, mailboxes.get(key, ()), key[1], failed)
            outcome.status_writes += await r.statuses.write_mailboxes(
                mailboxes.get(key, ()), verdicts, key[1], inputs.now
            )
        if error is not None:
            delay = 10 if error.transient else 60
            raise ReconcileError(f"applying failed: {error}", reasons.APPLY_FAILED, delay)
        if outcome.changed_objects:
            logger.info("MailServer %s: %s", ObjectRef.of(server)[:2], ", ".join(outcome.applied))
        return outcome, rendered, status

    async def _gather(
        self,
        server: Mapping[str, Any],
        domains: Sequence[Mapping[str, Any]],
        mailboxes: Mapping[DomainKey, Sequence[Mapping[str, Any]]],
    ) -> dict[str, dict[str, Secret]]:
        """By namespace: the operator's own material Secrets and the referenced user Secrets."""
        r = self.reconciler
        ref = ObjectRef.of(server)
        wanted = [(Owner(ref.name, ref.namespace, ref.uid, SERVER_OWNER_KIND), ref, False)]
        wanted += [(Owner.of(ObjectRef.of(d)), ObjectRef.of(d), True) for d in domains]
        secrets: dict[str, dict[str, Secret]] = {}
        for owner, doc_ref, joined in wanted:
            names = (domain_material_secret_names if joined else material_secret_names)(
                doc_ref.name
            )
            try:
                live = await r.read_children(doc_ref.namespace, [SECRET.key(n) for n in names])
            except ApiError as err:
                message = f"reading the Secrets failed: {err}"
                raise ReconcileError(message, reasons.READ_FAILED) from err
            found = secrets.setdefault(doc_ref.namespace, {})
            found.update(secrets_from_live(own_secrets(live, owner)))
        for doc in domains:
            namespace, name = ObjectRef.of(doc)[:2]
            boxes = mailboxes.get((namespace, name), ())
            users = await r.user_secrets(namespace, referenced_secret_names(doc, boxes))
            secrets.setdefault(namespace, {}).update(users)
        return secrets

    async def _taken_domains(
        self, rendered: ServerRendered, uids: Mapping[DomainKey, str]
    ) -> dict[DomainKey, list[str]]:
        """The joined domains one of whose own objects exists and is not theirs, with its names."""
        taken = {}
        for key, objects in rendered.domain_objects.items():
            owner = Owner(key[1], key[0], uids[key])
            try:
                live = await self.reconciler.read_children(key[0], names_to_check(objects))
            except ApiError as err:
                message = f"reading children failed: {err}"
                raise ReconcileError(message, reasons.READ_FAILED) from err
            if names := taken_names(objects, live, owner):
                taken[key] = names
        return taken

    async def _apply(
        self, owner: Owner, objects: list[Obj], outcome: Outcome
    ) -> tuple[ApiError | None, list[str], Children]:
        """Apply one owner's objects that differ; none when a name is not the operator's."""
        r = self.reconciler
        try:
            live = await r.read_children(owner.namespace, names_to_check(objects))
        except ApiError as err:
            raise ReconcileError(f"reading children failed: {err}", reasons.READ_FAILED) from err
        taken = taken_names(objects, live, owner)
        if taken:
            logger.warning("%s/%s: not applied, not its: %s", owner.namespace, owner.name, taken)
            return None, taken, live
        error: ApiError | None = None
        for change in plan_changes(objects, live):
            try:
                await r.write_child(change, live, outcome)
            except ApiError as err:
                logger.warning("%s/%s: %s failed: %s", owner.namespace, owner.name, change, err)
                error = error or err
        return error, [], live


def _ready(live: Children, name: str) -> tuple[str, bool]:
    """``ready/desired`` of one StatefulSet, and whether all its pods are ready."""
    obj = live.get(STATEFUL_SET.key(name)) or {}
    desired = int((obj.get("spec") or {}).get("replicas") or 0)
    ready = int((obj.get("status") or {}).get("readyReplicas") or 0)
    return f"{ready}/{desired}", bool(obj) and ready >= desired


def _condition(
    previous: Mapping[str, Any], type_: str, ok: bool, reason: str, message: str, now: str, gen: int
) -> Obj:
    status = "True" if ok else "False"
    old: Mapping[str, Any] = next(
        (c for c in previous.get("conditions") or [] if c.get("type") == type_), {}
    )
    since = old.get("lastTransitionTime") if old.get("status") == status else None
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": gen,
        "lastTransitionTime": since or now,
    }


def server_status(
    server: Mapping[str, Any],
    rendered: ServerRendered,
    live: Children,
    error: ApiError | None,
    taken: list[str],
    now: datetime,
) -> Obj:
    """The MailServer's status: what it serves, its pods, Valid and Ready."""
    generation = doc_generation(server)
    previous = server.get("status") or {}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    mta, mda = statefulset_names(ObjectRef.of(server).name)
    mta_ready, mta_ok = _ready(live, mta)
    mda_ready, mda_ok = _ready(live, mda)
    if not rendered.ok:
        problems = rendered.problems or []
        message = "; ".join(p.message for p in problems) or rendered.render_error or "invalid"
        valid = (False, reasons.INVALID_SPEC, message)
    elif taken:
        valid = (False, reasons.NAME_TAKEN, f"not the operator's: {', '.join(taken)}")
    elif error is not None:
        valid = (False, reasons.APPLY_FAILED, error.short())
    else:
        refused = [f"{ns}/{name}" for ns, name in sorted(rendered.domain_problems)]
        message = f"serving {len(rendered.served)} domain(s)"
        if refused:  # each MailDomain's own status says why
            message += f"; not serving {', '.join(refused)}"
        valid = (True, "Rendered", message)
    ready = valid[0] and mta_ok and mda_ok
    ready_reason = "Ready" if ready else (valid[1] if not valid[0] else "WorkloadsNotReady")
    ready_message = f"MTA {mta_ready}, MDA {mda_ready}" if valid[0] else valid[2]
    return {
        "observedGeneration": generation,
        "domains": len(rendered.served),
        "mailboxes": sum(len(s.mailboxes) for s in rendered.served),
        "mtaReady": mta_ready,
        "mdaReady": mda_ready,
        "conditions": [
            _condition(previous, "Valid", *valid, stamp, generation),
            _condition(previous, "Ready", ready, ready_reason, ready_message, stamp, generation),
        ],
    }
