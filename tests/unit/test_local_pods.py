"""The pure part of ``mailstack up``: from rendered objects to local pods, names and ports."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.local.pods import DOMAIN_PORT_STEP, plan_pods, public_forwards, service_addresses
from mailstack.local.security import (
    HostIds,
    Security,
    SecurityError,
    container_security,
    setpriv_command,
)


def test_every_statefulset_becomes_one_pod_with_its_claims(
    example_render: list[dict[str, Any]],
) -> None:
    pods = {pod.key: pod for pod in plan_pods(example_render)}
    assert set(pods) == {
        "mail/example-com-mta-0",
        "mail/example-com-mda-0",
        "default/example-org-mta-0",
        "default/example-org-mda-0",
        "mail-platform/shared-mta-0",  # examples/shared: the server, none for its domains
        "mail-platform/shared-mda-0",
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
        "subPath": "rspamd-db",
    } in rspamd.mounts
    assert rspamd.command[-4:] == ["agent", "rspamd", "--health-port", "9102"]
    # The container's env as rendered (glibc malloc settings for rspamd; none for the agent
    # beside Postfix, which carries no tunnel since Postfix takes no logins), as a kubelet sets
    # it.
    assert rspamd.env["GLIBC_TUNABLES"].startswith("glibc.malloc.")
    postfix = next(c for c in mta.containers if c.name == "postfix")
    assert postfix.env == {}


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


def test_containers_run_as_their_security_context_says(
    example_render: list[dict[str, Any]],
) -> None:
    """The capabilities, user and groups of the rendered containers reach the local runtime."""
    pods = {p.statefulset: p for p in plan_pods(example_render)}
    for pod in pods.values():
        for container in pod.containers:
            sts = next(
                o
                for o in example_render
                if o["kind"] == "StatefulSet" and o["metadata"]["name"] == pod.statefulset
            )
            spec = sts["spec"]["template"]["spec"]
            rendered = next(c for c in spec["containers"] if c["name"] == container.name)
            assert container.security.capabilities == tuple(
                sorted(rendered["securityContext"]["capabilities"].get("add", []))
            )
            assert container.security.no_new_privs
            assert container.security.groups == (spec["securityContext"]["fsGroup"],)


def test_security_context_as_a_container_runtime_applies_it() -> None:
    spec = {"securityContext": {"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [7]}}
    default = container_security({}, {"name": "c"})
    assert default == Security()  # root, the runtime's default capabilities
    assert "NET_RAW" in default.capabilities and "SYS_ADMIN" not in default.capabilities
    own = {
        "securityContext": {
            "runAsUser": 1001,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["NET_RAW", "MKNOD"], "add": ["SYS_TIME"]},
        }
    }
    security = container_security(spec, own)
    assert (security.user, security.group, security.groups) == (1001, None, (2000, 7))
    assert "NET_RAW" not in security.capabilities and "SYS_TIME" in security.capabilities
    assert security.no_new_privs and security.non_root

    ids = HostIds(uid=lambda u: u + 1, gid=lambda g: g + 1, primary_gid=lambda u: 50)
    argv = setpriv_command(
        container_security(spec, {"securityContext": {"capabilities": {"drop": ["ALL"]}}}), ids
    )
    assert argv == [
        "setpriv",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--reuid=1001",
        "--regid=50",  # no runAsGroup: the user's own group
        "--groups=2001,8",
        "--",
    ]
    root = setpriv_command(Security(capabilities=("CHOWN", "NET_BIND_SERVICE")), ids)
    assert root == [
        "setpriv",
        "--bounding-set=-all,+chown,+net_bind_service",
        "--inh-caps=-all",
        "--clear-groups",
        "--",
    ]
    with pytest.raises(SecurityError, match="runAsNonRoot"):
        setpriv_command(Security(non_root=True), ids)
