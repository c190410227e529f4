"""Where provider calls run: one tenant's hung provider delays no one else; slow publications
finish in the background; failures back off; a withdrawn MailDomain's records go, not others'."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from mailstack.api.assemble import MailService
from mailstack.api.errors import Problem
from mailstack.api.models import MailDomain
from mailstack.api.parse import parse_maildomain
from mailstack.controller import reasons
from mailstack.controller.dns_publisher import DnsPublisher
from mailstack.controller.dns_runner import DnsRunner, DnsTimings, provider_endpoint
from mailstack.controller.plan import DomainInputs, Rendered
from mailstack.dns.errors import ProviderTimeoutError
from mailstack.dns.ownership import marker_name
from mailstack.dns.plan import ZoneState
from mailstack.dns.providers.reach import Deadline
from mailstack.dns.reconcile import reconcile_dns
from mailstack.kubedoc import ObjectRef
from mailstack.material.dkim import DkimKey, generate_dkim_key
from tests.fakes.memory_dns import MemoryProvider


def hang(deadline: Deadline) -> str:
    """What a provider call against a blackhole does: wait until the deadline cuts it off."""
    while deadline.remaining() > 0:
        time.sleep(0.02)
    raise ProviderTimeoutError("blackhole:53 did not answer in time")


def test_a_hung_provider_delays_neither_other_tenants_nor_the_event_loop() -> None:
    runner = DnsRunner(DnsTimings(deadline=3.0, workers=4))

    async def scenario() -> tuple[float, float, str, str]:
        hung = asyncio.create_task(runner.run("blackhole:53", "tenant-a", hang))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        other = await runner.run("ns1.tenant-b.example:53", "tenant-b", lambda _: "published")
        other_took = time.monotonic() - started
        ticks = 0
        started = time.monotonic()
        while time.monotonic() - started < 0.3:  # the event loop keeps turning meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        with pytest.raises(ProviderTimeoutError) as caught:
            await hung
        return other_took, ticks, other, str(caught.value)

    other_took, ticks, other, hung_error = asyncio.run(scenario())
    assert other == "published"
    assert other_took < 1.5  # not the 3 s the hung one takes
    assert ticks > 10
    assert "blackhole:53" in hung_error
    runner.close()


def test_one_call_in_flight_per_namespace_and_host_until_its_thread_ends() -> None:
    # A thread that ignores the deadline (a call without one) still holds its host's slot:
    # the namespace's next publication to that host gives up at its own deadline instead of
    # piling up. Another namespace naming the same host has a slot of its own.
    runner = DnsRunner(DnsTimings(deadline=0.5, workers=4))
    release = threading.Event()
    running: list[str] = []

    def stuck(_: Deadline) -> str:
        running.append("stuck")
        release.wait(5)
        return "late"

    async def scenario() -> tuple[str, str]:
        first = asyncio.create_task(runner.run("blackhole:53", "tenant-a", stuck))
        await asyncio.sleep(0.1)
        with pytest.raises(ProviderTimeoutError) as caught:
            await runner.run("blackhole:53", "tenant-a", lambda _: running.append("second"))
        other = await runner.run("blackhole:53", "tenant-c", lambda _: "not shared")
        assert other == "not shared"
        with pytest.raises(ProviderTimeoutError):
            await first  # given up at its deadline (plus grace); the thread goes on
        release.set()
        await asyncio.sleep(0.1)
        after = await runner.run("blackhole:53", "tenant-c", lambda _: "free again")
        return str(caught.value), after

    refused, after = asyncio.run(scenario())
    assert "an earlier call" in refused and "blackhole:53" in refused
    assert running == ["stuck"]  # the second never started while the first thread hung
    assert after == "free again"
    runner.close()


# --- the publisher ----------------------------------------------------------------------------


def powerdns_at(api_url: str) -> MailDomain:
    spec = {
        "domain": "example.org",
        "dns": {"provider": {"powerdns": {"apiUrl": api_url, "apiKeySecretRef": {"name": "k"}}}},
    }
    doc = {"apiVersion": "mailstack.dev/v1alpha1", "kind": "MailDomain"}
    return parse_maildomain({**doc, "metadata": {"name": "d", "namespace": "t"}, "spec": spec})


def test_an_endpoint_is_keyed_by_scheme_host_and_port() -> None:
    # A blackhole on another port of a host is another endpoint than that host's PowerDNS.
    assert provider_endpoint(powerdns_at("http://127.0.0.1:8081")) == "http://127.0.0.1:8081"
    assert provider_endpoint(powerdns_at("http://127.0.0.1:9")) == "http://127.0.0.1:9"
    assert provider_endpoint(powerdns_at("https://pdns.example.net/")) == (
        "https://pdns.example.net:443"
    )
    assert provider_endpoint(powerdns_at("http://pdns.example.net")) == (
        "http://pdns.example.net:80"
    )
    assert provider_endpoint(domain("t", "d", "a")) == "ns1.example.net:53"


def domain(namespace: str, name: str, selector: str) -> MailDomain:
    return parse_maildomain(
        {
            "apiVersion": "mailstack.dev/v1alpha1",
            "kind": "MailDomain",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": {
                "domain": "example.org",
                "dkim": {"selector": selector},
                "dns": {
                    "addresses": {"ipv4": ["192.0.2.25"]},
                    "provider": {
                        "rfc2136": {
                            "server": "ns1.example.net",
                            "tsigKeyName": "k",
                            "tsigSecretRef": {"name": "tsig"},
                        }
                    },
                },
            },
        }
    )


class SlowProvider(MemoryProvider):
    def __init__(self, zone: str, delay: float = 0.0) -> None:
        super().__init__(zone)
        self.delay = delay
        self.failure: Exception | None = None
        self.reads = 0

    def read(self, names: Collection[str]) -> ZoneState:
        self.reads += 1
        time.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        return super().read(names)


@pytest.fixture(scope="module")
def dkim() -> DkimKey:
    return generate_dkim_key("a", "ed25519")


def ref(dom: MailDomain) -> ObjectRef:
    return ObjectRef(dom.namespace, dom.name, f"uid-{dom.name}")


def test_a_slow_publication_ends_in_the_background_and_wakes_its_maildomain(
    dkim: DkimKey,
) -> None:
    provider = SlowProvider("example.org", delay=1.5)
    timings = DnsTimings(inline_wait=0.1, backoff=0.3)
    publisher = DnsPublisher(timings, provider=provider)
    woken: list[tuple[str, str]] = []
    publisher.wake = lambda ns, name: woken.append((ns, name))
    published: list[tuple[str, str]] = []  # the metrics hook: each publication that ended
    publisher.published = lambda kind, outcome: published.append((kind, outcome))
    dom = domain("tenant-a", "example-org", "a")
    service = MailService(dom, ())

    async def scenario() -> list[Any]:
        seen: list[Any] = []
        started = time.monotonic()
        pending = await publisher.publish(ref(dom), service, dkim, {})
        seen.append((pending.condition.reason, time.monotonic() - started))
        await until(lambda: woken)
        seen.append(list(woken))
        done = await publisher.publish(ref(dom), service, dkim, {})
        seen.append((done.condition.reason, provider.reads))
        # A failure: reported, not tried again on every pass, tried again after the back-off.
        provider.delay = 0.0
        provider.failure = ProviderTimeoutError("ns1.example.net:53 did not answer in time")
        failed = await publisher.publish(ref(dom), service, dkim, {}, resync=True)
        again = await publisher.publish(ref(dom), service, dkim, {})
        seen.append((failed.condition.reason, again.condition.reason, provider.reads))
        woken.clear()
        started = time.monotonic()
        await until(lambda: woken)
        seen.append((list(woken), time.monotonic() - started >= 0.2))
        provider.failure = None
        retried = await publisher.publish(ref(dom), service, dkim, {})
        seen.append((retried.condition.reason, provider.reads))
        return seen

    seen = asyncio.run(scenario())
    assert seen[0][0] == "Pending" and seen[0][1] < 1.2  # the pass did not wait for it
    assert seen[1] == [("tenant-a", "example-org")]
    assert seen[2] == (reasons.PUBLISHED, 1)  # from memory: not published twice
    assert seen[3] == ("DNSProviderTimeout", "DNSProviderTimeout", 2)
    assert seen[4] == ([("tenant-a", "example-org")], True)  # woken when the back-off is over
    assert seen[5] == (reasons.PUBLISHED, 3)
    # Three publications ran (the answers from memory are none): each counted once.
    assert published == [
        ("rfc2136", reasons.PUBLISHED),
        ("rfc2136", "DNSProviderTimeout"),
        ("rfc2136", reasons.PUBLISHED),
    ]
    publisher.runner.close()


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def withdrawn(dom: MailDomain) -> Rendered:
    return Rendered(
        model=dom,
        domain_problems=[Problem(dom.ref, "spec.domain", "an older MailDomain serves it")],
        invalid_reason=reasons.DOMAIN_CONFLICT,
    )


def inputs(siblings: Sequence[MailDomain], status: Any = None) -> DomainInputs:
    """A withdrawn MailDomain's inputs; ``status``: its last status."""
    docs = [{"metadata": {"namespace": d.namespace, "name": d.name}} for d in siblings]
    return DomainInputs({"status": status}, docs, [], {}, datetime.now(UTC))


def test_a_withdrawn_maildomain_removes_its_records_and_only_its_own(dkim: DkimKey) -> None:
    provider = SlowProvider("example.org")
    loser = domain("tenant-b", "example-org", "b")
    winner = domain("tenant-a", "example-org", "a")
    reconcile_dns(MailService(loser, ()), generate_dkim_key("b", "ed25519"), {}, provider=provider)
    blocked = reconcile_dns(MailService(winner, ()), dkim, {}, provider=provider)
    states = {(s.name, s.type): s.state for s in blocked}
    assert states[("example.org", "MX")] == "Conflict"
    assert states[("a._domainkey.example.org", "TXT")] == "Published"  # a name of its own

    publisher = DnsPublisher(DnsTimings(inline_wait=5), provider=provider)
    woken: list[tuple[str, str]] = []
    publisher.wake = lambda ns, name: woken.append((ns, name))
    published = {"dns": {"published": True}}  # its last status: it published

    async def withdraw() -> None:
        await publisher.withdraw(ref(loser), withdrawn(loser), inputs([loser, winner], published))
        await until(lambda: ("tenant-b", "example-org") in woken)  # in the background

    asyncio.run(withdraw())

    held = provider.rrsets
    assert ("b._domainkey.example.org", "TXT") not in held
    assert ("example.org", "MX") not in held
    assert ("a._domainkey.example.org", "TXT") in held  # the winner's record stays
    claims = " ".join(v for r in held.values() if r.name.startswith("_mailstack") for v in r.values)
    assert "tenant-b/" not in claims and "owner=tenant-a/example-org" in claims
    assert marker_name("a._domainkey.example.org") in {r.name for r in held.values()}
    assert woken == [("tenant-a", "example-org"), ("tenant-b", "example-org")]
    assert not publisher.holds_records(ref(loser), published)  # its next status says so

    # Done once: the next pass of the withdrawn MailDomain asks the provider nothing.
    reads = provider.reads
    asyncio.run(publisher.withdraw(ref(loser), withdrawn(loser), inputs([loser, winner])))
    assert provider.reads == reads

    published = reconcile_dns(MailService(winner, ()), dkim, {}, provider=provider)
    assert {s.state for s in published} == {"Published"}
    publisher.runner.close()


def test_a_fault_of_ours_is_reported_and_backs_off_like_a_provider_failure(dkim: DkimKey) -> None:
    provider = SlowProvider("example.org")
    provider.failure = ValueError("a bug")
    publisher = DnsPublisher(DnsTimings(backoff=60), provider=provider)
    dom = domain("tenant-a", "example-org", "a")

    async def scenario() -> tuple[Any, Any]:
        first = await publisher.publish(ref(dom), MailService(dom, ()), dkim, {})
        second = await publisher.publish(ref(dom), MailService(dom, ()), dkim, {})
        return first, second

    first, second = asyncio.run(scenario())
    assert (first.condition.status, first.condition.reason) == ("False", "DNSError")
    assert "internal error: a bug" in first.condition.message
    assert second == first and provider.reads == 1  # not again before the back-off is over
    publisher.runner.close()


def test_a_withdrawal_never_holds_the_pass_and_one_that_never_published_contacts_nobody() -> None:
    provider = SlowProvider("example.org", delay=1.0)
    publisher = DnsPublisher(DnsTimings(inline_wait=5), provider=provider)
    dom = domain("hostile", "x", "a")
    # Refused before it ever served: no marker, no status.dns (the upgrade rule's status).
    for status in (None, {"conditions": []}, {"dns": {"records": [], "published": False}}):
        assert not publisher.holds_records(ref(dom), status)
        asyncio.run(publisher.withdraw(ref(dom), withdrawn(dom), inputs([], status)))
    assert provider.reads == 0

    # A status from before the marker that has status.dns, or the marker: it may hold records.
    assert publisher.holds_records(ref(dom), {"dns": {"records": []}})

    async def scenario() -> float:
        started = time.monotonic()
        await publisher.withdraw(ref(dom), withdrawn(dom), inputs([], {"dns": {"records": []}}))
        took = time.monotonic() - started
        await until(lambda: provider.reads == 1)
        return took

    assert asyncio.run(scenario()) < 0.5  # the removal (1 s) went on in the background
    publisher.runner.close()
