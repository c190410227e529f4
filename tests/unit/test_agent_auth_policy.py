"""The agent's auth policy service for Dovecot: guesses per (address, login) and per address,
a known right password let through whatever the buckets hold, and Dovecot's HTTP requests."""

from __future__ import annotations

import http.client
import json
import socket

from mailstack.agent.auth_policy import GuessLimits, answer, open_auth_policy
from mailstack.render.dovecot import render_dovecot_conf
from tests.support import example_service


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(clock: Clock) -> GuessLimits:
    return GuessLimits(
        login_burst=10, login_per_minute=1, address_burst=30, address_per_minute=6, clock=clock
    )


def guess(policy: GuessLimits, address: str, login: str, pwhash: str, right: bool) -> bool:
    """One login as Dovecot runs it: asked, then (unless refused) reported."""
    allowed = policy.allow(address, login, pwhash)
    policy.report(address, login, pwhash, success=allowed and right, refused=not allowed)
    return allowed


def test_one_login_gets_its_burst_then_one_guess_a_minute() -> None:
    clock = Clock()
    policy = limits(clock)
    checked = [guess(policy, "192.0.2.1", "grace", f"{i:06x}", False) for i in range(25)]
    assert checked == [True] * 10 + [False] * 15
    clock.now += 60
    assert guess(policy, "192.0.2.1", "grace", "aaaaaa", False)
    assert not guess(policy, "192.0.2.1", "grace", "bbbbbb", False)
    # Another address is not held to this one's guesses.
    assert guess(policy, "198.51.100.7", "grace", "cccccc", False)


def test_across_logins_an_address_gets_its_own_burst() -> None:
    clock = Clock()
    policy = limits(clock)
    checked = [guess(policy, "192.0.2.1", f"user{i}", "abcdef", False) for i in range(40)]
    assert checked.count(True) == 30 and checked[30:] == [False] * 10
    clock.now += 10
    assert guess(policy, "192.0.2.1", "user99", "abcdef", False)


def test_a_known_right_password_logs_in_whatever_the_buckets_hold() -> None:
    clock = Clock()
    policy = limits(clock)
    assert guess(policy, "192.0.2.1", "grace", "600d00", True)  # her device
    for i in range(40):
        guess(policy, "192.0.2.1", "grace", f"{i:06x}", False)
    assert not policy.allow("192.0.2.1", "grace", "123456")
    assert policy.allow("192.0.2.1", "grace", "600d00")
    # A guess that shares the known hash by chance is checked, and charged when it fails.
    policy.report("192.0.2.1", "grace", "600d00", success=False, refused=False)


def test_a_success_gives_its_guess_back() -> None:
    clock = Clock()
    policy = limits(clock)
    for _ in range(30):  # a user typing her new password right, many times
        assert guess(policy, "192.0.2.1", "henry", "", True)


def test_dovecot_requests_over_http() -> None:
    policy = GuessLimits(login_burst=1, login_per_minute=1, clock=Clock())
    server = open_auth_policy(policy, port=0, state_path=None)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        request = {"login": "Grace", "pwhash": "a1b2c3", "remote": "192.0.2.1", "protocol": "imap"}
        statuses = []
        for command in ("allow", "report", "allow"):
            body = {**request, "success": False, "policy_reject": False}
            connection.request("POST", f"/?command={command}", json.dumps(body))
            statuses.append(json.loads(connection.getresponse().read())["status"])
        assert statuses == [0, 0, -1]  # one connection, kept alive
    finally:
        server.shutdown()


def test_a_chunked_request_and_a_broken_one() -> None:
    server = open_auth_policy(GuessLimits(), port=0, state_path=None)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            body = json.dumps({"login": "grace", "remote": "192.0.2.1"}).encode()
            conn.sendall(
                b"POST /?command=allow HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            )
            reply = conn.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b'{"status": 0, "msg": ""}')
            conn.sendall(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
            assert conn.recv(4096) == b""  # not HTTP: the connection is closed
    finally:
        server.shutdown()


def test_memory_is_bounded_however_many_addresses_guess() -> None:
    policy = GuessLimits(max_buckets=10, clock=Clock())
    for i in range(100):
        policy.allow(f"192.0.2.{i}", f"user{i}", "abcdef")
    assert len(policy.addresses) <= 10 and len(policy.logins) <= 10


def test_an_ipv6_host_is_its_64() -> None:
    policy = GuessLimits(login_burst=1, login_per_minute=1, clock=Clock())
    first = {"login": "grace", "pwhash": "a1", "remote": "2001:db8:1:2::1"}
    assert answer(policy, "/?command=allow", json.dumps(first).encode())["status"] == 0
    again = {**first, "remote": "2001:db8:1:2:ffff::7"}
    assert answer(policy, "/?command=allow", json.dumps(again).encode())["status"] == -1
    other = {**first, "remote": "2001:db8:1:3::1"}
    assert answer(policy, "/?command=allow", json.dumps(other).encode())["status"] == 0


def test_bad_requests_are_allowed_not_crashed() -> None:
    policy = GuessLimits()
    assert answer(policy, "/?command=allow", b"not json")["status"] == 0
    assert answer(policy, "/?command=allow", b"[1]")["status"] == 0


def test_dovecot_asks_the_agent_before_each_login_and_has_no_penalty() -> None:
    conf = render_dovecot_conf(example_service())
    assert "auth_policy_server_url = http://127.0.0.1:10071/" in conf
    assert "auth_policy_report_after_auth = yes" in conf
    start = "executable = /usr/bin/env --chdir=/run/dovecot/auth-without-penalty "
    # One auth process, for every protocol (Postfix no longer asks Dovecot: no auth-smtp).
    assert conf.count(start + "/usr/lib/dovecot/auth") == 1
    assert "auth-smtp" not in conf
