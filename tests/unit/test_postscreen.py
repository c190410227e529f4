"""``spec.postscreen``: what the parser refuses, and what main.cf and master.cf say for port 25."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mailstack.api.errors import ValidationError
from mailstack.api.parse import parse_maildomain
from mailstack.api.postscreen_models import Dnsbl, DnsblSite, Postscreen
from mailstack.render.postfix import render_postfix_main_cf, render_postfix_master_cf
from tests.parsers import parse_main_cf
from tests.support import example_service

MDA_FINGERPRINT = ":".join(["AB"] * 32)


def parse(postscreen: Any) -> Postscreen:
    doc = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "example-com", "namespace": "mail"},
        "spec": {"domain": "example.com", "postscreen": postscreen},
    }
    return parse_maildomain(doc).postscreen


def problems(postscreen: Any) -> str:
    with pytest.raises(ValidationError) as err:
        parse(postscreen)
    return str(err.value)


def main_cf(postscreen: Postscreen) -> dict[str, str]:
    service = example_service(postscreen=postscreen)
    return parse_main_cf(render_postfix_main_cf(service, MDA_FINGERPRINT))


# --- parsing ----------------------------------------------------------------------------------


def test_defaults_screen_with_the_pregreet_test_only() -> None:
    assert parse(None) == Postscreen()
    params = main_cf(Postscreen())
    assert params["postscreen_greet_action"] == "enforce"
    assert params["postscreen_greet_wait"] == "3s"
    assert params["postscreen_dnsbl_sites"] == ""
    assert params["postscreen_access_list"] == "permit_mynetworks"
    assert params["postscreen_pipelining_enable"] == "no"
    assert params["postscreen_cache_map"].startswith("btree:/var/spool/mailstack/")


def test_a_full_spec_is_parsed() -> None:
    parsed = parse(
        {
            "pregreet": {"action": "drop", "waitSeconds": 5},
            "deepProtocolTests": True,
            "dnsbl": {
                "sites": [
                    {"name": "zen.spamhaus.org", "filter": "127.0.0.[2..11]", "weight": 2},
                    {"name": "list.dnswl.org", "filter": "127.0.[0..255].[2;3]", "weight": -2},
                    {"name": "bl.spamcop.net"},
                ],
                "threshold": 2,
                "allowlistThreshold": -1,
                "action": "drop",
            },
            "allowNetworks": ["192.0.2.7", "2001:db8::1/64"],
        }
    )
    assert parsed == Postscreen(
        pregreet="drop",
        greet_wait=5,
        deep_protocol_tests=True,
        dnsbl=Dnsbl(
            sites=(
                DnsblSite("zen.spamhaus.org", 2, "127.0.0.[2..11]"),
                DnsblSite("list.dnswl.org", -2, "127.0.[0..255].[2;3]"),
                DnsblSite("bl.spamcop.net"),
            ),
            threshold=2,
            allowlist_threshold=-1,
            action="drop",
        ),
        allow_networks=("192.0.2.7/32", "2001:db8::/64"),
    )


@pytest.mark.parametrize(
    ("postscreen", "needle"),
    [
        ({"dnsbl": {"sites": [{"name": "zen.spamhaus.org, evil.example"}]}}, "sites[0].name"),
        ({"dnsbl": {"sites": [{"name": "zen.spamhaus.org\nx = y"}]}}, "sites[0].name"),
        ({"dnsbl": {"sites": [{"name": "bl.kube-system.svc.cluster.local"}]}}, "not a public"),
        ({"dnsbl": {"sites": [{"name": "localhost"}]}}, "sites[0].name"),
        ({"dnsbl": {"sites": [{"weight": 2}]}}, "sites[0].name: is required"),
        ({"dnsbl": {"sites": [{"name": "a.example", "weight": 0}]}}, "weight of 0"),
        ({"dnsbl": {"sites": [{"name": "a.example", "weight": 101}]}}, "sites[0].weight"),
        ({"dnsbl": {"sites": [{"name": "a.example", "filter": "127.0.0.2*5"}]}}, "filter"),
        ({"dnsbl": {"sites": [{"name": "a.example", "filter": "127.0.0"}]}}, "filter"),
        ({"dnsbl": {"sites": [{"name": "a.example", "filter": "127.0.0.256"}]}}, "filter"),
        ({"dnsbl": {"sites": [{"name": "a.example", "filter": "127.0.0.[2..]"}]}}, "filter"),
        ({"dnsbl": {"sites": [{"name": "a.example", "filter": "127.0.0.[9..2]"}]}}, "backwards"),
        ({"dnsbl": {"sites": [{"name": "a.example", "filter": "127.0.0.[2] x"}]}}, "filter"),
        (
            {"dnsbl": {"sites": [{"name": "a.example"}, {"name": "a.example", "weight": 2}]}},
            "listed twice",
        ),
        ({"dnsbl": {"threshold": 0}}, "threshold"),
        ({"dnsbl": {"allowlistThreshold": 1}}, "allowlistThreshold"),
        ({"dnsbl": {"action": "ignore"}}, "dnsbl.action"),
        ({"pregreet": {"action": "reject"}}, "pregreet.action"),
        ({"pregreet": {"waitSeconds": 0}}, "waitSeconds"),
        ({"pregreet": {"waitSeconds": 30}}, "waitSeconds"),
        ({"allowNetworks": ["10.0.0.0/8 permit"]}, "allowNetworks"),
        ({"allowNetworks": ["permit_mynetworks"]}, "allowNetworks"),
        ({"deepProtocolTests": "yes"}, "deepProtocolTests"),
        ({"greylisting": True}, "unknown field"),
    ],
)
def test_invalid_values_are_refused(postscreen: Any, needle: str) -> None:
    assert needle in problems(postscreen)


# --- rendering --------------------------------------------------------------------------------


def test_dns_lists_and_allowed_networks_reach_main_cf() -> None:
    params = main_cf(
        Postscreen(
            dnsbl=Dnsbl(
                sites=(
                    DnsblSite("zen.spamhaus.org", 2, "127.0.0.[2..11]"),
                    DnsblSite("list.dnswl.org", -2, None),
                    DnsblSite("bl.spamcop.net"),
                ),
                threshold=2,
                allowlist_threshold=-1,
            ),
            allow_networks=("192.0.2.0/24", "2001:db8::/32"),
        )
    )
    assert params["postscreen_dnsbl_sites"] == (
        "zen.spamhaus.org=127.0.0.[2..11]*2, list.dnswl.org*-2, bl.spamcop.net"
    )
    assert params["postscreen_dnsbl_threshold"] == "2"
    assert params["postscreen_dnsbl_allowlist_threshold"] == "-1"
    assert params["postscreen_dnsbl_action"] == "enforce"
    assert params["postscreen_access_list"] == (
        "permit_mynetworks, cidr:{ {192.0.2.0/24 permit}, {2001:db8::/32 permit} }"
    )


def test_deep_protocol_tests_are_a_switch() -> None:
    params = main_cf(Postscreen(deep_protocol_tests=True))
    for test in ("pipelining", "non_smtp_command", "bare_newline"):
        assert params[f"postscreen_{test}_enable"] == "yes"


def test_port_25_is_postscreen_in_front_of_smtpd() -> None:
    lines = render_postfix_master_cf(example_service()).splitlines()
    services = {tuple(line.split()[:2]): line.split() for line in lines if line[:1].isalnum()}
    assert services[("25", "inet")][6:8] == ["1", "postscreen"]
    assert services[("smtpd", "pass")][7] == "smtpd"
    assert services[("dnsblog", "unix")][7] == "dnsblog"
    assert services[("tlsproxy", "unix")][7] == "tlsproxy"
    # smtpd's options for port 25 moved with it to the pass service.
    after_pass = lines[lines.index(next(ln for ln in lines if ln.startswith("smtpd "))) + 1]
    assert after_pass.strip() == "-o syslog_name=postfix/smtp"


def test_postconf_reads_a_configured_postscreen(tmp_path: Path) -> None:
    """Postfix itself accepts the rendered lists, filters and inline cidr table."""
    postconf = shutil.which("postconf") or "/usr/sbin/postconf"
    if not os.path.exists(postconf):
        pytest.fail("postconf is not installed (Debian package postfix)")
    service = example_service(
        postscreen=Postscreen(
            dnsbl=Dnsbl(sites=(DnsblSite("zen.spamhaus.org", 2, "127.0.[0..255].[2;4..11]"),)),
            allow_networks=("192.0.2.0/24", "2001:db8::/32"),
        )
    )
    (tmp_path / "main.cf").write_text(render_postfix_main_cf(service, MDA_FINGERPRINT))
    (tmp_path / "master.cf").write_text(render_postfix_master_cf(service))
    old = time.time() - 10
    for path in tmp_path.iterdir():
        os.utime(path, (old, old))
    run = subprocess.run(
        [postconf, "-c", str(tmp_path), "-n", "postscreen_dnsbl_sites", "postscreen_access_list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert "zen.spamhaus.org=127.0.[0..255].[2;4..11]*2" in run.stdout
    table = "cidr:{ {192.0.2.0/24 permit}, {2001:db8::/32 permit} }"
    for address, found in (("192.0.2.9", "permit"), ("2001:db8::5", "permit"), ("8.8.8.8", "")):
        postmap = shutil.which("postmap") or "/usr/sbin/postmap"
        query = subprocess.run(
            [postmap, "-c", str(tmp_path), "-q", address, table],
            capture_output=True,
            text=True,
            check=False,
        )
        assert query.stdout.strip() == found, (address, query.stderr)
