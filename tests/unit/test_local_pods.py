"""The pure part of ``mailstack up``: from rendered objects to local pods, names and ports."""

from __future__ import annotations

from typing import Any

from mailstack.local.pods import DOMAIN_PORT_STEP, plan_pods, public_forwards, service_addresses


def test_every_statefulset_becomes_one_pod_with_its_claims(
    example_render: list[dict[str, Any]],
) -> None:
    pods = {pod.key: pod for pod in plan_pods(example_render)}
    assert set(pods) == {
        "mail/example-com-mta-0",
        "mail/example-com-mda-0",
        "default/example-org-mta-0",
        "default/example-org-mda-0",
    }
    mda = pods["mail/example-com-mda-0"]
    assert mda.volumes["mail"].kind == "claim"
    assert mda.volumes["mail"].claim == "mail-example-com-mda-0"  # as a StatefulSet names PVCs
    assert mda.volumes["users"].items == [{"key": "passwd", "path": "passwd"}]
    mta = pods["mail/example-com-mta-0"]
    assert [c.name for c in mta.containers] == ["postfix", "rspamd"]
    rspamd = next(c for c in mta.containers if c.name == "rspamd")
    assert {
        "volume": "queue",
        "target": "/var/lib/rspamd",
        "readOnly": False,
        "subPath": "rspamd",
    } in rspamd.mounts
    assert rspamd.command[-4:] == ["agent", "rspamd", "--health-port", "9102"]
    # The container's env as rendered (glibc malloc settings for rspamd), as a kubelet sets it.
    assert rspamd.env["GLIBC_TUNABLES"].startswith("glibc.malloc.")
    assert next(c for c in mta.containers if c.name == "postfix").env == {}


def test_public_ports_go_to_the_pod_that_declares_them(
    example_render: list[dict[str, Any]],
) -> None:
    pods = plan_pods(example_render)
    forwards = public_forwards(example_render, pods)
    com = {f.name: (f.port, f.pod, f.target) for f in forwards if f.domain == "example.com"}
    assert com["smtp"] == (25, "mail/example-com-mta-0", 25)
    assert com["imaps"] == (993, "mail/example-com-mda-0", 993)
    assert com["sieve"] == (4190, "mail/example-com-mda-0", 4190)
    # A second MailDomain is published one step higher, never on the first one's ports.
    org = {f.name: f.port for f in forwards if f.domain == "example.org"}
    assert org["smtp"] == 25 + DOMAIN_PORT_STEP
    assert not set(org.values()) & {port for port, _, _ in com.values()}
    assert "lmtp" not in com and "sasl" not in com


def test_service_names_resolve_to_their_pods(example_render: list[dict[str, Any]]) -> None:
    pods = plan_pods(example_render)
    address = {pod.key: f"10.0.0.{index + 2}" for index, pod in enumerate(pods)}
    entries = dict(service_addresses(example_render, pods, address))
    mda_names = next(names for names in entries if names.startswith("example-com-mda "))
    assert "example-com-mda.mail.svc.cluster.local" in mda_names
    assert entries[mda_names] == address["mail/example-com-mda-0"]
