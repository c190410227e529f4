"""The tripwire's pure parts and the agent's policy service: the cluster ranges and their
validation, the cidr table and main.cf/master.cf lines, the MTA NetworkPolicy's opening for the
operator, the agent's sightings, and sightings → ``ClientAddressesMasked``."""

from __future__ import annotations

import _socket
import os
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailstack.agent.health import HealthState, serve_health
from mailstack.agent.tripwire import MAX_OBSERVATIONS, MaskedClients, open_tripwire
from mailstack.api.errors import ValidationError
from mailstack.api.models import ClientLimits, ClusterNetworks, Limits, MailDomain
from mailstack.api.parse.cluster_networks import (
    cluster_range_of,
    exempt_cluster_problems,
    parse_cluster_networks,
)
from mailstack.controller.masked_clients import (
    Sighting,
    masked_condition,
    merge,
    parse_observations,
)
from mailstack.controller.plan import Rendered
from mailstack.controller.status import domain_status
from mailstack.controller.tripwire import agent_address, mta_selector
from mailstack.render import layout
from mailstack.render.network import render_network_policies
from mailstack.render.postfix import CLUSTER_CLIENTS_FILE, render_postfix_config
from tests.support import example_service

NETWORKS = ClusterNetworks(
    pods=("10.244.0.0/16",), services=("10.96.0.0/12",), nodes=("192.168.1.10/32", "fd00::/8")
)

# --- the ranges ------------------------------------------------------------------------------


def test_cluster_networks_are_parsed_canonical() -> None:
    text = '{"pods": ["10.244.7.1/16"], "services": ["10.96.0.0/12"], "nodes": ["FD00::1/8"]}'
    networks = parse_cluster_networks(text)
    assert networks == ClusterNetworks(("10.244.0.0/16",), ("10.96.0.0/12",), ("fd00::/8",))
    assert parse_cluster_networks("") == ClusterNetworks()
    assert parse_cluster_networks('{"nodes": ["192.168.1.10"]}').nodes == ("192.168.1.10/32",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('{"pod": []}', "pod"),
        ('{"pods": ["10.0.0.0/33"]}', "not an IP address or a CIDR range"),
        ('{"pods": ["0.0.0.0/0"]}', "wider than /8"),
        ('{"services": ["::/0"]}', "wider than /7"),
        ('{"pods": ["10.0.0.0/8", "10.1.0.0/8"]}', "listed twice"),
        ('{"pods": "10.0.0.0/8"}', "expected a list"),
    ],
)
def test_bad_cluster_networks_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_cluster_networks(text)
    assert message in str(err.value)


def test_an_address_is_found_in_its_range() -> None:
    assert cluster_range_of("10.244.3.4", NETWORKS) == ("pods", "10.244.0.0/16")
    assert cluster_range_of("10.100.0.1", NETWORKS) == ("services", "10.96.0.0/12")
    assert cluster_range_of("fd00::7", NETWORKS) == ("nodes", "fd00::/8")
    assert cluster_range_of("192.0.2.1", NETWORKS) is None
    assert cluster_range_of("not-an-address", NETWORKS) is None


def _with_exempt(*networks: str) -> MailDomain:
    limits = Limits(per_client=ClientLimits(exempt_networks=networks))
    return example_service(limits=limits).domain


def test_an_exemption_overlapping_a_cluster_range_is_a_problem() -> None:
    domain = _with_exempt("192.0.2.0/24", "10.0.0.0/8", "fd00:1::/32")
    problems = exempt_cluster_problems(domain, NETWORKS)
    assert [p.path for p in problems] == [
        "spec.limits.perClient.exemptNetworks[1]",
        "spec.limits.perClient.exemptNetworks[2]",
    ]
    assert "overlaps the cluster's pods range 10.244.0.0/16" in problems[0].message
    assert exempt_cluster_problems(domain, ClusterNetworks()) == []


# --- what Postfix gets -----------------------------------------------------------------------


def test_the_public_listeners_hand_cluster_clients_to_the_agent() -> None:
    files = render_postfix_config(example_service(), None, "ab" * 32, NETWORKS)
    table = files[CLUSTER_CLIENTS_FILE].splitlines()
    assert [line for line in table if not line.startswith("#")] == [
        "10.244.0.0/16 mailstack_masked_client",
        "10.96.0.0/12 mailstack_masked_client",
        "192.168.1.10/32 mailstack_masked_client",
        "fd00::/8 mailstack_masked_client",  # cidr tables write IPv6 without brackets
    ]
    main = files["main.cf"].splitlines()
    assert "smtpd_restriction_classes = mailstack_masked_client" in main
    assert (
        "mailstack_masked_client = check_policy_service { unix:/run/mailstack/policy/tripwire, "
        "default_action=DUNNO, timeout=2s }"
    ) in main
    assert (
        "mailstack_tripwire = $mailstack_proxied_guard, check_client_access "
        f"cidr:{layout.POSTFIX_CONFIG_DIR}/" + (CLUSTER_CLIENTS_FILE) in main
    )
    assert "smtpd_client_restrictions = $mailstack_tripwire" in main
    # Never trusted: mynetworks is the pod's loopback, no XCLIENT/XFORWARD.
    assert "mynetworks = 127.0.0.0/8 [::1]/128" in main
    assert "smtpd_authorized_xclient_hosts =" in main
    assert "smtpd_authorized_xforward_hosts =" in main
    master = files["master.cf"]
    # Port 25 alone (its smtpd's client restrictions are main.cf's): 587 and 465 are Dovecot's,
    # and mda-submit, mda-relay and the probe never look.
    assert "$mailstack_tripwire" not in master
    assert "smtpd_client_restrictions=permit_tls_clientcerts,reject" in master


def test_without_cluster_networks_there_is_no_tripwire() -> None:
    files = render_postfix_config(example_service(), None, "ab" * 32, ClusterNetworks())
    assert CLUSTER_CLIENTS_FILE not in files
    assert "mailstack_tripwire = $mailstack_proxied_guard\n" in files["main.cf"]
    assert "mailstack_proxied_guard =\n" in files["main.cf"]
    assert "check_policy_service" not in files["main.cf"]


def test_the_operator_namespace_may_read_the_postfix_agent_only() -> None:
    mta, mda = render_network_policies(example_service(), "mailstack-system")
    opening = mta["spec"]["ingress"][-1]
    assert opening == {
        "from": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "mailstack-system"}
                }
            }
        ],
        "ports": [{"protocol": "TCP", "port": layout.HEALTH_PORTS["postfix"]}],
    }
    assert "namespaceSelector" not in str(mda)
    assert "namespaceSelector" not in str(render_network_policies(example_service()))


# --- the agent -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sightings_count_transactions_and_keep_the_latest() -> None:
    clock = Clock()
    clients = MaskedClients(clock)
    assert clients.note("10.244.1.7", "25", "ABC1") is True
    assert clients.note("10.244.1.7", "25", "ABC1") is False  # a second RCPT, same mail
    clock.now += 30
    clients.note("10.244.1.7", "25", "ABC2")
    clients.note("10.244.1.8", "587", "")
    clock.now += 5
    assert clients.text() == "10.244.1.7 25 2 5\n10.244.1.8 587 1 5\n"
    for n in range(MAX_OBSERVATIONS):
        clients.note(f"10.244.2.{n}", "25", "")
    assert "10.244.1.7 " not in clients.text()  # the least recently seen went first
    assert len(clients.text().splitlines()) == MAX_OBSERVATIONS


def _policy_request(path: str, attributes: dict[str, str]) -> bytes:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    try:
        request = "".join(f"{k}={v}\n" for k, v in attributes.items()) + "\n"
        answers = b""
        for _ in range(2):  # Postfix reuses its connection
            sock.sendall(request.encode())
            while not answers.endswith(b"\n\n"):
                answers += sock.recv(1024)
            answers += b"|"
        return answers
    finally:
        sock.close()


def test_the_policy_service_notes_and_answers_dunno(tmp_path: Path) -> None:
    clients = MaskedClients()
    path = str(tmp_path / "tripwire")
    server = open_tripwire(clients, path, owner=None)
    health = serve_health(
        HealthState([], pages={layout.MASKED_CLIENTS_PATH: clients.text}), 0, "127.0.0.1"
    )
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        answer = _policy_request(
            path,
            {
                "request": "smtpd_access_policy",
                "protocol_state": "RCPT",
                "client_address": "10.244.1.7",
                "server_port": "25",
                "instance": "1a2b.3c4d.1",
            },
        )
        assert answer == b"action=DUNNO\n\n|action=DUNNO\n\n|"
        url = f"http://127.0.0.1:{health.port}{layout.MASKED_CLIENTS_PATH}"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read().decode() == "10.244.1.7 25 1 0\n"
    finally:
        server.shutdown()
        health.shutdown()


# --- the operator's decision -----------------------------------------------------------------


def test_the_agents_lines_become_sightings() -> None:
    text = (
        "10.244.1.7 25 3 12\n"
        "fd00::0:7 587 1 0\n"
        "garbage\n"
        "10.244.1.8 25 x 1\n"
        "not-an-ip 25 1 1\n"
        "10.244.1.9 smtp 1 1\n"
    )
    assert parse_observations(text, 100.0) == [
        Sighting("10.244.1.7", "25", 3, 88.0),
        Sighting("fd00::7", "587", 1, 100.0),
    ]


def test_sightings_merge_and_clear_after_a_quiet_time() -> None:
    old = Sighting("10.244.1.7", "25", 3, 100.0)
    kept = merge({}, [old], now=100.0, clear_after=50.0)
    newer = Sighting("10.244.1.7", "25", 4, 130.0)
    kept = merge(kept, [newer, Sighting("10.244.1.7", "25", 1, 90.0)], now=130.0, clear_after=50.0)
    assert kept == {("10.244.1.7", "25"): newer}
    assert merge(kept, [], now=179.0, clear_after=50.0) == kept
    assert merge(kept, [], now=180.0, clear_after=50.0) == {}


def test_the_condition_names_address_port_and_range() -> None:
    sightings = [
        Sighting("10.244.1.7", "25", 3, 0.0),
        Sighting("192.168.1.10", "465", 1, 0.0),
    ]
    condition = masked_condition(sightings, NETWORKS)
    assert (condition.type, condition.status, condition.reason) == (
        "ClientAddressesMasked",
        "True",
        "MaskedClientsSeen",
    )
    assert "10.244.1.7 on port 25 (pods range 10.244.0.0/16)" in condition.message
    assert "192.168.1.10 on port 465 (nodes range 192.168.1.10/32)" in condition.message
    assert masked_condition((), NETWORKS).status == "False"
    off = masked_condition(sightings, ClusterNetworks())
    assert (off.status, off.reason) == ("Unknown", "NotConfigured")
    many = [Sighting(f"10.244.0.{n}", "25", 1, 0.0) for n in range(12)]
    assert masked_condition(many, NETWORKS).message.count(" on port ") == 8
    assert "and 4 more" in masked_condition(many, NETWORKS).message


def test_the_condition_is_in_the_status_and_not_in_ready() -> None:
    condition = masked_condition([Sighting("10.244.1.7", "25", 3, 0.0)], NETWORKS)
    status = domain_status(
        Rendered(), generation=1, previous=None, now=datetime.now(UTC), masked=condition
    )
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["ClientAddressesMasked"]["status"] == "True"
    assert "ClientAddressesMasked" not in by_type["Ready"]["message"]


def test_the_agent_of_an_mta_pod_is_its_postfix_health_port() -> None:
    pod = {
        "spec": {
            "containers": [
                {"name": "rspamd", "ports": [{"name": "health", "containerPort": 9102}]},
                {"name": "postfix", "ports": [{"name": "health", "containerPort": 9101}]},
            ]
        },
        "status": {"podIP": "10.244.0.5"},
    }
    assert agent_address(pod) == ("10.244.0.5", 9101)
    assert agent_address({**pod, "status": {}}) is None  # not scheduled yet
    assert agent_address({**pod, "spec": {**pod["spec"], "hostNetwork": True}}) is None
    assert mta_selector("shop") == (
        "app.kubernetes.io/name=mailstack,app.kubernetes.io/instance=shop,"
        "app.kubernetes.io/component=mta"
    )
