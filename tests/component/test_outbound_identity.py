"""OutboundIdentityVerified through the operator: a MailDomain with ``spec.outbound`` against
the API server emulator, the operator's resolver a real BIND holding the domain's SPF, the HELO
name's address and (in a reverse zone) the PTR records. The condition turns True once the
background lookups answer, and False naming the address when the spec adds one whose PTR names
another host; neither holds back Ready."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.component.conftest import NS, conditions, maildomain, wait_ready
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread
from tests.e2e.dnsservers import Bind, bind_server

GOOD, ELSEWHERE = "81.2.69.142", "81.2.69.143"
ZONE = "outbound.example"
RECORDS = f"""
@   IN TXT "v=spf1 ip4:{GOOD} ip4:{ELSEWHERE} -all"
out IN A {GOOD}
"""
PTRS = """
142 IN PTR out.outbound.example.
143 IN PTR host.other.example.
"""


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    zones = {"69.2.81.in-addr.arpa": PTRS}
    with bind_server(tmp_path / "named", ZONE, RECORDS, other_zones=zones) as server:
        yield server


@pytest.fixture
def resolving_operator(api: ApiServer, bind: Bind) -> Iterator[OperatorThread]:
    config = {"proof_resolver": "127.0.0.1", "proof_resolver_port": bind.port}
    with OperatorThread(api, **config) as running:
        yield running


def identity(api: ApiServer, status: str) -> dict[str, Any]:
    """The MailDomain once OutboundIdentityVerified has ``status``."""
    return wait_for(
        lambda: (
            (o := api.get("maildomains", "outbound", NS)) is not None
            and conditions(o).get("OutboundIdentityVerified", {}).get("status") == status
            and o
        ),
        timeout=30,
    )


def test_the_condition_follows_the_lookups(
    api: ApiServer, resolving_operator: OperatorThread
) -> None:
    outbound = {"addresses": [GOOD], "heloName": f"out.{ZONE}"}
    api.create(maildomain("outbound", ZONE, outbound=outbound))
    verified = identity(api, "True")
    assert conditions(verified)["OutboundIdentityVerified"]["reason"] == "Verified"
    assert verified["status"]["outbound"] == [
        {"address": GOOD, "ptr": [f"out.{ZONE}"], "fcrdns": True, "spf": "pass"}
    ]
    wait_ready(api, "outbound")

    patch = {"spec": {"outbound": {"addresses": [GOOD, ELSEWHERE]}}}
    api.patch("maildomains", "outbound", patch, NS)
    mismatch = conditions(identity(api, "False"))["OutboundIdentityVerified"]
    assert mismatch["reason"] == "PTRMismatch"
    assert mismatch["message"] == (
        f"{ELSEWHERE}: its PTR record names host.other.example, not the HELO name out.{ZONE}"
    )
    ready = conditions(api.get("maildomains", "outbound", NS))["Ready"]
    assert ready["status"] == "True"  # informative: not part of Ready
