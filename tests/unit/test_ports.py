"""The port table (``layout.PUBLIC_PORTS``): every place that names a public port follows it.

For each setting of ``spec.protocols``, the public Service, the containers, Postfix's master.cf,
Dovecot's listeners and protocols and the SRV records agree on which ports are open.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailstack.api.assemble import MailService, assemble
from mailstack.api.models import API_VERSION
from mailstack.api.parse import parse_maildomain
from mailstack.dns.records import desired_records
from mailstack.material.dkim import DkimKey, generate_dkim_key
from mailstack.render import layout
from mailstack.render.dovecot import render_dovecot_conf
from mailstack.render.network import render_public_service
from mailstack.render.objects import RenderOptions
from mailstack.render.postfix import render_postfix_master_cf
from mailstack.render.workloads import render_mda_statefulset, render_mta_statefulset
from tests.parsers import DovecotSection, parse_dovecot_conf, parse_master_cf

SWITCHES = ("submissions", "submission", "imap", "pop3", "managesieve")
SETTINGS = [
    {switch: True for switch in SWITCHES},
    {switch: False for switch in SWITCHES},
    *({switch: switch != off for switch in SWITCHES} for off in SWITCHES),
]
INTERNAL = {layout.LMTP_PORT.number, layout.MDA_SUBMIT_PORT.number, layout.MDA_RELAY_PORT.number}


@pytest.fixture(scope="module")
def dkim() -> DkimKey:
    return generate_dkim_key("mailstack", "ed25519")


def _service(protocols: dict[str, bool]) -> MailService:
    doc = {
        "apiVersion": API_VERSION,
        "kind": "MailDomain",
        "metadata": {"name": "example-com", "namespace": "mail"},
        "spec": {"domain": "example.com", "protocols": protocols},
    }
    (service,), problems = assemble([parse_maildomain(doc)], [])
    assert not problems
    return service


def _open(protocols: dict[str, bool], component: str | None = None) -> set[int]:
    """The public port numbers the table opens for these switches."""
    return {
        port.number
        for port in layout.PUBLIC_PORTS
        if (port.protocol is None or protocols[port.protocol])
        and component in (None, port.component)
    }


def _sections(section: DovecotSection) -> Iterator[DovecotSection]:
    for child in section.sections:
        yield child
        yield from _sections(child)


@pytest.mark.parametrize("protocols", SETTINGS, ids=lambda p: ",".join(k for k in p if p[k]))
def test_every_place_opens_the_ports_of_the_table(
    protocols: dict[str, bool], dkim: DkimKey
) -> None:
    service = _service(protocols)
    expected = _open(protocols)

    public = render_public_service(service)
    assert {p["port"] for p in public["spec"]["ports"]} == expected

    containers = [
        container
        for sts in (
            render_mta_statefulset(service, RenderOptions(), "", relay_auth=False),
            render_mda_statefulset(service, RenderOptions(), ""),
        )
        for container in sts["spec"]["template"]["spec"]["containers"]
    ]
    names = {port.name for port in layout.PUBLIC_PORTS}
    declared = {p["containerPort"] for c in containers for p in c["ports"] if p["name"] in names}
    assert declared == expected

    smtpd = [e for e in parse_master_cf(render_postfix_master_cf(service)) if e.type == "inet"]
    # The agent's probe listener is on loopback alone, not a port of the pod.
    probe = f"127.0.0.1:{layout.POSTFIX_PROBE_PORT}"
    assert probe in {e.service for e in smtpd}
    assert {int(e.service) for e in smtpd if e.service != probe} == _open(protocols, "mta") | {
        layout.MDA_SUBMIT_PORT.number,
        layout.MDA_RELAY_PORT.number,
    }

    dovecot = parse_dovecot_conf(render_dovecot_conf(service))
    listening = {int(s.get("port")) for s in _sections(dovecot) if s.name == "inet_listener"} - {0}
    # LMTP: the agent's TLS tunnel listens (agent/tunnel.py), onto Dovecot's socket.
    assert listening == _open(protocols, "mda")
    sockets = {s.arg for s in _sections(dovecot) if s.name == "unix_listener"}
    assert layout.DOVECOT_LMTP_SOCKET_NAME in sockets
    served = set(dovecot.get("protocols").split())
    assert served == {"lmtp"} | {
        name
        for name, switch in [("imap", "imap"), ("pop3", "pop3"), ("sieve", "managesieve")]
        if protocols[switch]
    } | ({"submission"} if protocols["submission"] or protocols["submissions"] else set())

    srv = [r for r in desired_records(service.domain, dkim) if r.type == "SRV"]
    announced = {int(value.split()[2]) for r in srv for value in r.values if value != "0 0 0 ."}
    assert announced == expected - {25}
    assert not announced & INTERNAL
