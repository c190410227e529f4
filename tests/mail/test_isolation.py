"""Faults around the pods under `mailstack up`: who reaches the internal ports (the rendered
NetworkPolicies as nftables rules), a host tool replacing /etc/hosts, and Postfix losing its LMTP
Service (unready, and the mail waits in the queue instead of bouncing)."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstack.local.network import run_id_for
from mailstack.render import layout
from tests.mail.conftest import PASSWORDS, Stack
from tests.mail.messages import raw_text_message, token

MTA_POD, MDA_POD = "mail/example-com-mta-0", "mail/example-com-mda-0"
MDA_SERVICE = "example-com-mda"
INTERNAL = [(MDA_POD, layout.LMTP_PORT.number)]
POSTFIX_HEALTH = layout.HEALTH_PORTS["postfix"]

# "open <first bytes of a greeting>", "refused", or "blocked <error>" (a timeout, no route).
PROBE = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as conn:
        conn.settimeout(3)
        try:
            greeting = conn.recv(64)[:3].decode(errors="replace")
        except TimeoutError:  # a TLS port waits for the client
            greeting = ""
        print("open", greeting)
except ConnectionRefusedError:
    print("refused")
except OSError as err:
    print("blocked", type(err).__name__)
"""


def _endpoints(stack: Stack) -> dict[str, object]:
    return json.loads((stack.state / "endpoints.json").read_text())  # type: ignore[no-any-return]


def _address(stack: Stack, pod: str) -> str:
    pods = _endpoints(stack)["pods"]
    assert isinstance(pods, dict)
    return str(pods[pod])


def _probe(prefix: list[str], host: str, port: int) -> str:
    result = subprocess.run(
        [*prefix, "python3", "-c", PROBE, host, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _postfix_ready(stack: Stack) -> tuple[int, str]:
    return _http(f"http://{_address(stack, MTA_POD)}:{POSTFIX_HEALTH}/readyz")


def _postfix_alive(stack: Stack) -> tuple[int, str]:
    return _http(f"http://{_address(stack, MTA_POD)}:{POSTFIX_HEALTH}/healthz")


@pytest.fixture
def stranger(stack: Stack) -> Iterator[str]:
    """A network namespace on the run's bridge with an address of its subnet: a pod that no
    NetworkPolicy names (another workload of the cluster)."""
    host = str(_endpoints(stack)["hostAddress"])
    subnet = ipaddress.ip_network(f"{host}/24", strict=False)
    name = secrets.token_hex(3)
    netns, veth = f"mstest{name}", f"mst{name}"
    steps = [
        ["ip", "netns", "add", netns],
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns],
        ["ip", "link", "set", veth, "master", f"msb{run_id_for(stack.state)}", "up"],
        ["ip", "-n", netns, "addr", "add", f"{subnet.network_address + 250}/24", "dev", "eth0"],
        ["ip", "-n", netns, "link", "set", "eth0", "up"],
        ["ip", "-n", netns, "link", "set", "lo", "up"],
        ["ip", "-n", netns, "route", "add", "default", "via", host],
    ]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
        yield netns
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "delete", veth], check=False, capture_output=True)


def test_lmtp_answers_the_mta_alone(stack: Stack, stranger: str) -> None:
    mta = _address(stack, MTA_POD)
    internal = [(_address(stack, pod), port) for pod, port in INTERNAL]
    internal.append((mta, layout.MDA_SUBMIT_PORT.number))  # Dovecot's alone
    internal.append((mta, layout.MDA_RELAY_PORT.number))  # Dovecot's alone (587 and 465)
    in_stranger = ["ip", "netns", "exec", stranger]
    in_internet = ["ip", "netns", "exec", stack.internet.netns]
    for address, port in internal:
        assert _probe([], address, port) == "refused", (address, port)
        assert _probe(in_stranger, address, port) == "refused", (address, port)
        assert not _probe(in_internet, address, port).startswith("open"), (address, port)
    # The MTA reaches LMTP, by the Service name Postfix uses.
    for _, port in INTERNAL:
        result = stack.in_container("postfix", "python3", "-c", PROBE, MDA_SERVICE, str(port))
        assert result.stdout.startswith("open"), (port, result.stdout, result.stderr)
    # The public ports stay open: published on the host, and at the pod for any client.
    assert _probe([], "127.0.0.1", stack.port("smtp")) == "open 220"
    assert _probe([], "127.0.0.1", stack.port("imaps")).startswith("open")
    assert _probe(in_stranger, mta, 25) == "open 220"
    # The host's probes reach the agents; another pod does not.
    assert _postfix_ready(stack)[0] == 200
    assert _probe(in_stranger, mta, POSTFIX_HEALTH) == "refused"


def _replace(path: Path, text: str) -> None:
    """As editors and configuration tools write a file: a new one renamed over it."""
    before = path.stat().st_ino
    fresh = path.with_name(f".{path.name}.new")
    fresh.write_text(text)
    os.replace(fresh, path)
    assert path.stat().st_ino != before


def test_a_host_tool_replacing_etc_hosts_leaves_mail_flowing(stack: Stack) -> None:
    host_etc = stack.workdir / "host-etc"
    _replace(host_etc / "hosts", "127.0.0.1\tlocalhost\n# rewritten by a host tool\n")
    _replace(host_etc / "resolv.conf", "nameserver 192.0.2.53\n")
    time.sleep(1)
    resolved = stack.in_container("postfix", "getent", "hosts", MDA_SERVICE)
    assert _address(stack, MDA_POD) in resolved.stdout, resolved
    assert _postfix_ready(stack) == (200, "ok\n")
    subject = token("after /etc/hosts was replaced")
    stack.send_from_internet("alice@example.com", raw_text_message(subject, "alice@example.com"))
    stack.wait_for_subject("alice", subject)
    # Submission logs in at Dovecot, which relays through the MTA's Service name.
    subject = token("submitted after /etc/hosts was replaced")
    with stack.smtp("submission") as smtp:
        assert smtp.login("alice@example.com", PASSWORDS["alice"])[0] == 235
        refused = smtp.sendmail(
            "alice@example.com",
            ["bob@example.com"],
            raw_text_message(subject, "bob@example.com", sender="alice@example.com"),
        )
    assert refused == {}
    stack.wait_for_subject("bob", subject)


def _queue_state(stack: Stack, queue_id: str) -> str:
    entry = next((e for e in stack.postfix_queue() if e.get("queue_id") == queue_id), None)
    return "" if entry is None else str(entry.get("queue_name"))


def _delivered_after_repair(stack: Stack, subject: str) -> None:
    stack.wait_for("postfix ready again", lambda: _postfix_ready(stack)[0] == 200, 60)
    stack.flush_queue()
    stack.wait_for_subject("alice", subject, timeout=60)


def test_postfix_is_unready_while_lmtp_is_unreachable_and_mail_waits(stack: Stack) -> None:
    table = f"mailstack_test_{secrets.token_hex(3)}"
    mta, mda = _address(stack, MTA_POD), _address(stack, MDA_POD)
    block = (
        f"table inet {table} {{\n  chain forward {{\n"
        "    type filter hook forward priority filter - 10; policy accept;\n"
        f"    ip saddr {mta} ip daddr {mda} tcp dport {layout.LMTP_PORT.number}"
        " reject with tcp reset\n  }\n}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=block, text=True, check=True)
    try:
        _, body = stack.wait_for(
            "postfix unready", lambda: (r := _postfix_ready(stack))[0] == 503 and r, 40
        )
        assert f"LMTP service {MDA_SERVICE}:{layout.LMTP_PORT.number}" in body, body
        assert _postfix_alive(stack) == (200, "ok\n")  # unready, never restarted
        subject = token("while lmtp is unreachable")
        queue_id = stack.send_from_internet(
            "alice@example.com", raw_text_message(subject, "alice@example.com")
        )
        stack.wait_for("deferral", lambda: _queue_state(stack, queue_id) == "deferred")
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=False)
    _delivered_after_repair(stack, subject)


def test_an_lmtp_service_name_that_does_not_resolve_defers_mail(stack: Stack) -> None:
    """The red team's loss: Postfix bounced 5.4.4 for a next hop it could not resolve."""
    hosts = stack.state / "pods" / MTA_POD / "hosts"
    nsswitch = stack.workdir / "host-etc" / "nsswitch.conf"
    saved = {path: path.read_text() for path in (hosts, nsswitch)}
    try:
        # In place (the pod's mounts follow the inode): the Service name leaves the pod's hosts
        # file, and names resolve from files alone, so the lookup fails for good (NXDOMAIN's
        # "Name or service not known", not a temporary failure). Postfix's own DNS lookups
        # (the sender domain check) do not go through NSS and keep working.
        hosts.write_text(
            "".join(ln for ln in saved[hosts].splitlines(True) if MDA_SERVICE not in ln)
        )
        nsswitch.write_text("passwd: files\ngroup: files\nshadow: files\nhosts: files\n")
        _, body = stack.wait_for(
            "postfix unready", lambda: (r := _postfix_ready(stack))[0] == 503 and r, 40
        )
        assert f"LMTP service {MDA_SERVICE} does not resolve" in body, body
        time.sleep(3)  # past Postfix's LMTP connection cache
        subject = token("while the lmtp service does not resolve")
        queue_id = stack.send_from_internet(
            "alice@example.com", raw_text_message(subject, "alice@example.com")
        )
        line = stack.wait_for_log("example-com-mta-0", "postfix", queue_id, "status=deferred")
        assert "dsn=4.4.4" in line, line
        assert _queue_state(stack, queue_id) == "deferred"
        postfix_log = stack.log("example-com-mta-0", "postfix").splitlines()
        assert not [ln for ln in postfix_log if queue_id in ln and "status=bounced" in ln]
    finally:
        for path, text in saved.items():
            path.write_text(text)
    _delivered_after_repair(stack, subject)
