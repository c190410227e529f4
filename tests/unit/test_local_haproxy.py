"""``mailstack up`` for the ProxyProtocol exposure: which ports go behind its HAProxy rather than
DNAT, HAProxy's configuration (accepted by the real ``haproxy -c``), and the check that the
MailDomain trusts the address HAProxy connects from."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mailstack.local.haproxy import haproxy_config, untrusted_domains
from mailstack.local.pods import plan_pods, public_forwards
from tests.unit.test_render_proxy import proxied_render, render


def test_the_proxied_services_ports_go_behind_haproxy(tmp_path: Path) -> None:
    objects = proxied_render(tmp_path)
    forwards = public_forwards(objects, plan_pods(objects))
    # The public Service (a ClusterIP) is published, the internal one is not.
    assert {(f.name, f.port, f.target, f.proxied) for f in forwards} == {
        ("smtp", 25, 25, True),
        ("submissions", 465, 465, True),
        ("submission", 587, 587, True),
        ("imap", 143, 143, True),
        ("imaps", 993, 993, True),
        ("pop3", 110, 110, True),
        ("pop3s", 995, 995, True),
        ("sieve", 4190, 4190, True),
    }


def test_host_ports_are_published_with_dnat(tmp_path: Path) -> None:
    objects = render(tmp_path, {"exposure": "HostPort"})
    forwards = public_forwards(objects, plan_pods(objects))
    assert forwards and not any(f.proxied for f in forwards)


def test_the_configuration_sends_proxy_v2_to_the_pods() -> None:
    config = haproxy_config(
        ["127.0.0.1", "::1"],
        [(20025, "10.192.0.2", 25), (20993, "10.192.0.3", 993)],
        "10.192.0.1",
    )
    assert config.endswith(
        "listen port-20025\n"
        "  bind 127.0.0.1:20025\n"
        "  bind ipv6@::1:20025\n"
        "  tcp-request connection set-src ipv4(10.192.0.1) if { src 127.0.0.0/8 ::1 }\n"
        "  server pod 10.192.0.2:25 send-proxy-v2\n"
        "listen port-20993\n"
        "  bind 127.0.0.1:20993\n"
        "  bind ipv6@::1:20993\n"
        "  tcp-request connection set-src ipv4(10.192.0.1) if { src 127.0.0.0/8 ::1 }\n"
        "  server pod 10.192.0.3:993 send-proxy-v2\n"
    )
    assert "  mode tcp\n" in config and "  timeout client 31m\n" in config
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.fail("haproxy is not installed: run ./scripts/setup.sh")
    check = subprocess.run(
        [haproxy, "-c", "-f", "/dev/stdin"], input=config, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def test_the_trusted_ranges_must_hold_the_host(tmp_path: Path) -> None:
    objects = proxied_render(tmp_path)  # trusts 10.192.0.0/10 and an IPv6 range
    assert untrusted_domains(objects, ["px.example"], "10.192.7.1") == []
    assert untrusted_domains(objects, ["px.example"], "10.100.0.1") == ["px.example"]
    assert untrusted_domains(objects, [], "10.100.0.1") == []
