"""The rendered NetworkPolicies as nftables rules for ``mailstack up`` (``local.network_policy``):
what each pod accepts, what is refused loudly, and a ruleset ``nft`` itself accepts."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from typing import Any

import pytest

from mailstack.local.network_policy import PolicyError, PolicyPod, policy_ruleset
from mailstack.local.pods import plan_pods
from mailstack.render import layout

SUBNET = "10.250.7.0/24"
HOST = "10.250.7.1"


def _pods(objects: list[dict[str, Any]]) -> dict[str, PolicyPod]:
    return {
        plan.key: PolicyPod.of(plan, f"10.250.7.{2 + index}")
        for index, plan in enumerate(plan_pods(objects))
    }


def _policies(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]


def _ruleset(policies: list[dict[str, Any]], pods: dict[str, PolicyPod]) -> str:
    return policy_ruleset(
        policies, list(pods.values()), table="mailstack_test", subnet=SUBNET, host_address=HOST
    )


def _chain_of(ruleset: str, pod: PolicyPod, direction: str = "ingress") -> list[str]:
    """The rules of the chain the dispatch chain sends ``pod``'s packets to."""
    field = "daddr" if direction == "ingress" else "saddr"
    jump = re.search(rf"ip {field} {re.escape(pod.address)} jump (\S+)", ruleset)
    assert jump, f"{pod.key} is not isolated for {direction}"
    body = re.search(rf"chain {jump.group(1)} {{\n(.*?)\n  }}", ruleset, re.S)
    assert body
    return [line.strip() for line in body.group(1).splitlines() if not line.strip().startswith("#")]


def test_only_the_mta_reaches_lmtp_and_only_the_mda_its_relay_ports(
    example_render: list[dict[str, Any]],
) -> None:
    pods = _pods(example_render)
    ruleset = _ruleset(_policies(example_render), pods)
    mta, mda = pods["mail/example-com-mta-0"], pods["mail/example-com-mda-0"]
    other_mta = pods["default/example-org-mta-0"]
    rules = _chain_of(ruleset, mda)
    # The host for the probes, the public ports for everyone (587 and 465 are Dovecot's), LMTP
    # for the MTA alone.
    assert rules[0] == f"ip saddr {HOST} tcp dport {layout.HEALTH_PORTS['dovecot']} accept"
    assert "tcp dport { 110, 143, 465, 587, 993, 995, 4190 } accept" in rules
    assert f"ip saddr {mta.address} tcp dport 24 accept" in rules
    assert any(re.fullmatch(r"tcp dport \{ [\d, ]+ \} accept", rule) for rule in rules)
    assert not any(other_mta.address in rule for rule in rules)
    assert rules[-2:] == [
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx admin-prohibited",
    ]
    # The MTA: port 25 from anywhere, mda-submit and mda-relay from its own MDA only.
    mta_rules = _chain_of(ruleset, mta)
    relay_ports = f"{layout.MDA_SUBMIT_PORT.number}, {layout.MDA_RELAY_PORT.number}"
    assert f"ip saddr {mda.address} tcp dport {{ {relay_ports} }} accept" in mta_rules
    assert "tcp dport 25 accept" in mta_rules
    # The renderer writes no egress policy: nothing is isolated for egress.
    assert "jump out_" not in ruleset


def test_nft_accepts_the_ruleset(example_render: list[dict[str, Any]]) -> None:
    if shutil.which("nft") is None:
        pytest.fail("nft is not installed: run ./scripts/setup.sh")
    ruleset = _ruleset(_policies(example_render), _pods(example_render))
    # -c: parse and check against the kernel without applying anything.
    result = subprocess.run(
        ["nft", "-c", "-f", "-"], input=ruleset, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr + ruleset


def test_a_pod_no_policy_selects_is_open(example_render: list[dict[str, Any]]) -> None:
    pods = _pods(example_render)
    only_com = [p for p in _policies(example_render) if p["metadata"]["namespace"] == "mail"]
    ruleset = _ruleset(only_com, pods)
    assert pods["default/example-org-mda-0"].address not in ruleset
    assert pods["mail/example-com-mda-0"].address in ruleset


def _mda_policy(example_render: list[dict[str, Any]]) -> dict[str, Any]:
    policy = next(
        p
        for p in _policies(example_render)
        if p["metadata"]["name"] == "example-com-mda" and p["metadata"]["namespace"] == "mail"
    )
    return copy.deepcopy(policy)


def test_egress_rules_resolve_named_ports_on_the_destination(
    example_render: list[dict[str, Any]],
) -> None:
    pods = _pods(example_render)
    policy = _mda_policy(example_render)
    mta = pods["mail/example-com-mta-0"]
    policy["spec"]["policyTypes"] = ["Egress"]
    policy["spec"]["egress"] = [
        {
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "mta"}}}],
            "ports": [{"port": "mda-submit", "protocol": "TCP"}],
        },
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
    ]
    ruleset = _ruleset([policy], pods)
    rules = _chain_of(ruleset, pods["mail/example-com-mda-0"], "egress")
    assert f"ip daddr {mta.address} tcp dport {layout.MDA_SUBMIT_PORT.number} return" in rules
    assert "tcp dport 53 return" in rules and "udp dport 53 return" in rules
    # The other namespace's MTA has the label too, but a podSelector alone stays in the policy's.
    assert not any(pods["default/example-org-mta-0"].address in rule for rule in rules)
    assert "jump in_" not in ruleset  # Egress only: ingress stays open


def test_a_namespace_selector_by_name_reaches_other_namespaces(
    example_render: list[dict[str, Any]],
) -> None:
    pods = _pods(example_render)
    policy = _mda_policy(example_render)
    policy["spec"]["ingress"] = [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "default"}
                    },
                    "podSelector": {"matchLabels": {"app.kubernetes.io/component": "mta"}},
                }
            ],
            "ports": [{"port": "lmtp"}],
        }
    ]
    rules = _chain_of(_ruleset([policy], pods), pods["mail/example-com-mda-0"])
    assert f"ip saddr {pods['default/example-org-mta-0'].address} tcp dport 24 accept" in rules
    assert not any(pods["mail/example-com-mta-0"].address in rule for rule in rules)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s["podSelector"].update(matchExpressions=[]),
            r"spec.podSelector: matchExpressions not supported",
        ),
        (
            lambda s: s["ingress"][-1]["from"].append(
                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}
            ),
            r"ingress\[\d\].from\[1\].ipBlock: except not supported",
        ),
        (
            lambda s: s["ingress"][-1]["from"].append({"ipBlock": {"cidr": "10.0.0.1/8"}}),
            r"from\[1\].ipBlock.cidr: 10.0.0.1/8 has host bits set",
        ),
        (
            lambda s: s["ingress"][-1]["ports"][0].update(endPort=30),
            r"ports\[0\]: endPort not supported",
        ),
        (
            lambda s: s["ingress"][-1]["ports"][0].update(protocol="SCTP"),
            r"protocol: SCTP not supported",
        ),
        (lambda s: s.update(policyTypes=["Ingress", "Sideways"]), r"policyTypes: 'Sideways'"),
        (
            lambda s: s["ingress"][-1]["from"].append(
                {"namespaceSelector": {"matchLabels": {"team": "mail"}}}
            ),
            r"only kubernetes.io/metadata.name is known locally, not team",
        ),
        (lambda s: s["ingress"][-1]["from"].append({}), r"from\[1\]: an empty peer"),
    ],
)
def test_unknown_features_are_refused_loudly(
    example_render: list[dict[str, Any]], change: Any, message: str
) -> None:
    policy = _mda_policy(example_render)
    change(policy["spec"])
    with pytest.raises(PolicyError, match=message) as refused:
        _ruleset([policy], _pods(example_render))
    assert "NetworkPolicy mail/example-com-mda" in str(refused.value)


def test_ports_without_a_number_and_names_the_pod_lacks(
    example_render: list[dict[str, Any]],
) -> None:
    pods = _pods(example_render)
    policy = _mda_policy(example_render)
    policy["spec"]["ingress"] = [
        {"ports": [{"protocol": "UDP"}, {"protocol": "UDP", "port": 53}, {"port": 25}]},
        {"ports": [{"port": "smtp"}]},  # the MTA's name: the MDA declares no such port
    ]
    rules = _chain_of(_ruleset([policy], pods), pods["mail/example-com-mda-0"])
    assert rules[1:] == [
        "tcp dport 25 accept",
        "meta l4proto udp accept",
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx admin-prohibited",
    ]


def test_ip_blocks_admit_their_ranges_on_the_destinations_ports(
    example_render: list[dict[str, Any]],
) -> None:
    """The ProxyProtocol exposure admits its proxies by range (``ipBlock``), IPv4 and IPv6."""
    pods = _pods(example_render)
    policy = _mda_policy(example_render)
    policy["spec"]["ingress"] = [
        {
            "from": [{"ipBlock": {"cidr": "10.250.0.0/16"}}, {"ipBlock": {"cidr": "fd00::/48"}}],
            "ports": [{"port": "imaps", "protocol": "TCP"}, {"port": 4190}],
        }
    ]
    policy["spec"]["policyTypes"] = ["Ingress", "Egress"]
    policy["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]
    ruleset = _ruleset([policy], pods)
    mda = pods["mail/example-com-mda-0"]
    assert _chain_of(ruleset, mda)[1:3] == [
        "ip saddr 10.250.0.0/16 tcp dport { 993, 4190 } accept",
        "ip6 saddr fd00::/48 tcp dport { 993, 4190 } accept",
    ]
    assert _chain_of(ruleset, mda, "egress")[0] == "ip daddr 192.0.2.0/24 return"


def test_the_proxy_protocol_policies_as_rules(tmp_path: Any) -> None:
    """The rendered policies of a ProxyProtocol MailDomain: the public ports from the trusted
    ranges only, the internal listeners from the namespace's pods."""
    from tests.unit.test_render_proxy import proxied_render

    objects = proxied_render(tmp_path)
    pods = _pods(objects)
    mta = pods["mail/px-mta-0"]
    mda = pods["mail/px-mda-0"]
    ruleset = _ruleset(_policies(objects), pods)
    rules = _chain_of(ruleset, mta)
    assert "ip saddr 10.192.0.0/10 tcp dport 25 accept" in rules
    assert not any(re.fullmatch(r"tcp dport .* accept", rule) for rule in rules)
    # 587 and 465 are Dovecot's: the MDA's chain has them and their internal twins.
    mda_rules = _chain_of(ruleset, mda)
    public = "{ 110, 143, 465, 587, 993, 995, 4190 }"
    assert f"ip saddr 10.192.0.0/10 tcp dport {public} accept" in mda_rules
    namespace_pods = f"{{ {mta.address}, {mda.address} }}"
    internal = "{ 11110, 11143, 11465, 11587, 11993, 11995, 15190 }"
    assert f"ip saddr {namespace_pods} tcp dport {internal} accept" in mda_rules
    assert not any(re.fullmatch(r"tcp dport .* accept", rule) for rule in mda_rules)
