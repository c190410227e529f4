"""OutboundIdentityVerified against a real BIND: the records we publish (``render_zone`` of the
desired set, SPF with the outbound addresses) in a forward zone, PTR records in a reverse zone,
and the operator's lookup (``controller.outbound_lookup``) at that server as its resolver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mailstack.api.models import MailDomain
from mailstack.controller import reasons
from mailstack.controller.conditions import Condition, outbound_condition
from mailstack.controller.outbound_lookup import OutboundLookup
from mailstack.dns.outbound import AddressCheck
from mailstack.dns.records import desired_records, render_zone
from mailstack.material.dkim import generate_dkim_key
from tests.dns_inputs import maildomain
from tests.e2e.dnsservers import Bind, bind_server

GOOD, ELSEWHERE, UNNAMED = "81.2.69.142", "81.2.69.143", "81.2.69.144"
REVERSE = "69.2.81.in-addr.arpa"
PTRS = """
142 IN PTR out.example.com.
143 IN PTR host.other.example.
"""


def published(*addresses: str) -> MailDomain:
    return maildomain(outbound={"addresses": list(addresses), "heloName": "out.example.com"})


@contextmanager
def serving(root: Path, publisher: MailDomain) -> Iterator[Bind]:
    """example.com with the records ``publisher`` publishes, out.example.com at GOOD and
    ELSEWHERE; PTRs: GOOD → out.example.com, ELSEWHERE → another host, UNNAMED none."""
    records = render_zone(desired_records(publisher, generate_dkim_key("s", "ed25519")))
    records += f"out.example.com. IN A {GOOD}\nout.example.com. IN A {ELSEWHERE}\n"
    with bind_server(root, "example.com", records, other_zones={REVERSE: PTRS}) as server:
        yield server


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    """The records of a MailDomain whose outbound address is GOOD."""
    with serving(tmp_path / "named", published(GOOD)) as server:
        yield server


def verdict(bind: Bind, model: MailDomain) -> tuple[Condition, tuple[AddressCheck, ...]]:
    """What a pass writes once the background lookup answered (the first pass starts it)."""
    body: dict[str, Any] = {"metadata": {"namespace": "mail", "name": "example-com", "uid": "u1"}}
    woken: list[tuple[str, str]] = []

    async def run() -> tuple[AddressCheck, ...] | None:
        lookup = OutboundLookup(
            "127.0.0.1", bind.port, timeout=2.0, wake=lambda *a: woken.append(a)
        )
        assert lookup.look(body, model) is None  # never waits: the pass goes on
        await lookup.settled()
        return lookup.look(body, model)

    checks = asyncio.run(run())
    assert checks is not None and woken == [("mail", "example-com")]
    return outbound_condition(model, checks), checks


def test_matching_ptr_forward_and_spf_verify(bind: Bind) -> None:
    condition, checks = verdict(bind, published(GOOD))
    assert (condition.status, condition.reason) == ("True", reasons.OUTBOUND_VERIFIED)
    assert [c.as_status() for c in checks] == [
        {"address": GOOD, "ptr": ["out.example.com"], "fcrdns": True, "spf": "pass"}
    ]


def test_a_ptr_mismatch_is_false_naming_the_address(bind: Bind) -> None:
    condition, _ = verdict(bind, published(GOOD, ELSEWHERE))
    assert (condition.status, condition.reason) == ("False", reasons.PTR_MISMATCH)
    assert condition.message == (
        f"{ELSEWHERE}: its PTR record names host.other.example, not the HELO name out.example.com"
    )


def test_an_address_without_ptr_is_a_ptr_mismatch(bind: Bind) -> None:
    condition, _ = verdict(bind, published(UNNAMED))
    assert (condition.status, condition.reason) == ("False", reasons.PTR_MISMATCH)
    assert condition.message.startswith(f"{UNNAMED}: its PTR record names no name")


def test_an_spf_mismatch_is_false_naming_the_result(tmp_path: Path) -> None:
    """The PTR and the HELO name match, but the SPF published is today's ``mx -all`` (a
    MailDomain without spec.outbound): the address fails SPF."""
    today = maildomain(outbound={"heloName": "out.example.com"})
    with serving(tmp_path / "named", today) as server:
        condition, checks = verdict(server, published(GOOD))
    assert (condition.status, condition.reason) == ("False", reasons.SPF_NOT_PASSING)
    assert condition.message == (
        f"{GOOD}: the SPF of example.com gives fail for it (-all in the SPF of example.com)"
    )
    assert [(c.fcrdns, c.spf) for c in checks] == [(True, "fail")]
