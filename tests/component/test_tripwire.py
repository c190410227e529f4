"""The tripwire against the emulator: what an MTA pod's agent saw becomes ClientAddressesMasked.

A small HTTP server on loopback stands in for the postfix agent (its health port), and a Pod
object whose status carries 127.0.0.1 as podIP stands in for the MTA pod: the real operator
lists the pod, reads the agent in the background and writes the condition; an agent that saw
nothing leaves it False; without clusterNetworks it is Unknown and no pod is listed. An
exemptNetworks entry inside a cluster range is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mailstack.api.models import ClusterNetworks
from mailstack.render import layout
from mailstack.render.objects import RenderOptions
from tests.component.conftest import NS, conditions, maildomain
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread

NETWORKS = ClusterNetworks(pods=("10.244.0.0/16",), services=("10.96.0.0/12",))
OPTIONS = RenderOptions(cluster_networks=NETWORKS, operator_namespace="mailstack-system")


class FakeAgent:
    """Serves ``layout.MASKED_CLIENTS_PATH`` with ``answer(request number)``, as the postfix
    agent would (``body``: the same answer to every request)."""

    def __init__(self) -> None:
        self.requests = 0
        self.answer: Callable[[int], str] = lambda n: ""
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                agent.requests += 1
                found = self.path == layout.MASKED_CLIENTS_PATH
                data = agent.answer(agent.requests).encode() if found else b"not found\n"
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def body(self) -> str:
        return self.answer(self.requests)

    @body.setter
    def body(self, text: str) -> None:
        self.answer = lambda n: text

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    fake = FakeAgent()
    yield fake
    fake.close()


def mta_pod(
    api: ApiServer,
    name: str,
    port: int,
    ip: str = "127.0.0.1",
    pod: str = "",
    status: dict[str, Any] | None = None,
) -> None:
    """A pod carrying the MTA labels of MailDomain ``name`` (by default the StatefulSet's,
    ``<name>-mta-0``), with ``status`` (by default running at ``ip``)."""
    labels = {
        "app.kubernetes.io/name": "mailstack",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "mta",
    }
    ports = [{"name": "health", "containerPort": port, "protocol": "TCP"}]
    pod = pod or f"{name}-mta-0"
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "postfix", "image": "mail", "ports": ports}]},
        }
    )
    status = status or {"phase": "Running", "podIP": ip}
    api.patch("pods", pod, {"status": status}, NS, subresource="status")


def masked(api: ApiServer, name: str, status: str) -> dict[str, Any]:
    """ClientAddressesMasked of MailDomain ``name`` once it has ``status``."""
    domain = wait_for(
        lambda: (
            (md := api.get("maildomains", name, NS)) is not None
            and conditions(md).get("ClientAddressesMasked", {}).get("status") == status
            and md
        ),
        timeout=30,
    )
    return conditions(domain)["ClientAddressesMasked"]


def test_an_agents_sighting_sets_the_condition_and_none_leaves_it_false(
    api: ApiServer, agent: FakeAgent
) -> None:
    mta_pod(api, "example-org", agent.port)
    with OperatorThread(api, render=OPTIONS, resync_interval=0.3) as op:
        op.operator.reconciler.tripwire.poll_interval = 0.2
        api.create(maildomain("example-org", "example.org"))
        quiet = masked(api, "example-org", "False")
        assert quiet["reason"] == "NoMaskedClients"
        wait_for(lambda: agent.requests >= 1)

        agent.body = "10.244.1.7 25 3 12\n"
        seen = masked(api, "example-org", "True")
        assert seen["reason"] == "MaskedClientsSeen"
        assert "10.244.1.7 on port 25 (pods range 10.244.0.0/16)" in seen["message"]
        assert "PROXY protocol" in seen["message"]
        # A warning: the mail service stays Ready (or not) for its own reasons.
        ready = conditions(api.get("maildomains", "example-org", NS))["Ready"]
        assert "ClientAddressesMasked" not in ready["message"]

        # The operator's namespace may read the postfix agent's health port, nothing more.
        policy = api.get("networkpolicies", "example-org-mta", NS)
        assert policy is not None
        assert {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "mailstack-system"}
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": layout.HEALTH_PORTS["postfix"]}],
        } in policy["spec"]["ingress"]


def test_a_sighting_not_renewed_clears(api: ApiServer, agent: FakeAgent) -> None:
    mta_pod(api, "example-org", agent.port)
    agent.body = "10.96.0.1 587 1 0\n"
    with OperatorThread(api, render=OPTIONS, resync_interval=0.3) as op:
        op.operator.reconciler.tripwire.poll_interval = 0.2
        api.create(maildomain("example-org", "example.org"))
        seen = masked(api, "example-org", "True")
        assert "10.96.0.1 on port 587 (services range 10.96.0.0/12)" in seen["message"]
        agent.body = ""  # the agent restarted: it forgot; the operator has not
        op.operator.reconciler.tripwire.clear_after = 1.0
        assert masked(api, "example-org", "False")["reason"] == "NoMaskedClients"


def test_without_cluster_networks_no_pod_is_listed(api: ApiServer, agent: FakeAgent) -> None:
    mta_pod(api, "example-org", agent.port)
    agent.body = "10.244.1.7 25 3 12\n"
    with OperatorThread(api, resync_interval=0.3):
        api.create(maildomain("example-org", "example.org"))
        unknown = masked(api, "example-org", "Unknown")
        assert unknown["reason"] == "NotConfigured"
    assert agent.requests == 0
    assert not [v for v in api.emulator.verbs if v[3] == "pods"]


def test_an_exemption_inside_a_cluster_range_is_refused(api: ApiServer) -> None:
    limits = {"perClient": {"exemptNetworks": ["192.0.2.0/24", "10.244.3.0/24"]}}
    with OperatorThread(api, render=OPTIONS):
        api.create(maildomain("example-org", "example.org", limits=limits))
        domain = wait_for(
            lambda: (
                (md := api.get("maildomains", "example-org", NS)) is not None
                and conditions(md).get("Valid", {}).get("status") == "False"
                and md
            )
        )
    valid = conditions(domain)["Valid"]
    assert valid["reason"] == "InvalidSpec"
    assert "exemptNetworks[1]" in valid["message"]
    assert "overlaps the cluster's pods range 10.244.0.0/16" in valid["message"]
