"""Outbound identity (``spec.outbound``): the spec's rules, the grant, what Postfix is given, the
SPF record we publish with the addresses, and its plan against a zone (golden)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mailstack.api.errors import ValidationError
from mailstack.api.models import Outbound, Relay
from mailstack.api.policy import Grants, MailDomainPolicy, parse_policy
from mailstack.controller import plan, reasons
from mailstack.controller.conditions import outbound_condition
from mailstack.controller.status import domain_status
from mailstack.dns.lint import spf_lookups, spf_problems
from mailstack.dns.outbound import AddressCheck
from mailstack.dns.plan import plan_zone
from mailstack.dns.plan_text import format_plan
from mailstack.dns.records import desired_records, render_zone
from mailstack.material.dkim import DkimKey, generate_dkim_key
from mailstack.render.postfix import render_postfix_config
from tests.dns_inputs import maildomain
from tests.fakes.memory_dns import MemoryProvider
from tests.parsers import parse_main_cf
from tests.support import ROOT, UPDATE_GOLDEN, example_service

V4, V6 = "81.2.69.142", "2a02:898:0:20::142"
GOLDEN_ZONE = ROOT / "tests" / "fixtures" / "outbound" / "records.zone"
GOLDEN_PLAN = ROOT / "tests" / "fixtures" / "outbound" / "plan.txt"
OWNER = "mail/example-com"
NOW = datetime(2026, 12, 7, tzinfo=UTC)


@pytest.fixture(scope="module")
def dkim() -> DkimKey:
    return generate_dkim_key("mailstack", "ed25519")


def fixed_dkim() -> DkimKey:
    """An Ed25519 key from a fixed seed: the golden files do not change with a new key."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return DkimKey("mailstack", "ed25519", pem.decode())


def problems(**spec: Any) -> list[str]:
    with pytest.raises(ValidationError) as err:
        maildomain(**spec)
    return [f"{p.path}: {p.message}" for p in err.value.problems]


def test_defaults_keep_todays_identity() -> None:
    dom = maildomain()
    assert dom.outbound == Outbound(helo_name="mail.example.com")
    assert dom.helo_name == "mail.example.com"
    assert maildomain(hostname="mx.example.com").helo_name == "mx.example.com"


def test_addresses_are_canonical_ipv4_first() -> None:
    dom = maildomain(
        outbound={"addresses": ["2A02:898:0:20:0:0:0:142", V4], "heloName": "o.example.net"}
    )
    assert dom.outbound.ipv4 == (V4,) and dom.outbound.ipv6 == (V6,)
    assert dom.helo_name == "o.example.net"


@pytest.mark.parametrize(
    ("outbound", "relay", "wanted"),
    [
        ({"addresses": ["10.0.0.7"]}, None, "spec.outbound.addresses[0]: 10.0.0.7 is a private"),
        ({"addresses": ["192.0.2.7"]}, None, "spec.outbound.addresses[0]: 192.0.2.7 is a special"),
        ({"addresses": ["fd00:ec2::254"]}, None, "spec.outbound.addresses[0]: fd00:ec2::254 is a"),
        ({"addresses": ["mail.example.com"]}, None, "spec.outbound.addresses[0]: 'mail.example"),
        (
            {"addresses": [V4, V4]},
            None,
            "spec.outbound.addresses[1]: '81.2.69.142' is listed twice",
        ),
        ({"heloName": "localhost"}, None, "spec.outbound.heloName: 'localhost' is not fully"),
        ({"heloName": "Mail.example.com"}, None, "spec.outbound.heloName: 'Mail.example.com' must"),
        ({"bindAddress": True}, None, "spec.outbound.bindAddress: needs the address to bind to"),
        (
            {"addresses": [V4, "81.2.69.143"], "bindAddress": True},
            None,
            "spec.outbound.bindAddress: Postfix binds one IPv4 address",
        ),
        ({"addresses": [V4]}, {"host": "smtp.relay.example.net"}, "spec.outbound.addresses: with"),
        (
            {"bindAddress": True},
            {"host": "smtp.relay.example.net"},
            "spec.outbound.bindAddress: wi",
        ),
        ({"unknown": 1}, None, "spec.outbound.unknown"),
    ],
)
def test_spec_rules(outbound: dict[str, Any], relay: dict[str, Any] | None, wanted: str) -> None:
    spec: dict[str, Any] = {"outbound": outbound}
    if relay is not None:
        spec["relay"] = relay
    found = problems(**spec)
    assert any(p.startswith(wanted) for p in found), found


def test_a_helo_name_with_a_relay_is_fine() -> None:
    dom = maildomain(
        relay={"host": "smtp.relay.example.net"}, outbound={"heloName": "o.example.com"}
    )
    assert dom.helo_name == "o.example.com" and not dom.outbound.ipv4


# --- the grant --------------------------------------------------------------------------------


def policy(**spec: Any) -> MailDomainPolicy:
    doc = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomainPolicy",
        "metadata": {"name": "tenant"},
        "spec": {"namespaces": ["mail"], "domains": ["example.com"], **spec},
    }
    return parse_policy(doc)


def test_binding_needs_a_grant_of_the_address_publishing_does_not() -> None:
    bound = maildomain(outbound={"addresses": [V4, V6], "bindAddress": True})
    published = maildomain(outbound={"addresses": [V4, V6]})
    none = Grants((policy(),))
    assert none.outbound_refusals(published) == []
    assert [path for path, _ in none.outbound_refusals(bound)] == [
        "spec.outbound.addresses[0]",
        "spec.outbound.addresses[1]",
    ]
    assert "outbound.bindAddresses" in none.outbound_refusals(bound)[0][1]
    some = Grants((policy(outbound={"bindAddresses": ["81.2.69.128/25"]}),))
    assert [path for path, _ in some.outbound_refusals(bound)] == ["spec.outbound.addresses[1]"]
    both = Grants((some.policies[0], policy(outbound={"bindAddresses": ["2a02:898::/32"]})))
    assert both.outbound_refusals(bound) == []
    assert Grants().outbound_refusals(bound) == []  # no policies: a single team


def test_policy_bind_addresses_are_networks() -> None:
    assert policy(outbound={"bindAddresses": ["81.2.69.142", "2a02:898::1/32"]}).bind_addresses == (
        "2a02:898::/32",
        "81.2.69.142/32",
    )
    with pytest.raises(ValidationError, match="not an IP address or CIDR range"):
        policy(outbound={"bindAddresses": ["out.example.com"]})


# --- Postfix ----------------------------------------------------------------------------------


def main_cf(outbound: Outbound, relay: Relay | None = None) -> dict[str, str]:
    files = render_postfix_config(example_service(outbound=outbound, relay=relay), None, "ab" * 32)
    return parse_main_cf(files["main.cf"])


def test_postfix_helo_name_and_bind_addresses() -> None:
    default = main_cf(Outbound())
    assert "smtp_helo_name" not in default and "smtp_bind_address" not in default
    assert default["myhostname"] == "mail.example.com"  # Postfix's default HELO name
    published = main_cf(Outbound(ipv4=(V4,), ipv6=(V6,), helo_name="out.example.com"))
    assert published["smtp_helo_name"] == "out.example.com"
    assert "smtp_bind_address" not in published and "smtp_bind_address6" not in published
    bound = main_cf(
        Outbound(ipv4=(V4,), ipv6=(V6,), helo_name="mail.example.com", bind_address=True)
    )
    assert "smtp_helo_name" not in bound
    assert bound["smtp_bind_address"] == V4 and bound["smtp_bind_address6"] == V6
    only6 = main_cf(Outbound(ipv6=(V6,), bind_address=True))
    assert "smtp_bind_address" not in only6 and only6["smtp_bind_address6"] == V6


# --- the SPF record ---------------------------------------------------------------------------


def spf_at(records: list[Any], name: str) -> str:
    (record,) = [r for r in records if r.name == name and r.type == "TXT" and r.value_prefix]
    (value,) = record.values
    return str(value)


def test_spf_names_the_addresses_instead_of_mx(dkim: DkimKey) -> None:
    assert spf_at(desired_records(maildomain(), dkim), "example.com") == "v=spf1 mx -all"
    dom = maildomain(
        outbound={"addresses": [V6, V4]}, dns={"spf": {"includes": ["_spf.example.net"]}}
    )
    records = desired_records(dom, dkim)
    apex = f"v=spf1 ip4:{V4} ip6:{V6} include:_spf.example.net -all"
    assert spf_at(records, "example.com") == apex
    assert spf_at(records, "mail.example.com") == apex  # the HELO name's, no longer "a"
    (helo,) = [r for r in records if r.name == "mail.example.com" and r.type == "TXT"]
    assert helo.reason.startswith("SPF for the HELO name mail.example.com")
    other = maildomain(outbound={"addresses": [V4], "heloName": "out1.example.net"})
    (host,) = [
        r for r in desired_records(other, dkim) if r.name == "mail.example.com" and r.type == "TXT"
    ]
    assert host.reason.startswith("SPF for the host name mail.example.com (only")
    assert spf_problems([apex]) == []
    assert spf_lookups(apex, None)[0] == 1  # only the include queries: far under 10


def test_records_and_plan_golden() -> None:
    """The records with outbound addresses, and the plan a user sees when adding them to a
    MailDomain that published today's records: the two SPF values change, nothing else."""
    dom = maildomain(outbound={"addresses": [V4, V6]})
    records = desired_records(dom, fixed_dkim())
    provider = MemoryProvider("example.com", ())
    before = desired_records(maildomain(), fixed_dkim())
    provider.apply(plan_zone(before, provider.read([r.name for r in before]), OWNER).changes)
    plan = plan_zone(records, provider.read([r.name for r in records]), OWNER)
    zone, text = render_zone(records), format_plan(plan)
    if UPDATE_GOLDEN:
        GOLDEN_ZONE.write_text(zone)
        GOLDEN_PLAN.write_text(text)
    assert zone == GOLDEN_ZONE.read_text()
    assert text == GOLDEN_PLAN.read_text()
    assert [(c.name, c.action) for c in plan.changes] == [
        ("example.com", "update"),
        ("mail.example.com", "update"),
    ]


# --- the condition and the status -------------------------------------------------------------


def test_outbound_condition_cases() -> None:
    bad = AddressCheck(V6, ("x.example.net",), False, "pass", "ptr", f"{V6}: its PTR ...")
    good = AddressCheck(V4, ("out.example.com",), True, "pass")
    dom = maildomain(outbound={"addresses": [V4, V6], "heloName": "out.example.com"})
    cases = [
        (maildomain(), None, "Unknown", reasons.OUTBOUND_NOT_CONFIGURED),
        (maildomain(relay={"host": "smtp.relay.example.net"}), None, "Unknown", "ThroughRelay"),
        (dom, None, "Unknown", reasons.OUTBOUND_CHECKING),
        (dom, (good, bad), "False", reasons.PTR_MISMATCH),
        (dom, (good, replace(bad, failed="spf", problem="s")), "False", reasons.SPF_NOT_PASSING),
        (dom, (good, replace(bad, failed="")), "True", reasons.OUTBOUND_VERIFIED),
    ]
    for model, checks, status, reason in cases:
        condition = outbound_condition(model, checks)
        assert (condition.type, condition.status, condition.reason) == (
            "OutboundIdentityVerified",
            status,
            reason,
        )
    assert outbound_condition(dom, (good, bad)).message == f"{V6}: its PTR ..."


def test_the_status_reports_each_address_and_ready_ignores_the_condition() -> None:
    inputs = plan.DomainInputs(
        domain={
            "apiVersion": "mailstack.dev/v1alpha1",
            "kind": "MailDomain",
            "metadata": {"name": "example-com", "namespace": "mail", "uid": "u1"},
            "spec": {"domain": "example.com", "outbound": {"addresses": [V4]}},
        },
        siblings=(),
        mailboxes=[],
        secrets={},
        now=NOW,
    )
    rendered = plan.render_domain(inputs)
    failing = AddressCheck(V4, (), False, "fail", "ptr", f"{V4}: no PTR")
    status = domain_status(rendered, generation=1, previous=None, now=NOW, outbound=(failing,))
    assert status["outbound"] == [{"address": V4, "ptr": [], "fcrdns": False, "spf": "fail"}]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["OutboundIdentityVerified"]["status"] == "False"
    assert conditions["Ready"]["reason"] != reasons.PTR_MISMATCH  # not summarised into Ready
    assert "outbound" not in domain_status(rendered, generation=1, previous=None, now=NOW)
