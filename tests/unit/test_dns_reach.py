"""Reaching a provider's host: absolute names, addresses checked at connect time, deadlines.

Loopback servers only: a name is mapped to an address by a fake resolver, the way a tenant's
DNS could map a public-looking name to an internal address.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from mailstack.dns.errors import HostRefusedError, ProviderError, ProviderTimeoutError
from mailstack.dns.providers.http import JsonApi
from mailstack.dns.providers.reach import Deadline, HostGuard, Reach
from mailstack.dns.providers.rfc2136 import Rfc2136Provider
from tests.fakes.blackhole import blackhole as blackhole_port
from tests.fakes.recording_http import Seen, recording


class FakeResolver:
    """Answers from a table; records every name asked."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, name: str, port: int) -> Sequence[str]:
        self.asked.append(name)
        if name not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[name]


@pytest.mark.parametrize(
    ("answers", "refused"),
    [
        (["10.96.0.1"], "a private address"),  # kubernetes.default.svc's ClusterIP
        (["169.254.169.254"], "link-local"),
        (["127.0.0.1"], "loopback"),
        (["8.8.8.8", "10.0.0.5"], "a private address"),  # one bad address is enough
        (["::ffff:10.0.0.5"], "a private address"),
    ],
)
def test_a_name_resolving_to_an_internal_address_is_refused(
    answers: list[str], refused: str
) -> None:
    resolver = FakeResolver({"kubernetes.default.": answers})
    guard = HostGuard(resolver=resolver)
    with pytest.raises(HostRefusedError, match=refused) as caught:
        guard.addresses("kubernetes.default", 8081)
    assert "kubernetes.default (it resolves to" in str(caught.value)
    # Asked as an absolute name: no search domain of the pod's resolv.conf is tried.
    assert resolver.asked == ["kubernetes.default."]


def test_public_addresses_pass_and_are_what_is_connected_to() -> None:
    resolver = FakeResolver({"pdns.example.net.": ["8.8.8.8", "2606:4700::1111"]})
    guard = HostGuard(resolver=resolver)
    assert guard.addresses("pdns.example.net", 443) == ["8.8.8.8", "2606:4700::1111"]
    assert guard.addresses("pdns.example.net.", 443) == ["8.8.8.8", "2606:4700::1111"]
    assert resolver.asked == ["pdns.example.net.", "pdns.example.net."]


def test_allowed_hosts_let_a_name_or_a_range_through() -> None:
    resolver = FakeResolver({"pdns.dns.svc.cluster.local.": ["10.96.3.4"]})
    by_name = HostGuard(allowed=("pdns.dns.svc.cluster.local",), resolver=resolver)
    assert by_name.addresses("pdns.dns.svc.cluster.local", 8081) == ["10.96.3.4"]
    by_range = HostGuard(allowed=("10.96.0.0/12",), resolver=resolver)
    assert by_range.addresses("pdns.dns.svc.cluster.local", 8081) == ["10.96.3.4"]
    elsewhere = HostGuard(allowed=("10.20.0.0/16",), resolver=resolver)
    with pytest.raises(HostRefusedError):
        elsewhere.addresses("pdns.dns.svc.cluster.local", 8081)


def test_literals_are_checked_and_unchecked_guards_still_resolve_absolute() -> None:
    resolver = FakeResolver({"bind.dns.": ["10.1.2.3"]})
    with pytest.raises(HostRefusedError, match="loopback"):
        HostGuard(resolver=resolver).addresses("127.0.0.1", 53)
    with pytest.raises(HostRefusedError, match="private"):
        HostGuard(resolver=resolver).addresses("[fd00::1]", 53)
    unchecked = HostGuard(check=False, resolver=resolver)
    assert unchecked.addresses("bind.dns", 53) == ["10.1.2.3"]
    with pytest.raises(ProviderError, match="cannot resolve bind"):
        unchecked.addresses("bind", 53)  # "bind." is not "bind.<namespace>.svc.cluster.local"
    assert resolver.asked == ["bind.dns.", "bind."]


# --- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def recorder() -> Iterator[tuple[int, list[Seen]]]:
    with recording() as (url, seen):
        yield int(url.rsplit(":", 1)[1]), seen


def test_the_api_key_never_reaches_a_refused_address(
    recorder: tuple[int, list[Seen]],
) -> None:
    port, seen = recorder
    resolver = FakeResolver({"pdns.tenant.example.": ["127.0.0.1"]})
    api = JsonApi(
        f"http://pdns.tenant.example:{port}",
        {"X-API-Key": "secret"},
        "PowerDNS",
        lambda _: "",
        attempts=3,
        reach=Reach(HostGuard(resolver=resolver)),
    )
    with pytest.raises(HostRefusedError, match=r"resolves to 127\.0\.0\.1"):
        api.call("GET", "/api/v1/servers")
    assert seen == []
    assert api.requests == 1  # a refusal is not tried again


def test_the_checked_address_is_connected_to_and_the_name_kept(
    recorder: tuple[int, list[Seen]],
) -> None:
    port, seen = recorder
    resolver = FakeResolver({"pdns.tenant.example.": ["127.0.0.1"]})
    guard = HostGuard(allowed=("127.0.0.1/32",), resolver=resolver)
    api = JsonApi(
        f"http://pdns.tenant.example:{port}",
        {},
        "PowerDNS",
        lambda _: "",
        reach=Reach(guard),
    )
    assert api.call("GET", "/api/v1/servers").status == 200
    assert [s.headers["host"] for s in seen] == [f"pdns.tenant.example:{port}"]  # the name
    assert resolver.asked == ["pdns.tenant.example."]  # resolved once: checked = connected


# --- deadlines --------------------------------------------------------------------------------


@pytest.fixture
def blackhole() -> Iterator[int]:
    with blackhole_port() as port:
        yield port


@pytest.fixture
def dripping() -> Iterator[int]:
    """A TCP server that answers one byte of HTTP every 0.2 s, forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                    if stop.wait(0.2):
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_a_server_that_never_answers_costs_one_timeout(blackhole: int) -> None:
    api = JsonApi(f"http://127.0.0.1:{blackhole}", {}, "PowerDNS", lambda _: "", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match=r"did not answer within 0\.5 s"):
        api.call("GET", "/api/v1/servers")
    assert time.monotonic() - started < 2.0
    assert api.requests == 1  # not five attempts with back-off in between


def test_a_dripping_answer_is_cut_at_the_total_timeout(dripping: int) -> None:
    # Each byte comes well within the socket timeout: only a total deadline ends the request.
    api = JsonApi(f"http://127.0.0.1:{dripping}", {}, "PowerDNS", lambda _: "", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        api.call("GET", "/api/v1/servers")
    assert time.monotonic() - started < 3.0


def test_the_publication_deadline_caps_every_call(blackhole: int) -> None:
    deadline = Deadline.after(0.6)
    api = JsonApi(
        f"http://127.0.0.1:{blackhole}",
        {},
        "PowerDNS",
        lambda _: "",
        timeout=30.0,
        reach=Reach(deadline=deadline),
    )
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        api.call("GET", "/api/v1/servers")
    assert time.monotonic() - started < 2.0
    with pytest.raises(ProviderTimeoutError, match=r"deadline \(0\.6 s\) has passed"):
        api.call("GET", "/api/v1/servers")


def test_an_rfc2136_server_that_never_answers_is_a_timeout_naming_it(blackhole: int) -> None:
    provider = Rfc2136Provider("example.org", "127.0.0.1", blackhole, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match=f"127.0.0.1:{blackhole}"):
        provider.read(["example.org"])
    assert time.monotonic() - started < 2.0


def test_an_rfc2136_server_name_goes_through_the_guard() -> None:
    resolver = FakeResolver({"ns1.tenant.example.": ["10.0.0.53"]})
    provider = Rfc2136Provider(
        "example.org", "ns1.tenant.example", 53, reach=Reach(HostGuard(resolver=resolver))
    )
    with pytest.raises(HostRefusedError, match=r"resolves to 10\.0\.0\.53"):
        provider.read(["example.org"])
