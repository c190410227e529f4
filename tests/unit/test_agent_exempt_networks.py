"""Exempt networks in the auth policy service: addresses of ``exemptNetworks`` keep their
per-login budgets but not the address's budget across logins (an office NAT: a colleague's
guesses on other logins do not refuse a user's first login), read from the rendered file."""

from __future__ import annotations

import json
import os
from collections.abc import Container
from pathlib import Path

from mailstack.agent.auth_policy import GuessLimits, answer
from mailstack.agent.exempt_networks import (
    ExemptNetworks,
    address_in,
    parse_network,
    read_exempt_networks,
)
from mailstack.api.models import ClientLimits, Limits
from mailstack.render.dovecot import render_dovecot_config
from tests.support import example_service
from tests.unit.test_agent_auth_policy import Clock, limits


def request(remote: str, login: str, pwhash: str, **more: object) -> bytes:
    return json.dumps({"remote": remote, "login": login, "pwhash": pwhash, **more}).encode()


def attempt(
    policy: GuessLimits, exempt: Container[str], remote: str, login: str, pwhash: str
) -> bool:
    """One wrong login as Dovecot runs it, through the HTTP answers."""
    allowed = answer(policy, "/?command=allow", request(remote, login, pwhash), exempt)
    report = request(remote, login, pwhash, success=False, policy_reject=allowed["status"] != 0)
    answer(policy, "/?command=report", report, exempt)
    return allowed["status"] == 0


def test_networks_match_by_prefix_in_both_families() -> None:
    networks = [n for n in map(parse_network, ["198.51.100.0/24", "2001:db8:40::/45"]) if n]
    assert address_in("198.51.100.77", networks)
    assert address_in("::ffff:198.51.100.77", networks)  # an IPv4 client on a v6 socket
    assert not address_in("198.51.101.1", networks)
    assert address_in("2001:db8:47:ffff::1", networks)
    assert not address_in("2001:db8:48::1", networks)
    assert not address_in("not an address", networks)
    assert parse_network("192.0.2.9") == parse_network("192.0.2.9/32")
    assert parse_network("192.0.2.0/33") is None and parse_network("banana/8") is None


def test_an_exempt_address_keeps_per_login_budgets_only() -> None:
    clock = Clock()
    exempt = ExemptNetworks(None)
    exempt.networks = [n for n in [parse_network("198.51.100.0/24")] if n]
    office, elsewhere = limits(clock), limits(clock)
    # 40 wrong guesses over 40 made-up logins from the office address: all checked (the address
    # budget of 30 is not theirs), then grace's first login is checked too.
    sprayed = [attempt(office, exempt, "198.51.100.7", f"user{i}", "abcdef") for i in range(40)]
    assert sprayed == [True] * 40
    assert attempt(office, exempt, "198.51.100.7", "grace", "600d00")
    # The same from an address that is not exempt: 30, then grace is refused unchecked.
    sprayed = [attempt(elsewhere, exempt, "192.0.2.7", f"user{i}", "abcdef") for i in range(40)]
    assert sprayed.count(True) == 30
    assert not attempt(elsewhere, exempt, "192.0.2.7", "grace", "600d00")
    # One login guessed from the office still gets 10, then 1 a minute.
    guessed = [attempt(office, exempt, "198.51.100.7", "henry", f"{i:06x}") for i in range(12)]
    assert guessed == [True] * 10 + [False] * 2


def test_the_rendered_file_is_what_the_agent_reads(tmp_path: Path) -> None:
    listed = ["198.51.100.0/24", "2001:db8:40::/48"]
    limits = ClientLimits(exempt_networks=tuple(listed))
    files = render_dovecot_config(example_service(limits=Limits(per_client=limits)))
    path = tmp_path / "auth-policy.json"
    path.write_text(files["auth-policy.json"])
    assert json.loads(files["auth-policy.json"]) == {"exemptNetworks": listed}
    networks = read_exempt_networks(str(path))
    assert networks == [parse_network(n) for n in listed] and len(networks) == 2
    assert address_in("198.51.100.7", networks) and not address_in("192.0.2.7", networks)


def test_the_file_is_re_read_when_it_changes(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "auth-policy.json"
    exempt = ExemptNetworks(str(path), clock=clock)  # missing: nothing exempt
    assert "198.51.100.7" not in exempt
    path.write_text(json.dumps({"exemptNetworks": ["198.51.100.0/24"]}))
    clock.now += 11
    assert "198.51.100.7" in exempt
    path.write_text("{not json")
    os.utime(path, (1, 1))  # a new modification time, as a ConfigMap update gives
    assert "198.51.100.7" in exempt  # not re-checked within RECHECK_SECONDS
    clock.now += 11
    assert "198.51.100.7" not in exempt  # malformed: nothing exempt
