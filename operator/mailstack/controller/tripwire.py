"""Owns the tripwire's shell: reading what the MTA pods' postfix agents saw (masked client
addresses, ``agent/tripwire.py``) in background tasks, and the sightings kept per MailDomain.

The mail pods have no Kubernetes API access (least privilege), so the operator comes to them: a
pass asks ``look`` for the condition, which starts a poll when one is due (at most every
``poll_interval``; the periodic resync, 5 minutes by default, is what brings passes when nothing
else does) and answers from the sightings kept, never waiting on a pod. A poll lists the
MailDomain's MTA pods (``list pods`` by label, the one new RBAC rule), and GETs
``layout.MASKED_CLIENTS_PATH`` on each pod's address at the postfix container's ``health`` port,
which the MTA's NetworkPolicy opens to the operator's namespace (``render.network``). Each GET
has a timeout and a size bound; a pod that does not answer keeps the sightings before. Polls in
flight are bounded in all (``concurrent``); one per MailDomain. When the set of addresses and
ports changes, the MailDomain is woken so the condition is written at once. Host-network pods
are skipped: their address is a node's, and a tenant could make one carry the labels.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailstack.api.models import ClusterNetworks
from mailstack.controller.conditions import Condition
from mailstack.controller.kinds import POD
from mailstack.controller.kube import ApiError, Kube
from mailstack.controller.masked_clients import (
    CLEAR_AFTER,
    Key,
    Sighting,
    masked_condition,
    merge,
    parse_observations,
)
from mailstack.kubedoc import Obj, ObjectRef, meta_of
from mailstack.render import layout
from mailstack.render.objects import INSTANCE_LABEL, STATEFULSET_REPLICAS

logger = logging.getLogger(__name__)

POLL_INTERVAL = 60.0
ANSWER_MAX = 65536  # the agent's answer is a few lines


def mta_selector(name: str) -> str:
    """The label selector of a MailDomain's MTA pods (``render.objects.selector_labels``)."""
    return (
        f"app.kubernetes.io/name=mailstack,{INSTANCE_LABEL}={name},app.kubernetes.io/component=mta"
    )


def polled_pods(pods: list[Obj], name: str) -> list[Obj]:
    """The MailDomain's running MTA pods by the StatefulSet's names (``<n>-mta-<ordinal>``, one
    replica): the label selector alone would also find pods the tenant made with those labels,
    as many as it likes, finished ones among them (whose address the cluster gives to others)."""
    names = {f"{layout.object_names(name)['mta']}-{i}" for i in range(STATEFULSET_REPLICAS)}
    return [
        pod
        for pod in pods
        if meta_of(pod).get("name") in names and (pod.get("status") or {}).get("phase") == "Running"
    ]


def agent_address(pod: Mapping[str, Any]) -> tuple[str, int] | None:
    """(pod address, postfix health port) of an MTA pod; None when it has none to read."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    address = status.get("podIP")
    if not isinstance(address, str) or not address or spec.get("hostNetwork"):
        return None
    for container in spec.get("containers") or []:
        if isinstance(container, Mapping) and container.get("name") == "postfix":
            for entry in container.get("ports") or []:
                if isinstance(entry, Mapping) and entry.get("name") == "health":
                    port = entry.get("containerPort")
                    return (address, port) if isinstance(port, int) else None
    return None


async def read_agent(address: str, port: int, timeout: float) -> str | None:
    """The agent's observations (the body of its answer); None when it did not answer 200."""
    host = f"[{address}]" if ":" in address else address
    request = f"GET {layout.MASKED_CLIENTS_PATH} HTTP/1.0\r\nHost: {host}\r\n\r\n"

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(address, port)
        try:
            writer.write(request.encode())
            await writer.drain()
            return await reader.read(ANSWER_MAX)
        finally:
            writer.close()

    try:
        answer = await asyncio.wait_for(exchange(), timeout)
    except (OSError, TimeoutError) as err:
        logger.info("the tripwire at %s:%d did not answer: %s", address, port, err)
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
        return None
    return body.decode("latin-1")


def _no_wake(namespace: str, name: str) -> None:
    pass


@dataclass
class Tripwire:
    """The sightings of masked clients per MailDomain, read from its MTA pods' agents."""

    kube: Kube | None
    networks: ClusterNetworks = field(default_factory=ClusterNetworks)
    wake: Callable[[str, str], None] = _no_wake
    poll_interval: float = POLL_INTERVAL
    clear_after: float = CLEAR_AFTER
    timeout: float = 3.0
    concurrent: int = 8
    clock: Callable[[], float] = time.time
    _sightings: dict[str, dict[Key, Sighting]] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None

    def look(self, ref: ObjectRef) -> Condition:
        """The condition from the sightings kept; starts a poll when one is due."""
        if not self.networks.ranges() or self.kube is None:
            return masked_condition((), self.networks)
        now = self.clock()
        running = self._tasks.get(ref.uid)
        if (running is None or running.done()) and now >= self._due.get(ref.uid, 0.0):
            self._due[ref.uid] = now + self.poll_interval
            self._tasks[ref.uid] = asyncio.create_task(self._poll(ref))
        kept = merge(self._sightings.get(ref.uid, {}), (), now, self.clear_after)
        self._sightings[ref.uid] = kept
        return masked_condition(kept.values(), self.networks)

    async def _poll(self, ref: ObjectRef) -> None:
        assert self.kube is not None
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrent)
        async with self._slots:
            try:
                pods = await self.kube.list(POD, ref.namespace, mta_selector(ref.name))
            except ApiError as err:
                logger.warning("%s: listing the MTA pods failed: %s", ref, err)
                return
            running = polled_pods(pods, ref.name)
            agents = [a for a in (agent_address(p) for p in running) if a is not None]
            answers = await asyncio.gather(*(read_agent(*a, self.timeout) for a in agents))
        if ref.uid not in self._due:  # forgotten meanwhile
            return
        now = self.clock()
        seen = [s for text in answers if text is not None for s in parse_observations(text, now)]
        before = self._sightings.get(ref.uid, {})
        after = merge(before, seen, now, self.clear_after)
        self._sightings[ref.uid] = after
        if set(after) != set(before):
            self.wake(ref.namespace, ref.name)

    def forget(self, key: str) -> None:
        """The MailDomain is gone."""
        self._sightings.pop(key, None)
        self._due.pop(key, None)
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
