"""The tripwire against a hostile tenant (#13, third outside check): the pods it polls and the
answers it reads are the tenant's.

The operator lists the MTA pods of a MailDomain by label in the tenant's namespace and reads
what each one's "agent" answers. A tenant can create pods with those labels, running whatever it
likes on the port it names ``health``, and so choose every byte of the answer. These tests
stand a hostile agent on loopback in for such a pod and check that what the operator keeps
(memory) stays bounded (the status is: ``conditions.MAX_MESSAGE``), and that it polls
only running pods.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from mailstack.controller.masked_clients import MAX_LINES
from tests.component.conftest import maildomain
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.component.test_tripwire import OPTIONS, FakeAgent, agent, masked, mta_pod  # noqa: F401


def labelled_pod(
    api: ApiServer, name: str, pod: str, port: int, status: dict[str, Any] | None = None
) -> None:
    """A pod of the tenant's own, carrying the MTA labels of MailDomain ``name``."""
    mta_pod(api, name, port, pod=pod, status=status)


def test_an_agent_naming_new_addresses_each_poll_does_not_grow_the_operators_memory(
    api: ApiServer,
    agent: FakeAgent,  # noqa: F811
) -> None:
    """Attack: the tenant's labelled pod answers MAX_LINES addresses never seen before on every
    poll. The tripwire keeps every (address, port) for CLEAR_AFTER (a day): at one poll a
    minute that is 92,000 sightings a day per pod, and a tenant may run as many labelled pods
    as its quota allows (all polled at once): the shared operator's memory grows without
    bound until it is killed, for every tenant. What is kept per MailDomain must be capped."""
    counter = itertools.count()

    def fresh(n: int) -> str:
        lines = [next(counter) for _ in range(MAX_LINES)]
        return "".join(f"10.244.{i // 250 % 250}.{i % 250} 25 1 0\n" for i in lines)

    agent.answer = fresh
    # The name of the StatefulSet's pod: the agent's answer is the tenant's either way (a pod
    # made before the StatefulSet's, or what runs in the MTA pod's containers).
    labelled_pod(api, "example-org", "example-org-mta-0", agent.port)
    with OperatorThread(api, render=OPTIONS, resync_interval=0.1) as op:
        tripwire = op.operator.reconciler.tripwire
        tripwire.poll_interval = 0.05
        api.create(maildomain("example-org", "example.org"))
        wait_for(lambda: agent.requests >= 8, timeout=60)
        deadline = time.monotonic() + 10
        kept = 0
        while time.monotonic() < deadline and kept <= 2 * MAX_LINES:  # the polls' merges land
            kept = max(len(s) for s in list(tripwire._sightings.values()) or [{}])
            time.sleep(0.1)
    assert kept <= 2 * MAX_LINES, f"{kept} sightings kept for one MailDomain"


def test_a_finished_pod_is_not_polled(api: ApiServer, agent: FakeAgent) -> None:  # noqa: F811
    """Attack: the tenant labels a pod that exits at once (``restartPolicy: Never``). Its
    ``status.podIP`` stays in the Pod object after it has Succeeded, while the cluster hands
    that address to the next pod scheduled on the node, possibly another tenant's: the operator
    then connects, from the operator's namespace, to another tenant's pod on a port the first
    tenant chose, and reads its answer into the first tenant's status. Only Running pods (with
    a current address) are the MTA's."""
    agent.answer = lambda n: "10.244.1.7 25 1 0\n"
    labelled_pod(
        api, "example-org", "done", agent.port, {"phase": "Succeeded", "podIP": "127.0.0.1"}
    )
    with OperatorThread(api, render=OPTIONS, resync_interval=0.3) as op:
        op.operator.reconciler.tripwire.poll_interval = 0.2
        api.create(maildomain("example-org", "example.org"))
        masked(api, "example-org", "False")
        # Several polls' time: none should reach the finished pod's old address.
        wait_for(lambda: [v for v in api.emulator.verbs if v[3] == "pods"], timeout=30)
        time.sleep(1.5)
    assert agent.requests == 0, "the operator polled a finished pod's stale address"


def test_one_poll_reads_no_more_pods_than_the_mta_runs(
    api: ApiServer,
    agent: FakeAgent,  # noqa: F811
) -> None:
    """Attack: the tenant creates 40 pods carrying the MTA labels of its MailDomain (the MTA's
    StatefulSet runs one). Every poll connects to all of them at once, each answer read up to
    ``ANSWER_MAX``: a tenant sets how many connections and how much memory each poll of the
    shared operator costs (thousands of pods: thousands of sockets and 64 KiB buffers). A
    poll should read the StatefulSet's pods only (its replicas, by name)."""
    for i in range(40):
        labelled_pod(api, "example-org", f"decoy{i}", agent.port)
    labelled_pod(api, "example-org", "example-org-mta-0", agent.port)  # the StatefulSet's
    with OperatorThread(api, render=OPTIONS, resync_interval=0.3) as op:
        op.operator.reconciler.tripwire.poll_interval = 3600.0  # one poll
        api.create(maildomain("example-org", "example.org"))
        wait_for(lambda: agent.requests >= 1, timeout=30)
        time.sleep(1.0)  # the poll's other reads
    assert agent.requests <= 1, f"one poll read {agent.requests} pods for an MTA of 1 replica"
