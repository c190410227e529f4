"""587 and 465 are Dovecot's (#21, F2): its submission-login service listens on them (in the
login processes' high-performance mode, as IMAP), relays logged-in sessions to Postfix's
mda-relay port with STARTTLS, its client certificate and XCLIENT, and mda-relay relays for that
certificate only, with the sender rules the submission ports had. The daemons' own checkers
accept the configs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from mailstack.api.assemble import MailService, assemble
from mailstack.api.parse import parse_maildomain
from mailstack.render import layout
from mailstack.render.dovecot import LOGIN_CLIENTS, LOGIN_PROCESSES, render_dovecot_conf
from mailstack.render.network import render_mta_service, render_network_policies
from mailstack.render.postfix import RELAY_SASL_APP, render_postfix_config
from tests.parsers import DovecotSection, parse_dovecot_conf, parse_master_cf
from tests.unit.test_render_proxy import PROXIED


def service(spec: dict[str, Any] | None = None) -> MailService:
    doc = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "example-com", "namespace": "mail"},
        "spec": {"domain": "example.com", **(spec or {})},
    }
    (built,), problems = assemble([parse_maildomain(doc)], [])
    assert not problems
    return built


def sections(conf: DovecotSection, name: str, arg: str | None = None) -> list[DovecotSection]:
    return [s for s in conf.sections if s.name == name and s.arg == arg]


def submission_listeners(conf: DovecotSection) -> dict[str, dict[str, str]]:
    return {
        listener.arg or "": dict(listener.settings)
        for login in sections(conf, "service", "submission-login")
        for listener in login.sections
        if listener.name == "inet_listener"
    }


def test_dovecot_serves_587_and_465_in_its_login_processes() -> None:
    conf = parse_dovecot_conf(render_dovecot_conf(service()))
    assert "submission" in conf.get("protocols").split()
    assert submission_listeners(conf) == {
        "submission": {"port": "587"},
        "submissions": {"port": "465", "ssl": "yes"},
    }
    # High-performance mode, as the other login services: pre-login sessions take slots.
    pool = [
        s
        for s in sections(conf, "service", "submission-login")
        if "client_limit" in dict(s.settings)
    ]
    assert dict(pool[0].settings) == {
        "service_count": "0",
        "process_min_avail": str(LOGIN_PROCESSES),
        "process_limit": str(LOGIN_PROCESSES),
        "client_limit": str(LOGIN_CLIENTS),
    }
    (submission,) = sections(conf, "service", "submission")
    assert submission.get("process_limit") == str(layout.MDA_RELAY_PROCESSES)


def test_dovecot_relays_to_mda_relay_with_its_certificate_and_xclient() -> None:
    limits = {"messageSize": "10Mi", "recipientsPerMessage": 30}
    conf = parse_dovecot_conf(render_dovecot_conf(service({"limits": limits})))
    assert conf.get("submission_relay_host") == "example-com-mta"
    assert conf.get("submission_relay_port") == str(layout.MDA_RELAY_PORT.number)
    assert conf.get("submission_relay_ssl") == "starttls"
    assert conf.get("submission_relay_trusted") == "yes"  # XCLIENT: address, HELO, LOGIN
    assert conf.get("ssl_client_cert") == f"<{layout.MDA_CLIENT_CERT}"
    assert conf.get("submission_max_mail_size") == str(10 * 2**20)
    assert conf.get("submission_max_recipients") == "30"
    assert conf.get("hostname") == "mail.example.com"


def test_the_internal_twins_listen_without_proxy() -> None:
    conf = parse_dovecot_conf(render_dovecot_conf(service({"service": PROXIED})))
    assert submission_listeners(conf) == {
        "submission": {"port": "587", "haproxy": "yes"},
        "submissions": {"port": "465", "ssl": "yes", "haproxy": "yes"},
        "int-submission": {"port": "11587"},
        "int-submissions": {"port": "11465", "ssl": "yes"},
    }


def test_without_587_and_465_dovecot_has_no_submission() -> None:
    off = {"protocols": {"submission": False, "submissions": False}}
    text = render_dovecot_conf(service(off))
    conf = parse_dovecot_conf(text)
    assert "submission" not in conf.get("protocols").split()
    assert "submission_relay_host" not in text and not submission_listeners(conf)
    only_465 = {"protocols": {"submission": False}}
    conf = parse_dovecot_conf(render_dovecot_conf(service(only_465)))
    assert submission_listeners(conf) == {"submissions": {"port": "465", "ssl": "yes"}}


def test_postfix_relays_for_dovecots_certificate_only_on_mda_relay() -> None:
    files = render_postfix_config(service({"service": PROXIED}), None, "AA:BB")
    entries = {e.service: e for e in parse_master_cf(files["master.cf"]) if e.type == "inet"}
    # No smtpd on 587, 465 or their internal twins.
    assert not {"587", "465", "11587", "11465"} & set(entries)
    relay = entries[str(layout.MDA_RELAY_PORT.number)]
    assert relay.command == "smtpd" and relay.maxproc == str(layout.MDA_RELAY_PROCESSES)
    options = relay.options()
    assert options["smtpd_tls_security_level"] == "encrypt"
    assert options["smtpd_authorized_xclient_hosts"] == "static:all"
    assert options["mynetworks"] == ""
    # Without the pinned certificate, nothing passes (whatever XCLIENT said); the pod's own
    # loopback cannot be announced.
    assert options["smtpd_client_restrictions"] == (
        "$mailstack_unannounceable_smtpd,permit_tls_clientcerts,reject"
    )
    assert options["smtpd_relay_restrictions"] == "permit_sasl_authenticated,reject"
    assert options["smtpd_sender_restrictions"] == "$mailstack_submission_sender_restrictions"
    assert options["milter_macro_daemon_name"] == "ORIGINATING"
    assert options["cleanup_service_name"] == "submission-cleanup"
    # SASL on (XCLIENT LOGIN counts only then), through a Cyrus config with no password store.
    assert options["smtpd_sasl_auth_enable"] == "yes"
    assert options["smtpd_sasl_type"] == "cyrus"
    assert options["smtpd_sasl_path"] == RELAY_SASL_APP
    assert "sasldb_path: /nonexistent" in files[f"{RELAY_SASL_APP}.conf"]
    main_cf = files["main.cf"]
    assert "smtpd_sasl_path" not in main_cf and "smtpd_forbid_bare_newline = normalize" in main_cf
    assert "mailstack_unannounceable_smtpd = check_client_access cidr:" in main_cf


def test_mda_relay_is_reachable_from_the_mda_pods_only() -> None:
    built = service()
    ports = [p["name"] for p in render_mta_service(built)["spec"]["ports"]]
    assert ports == ["mda-submit", "mda-relay"]
    mta, mda = render_network_policies(built)
    from_mda = [rule for rule in mta["spec"]["ingress"] if "mda-relay" in str(rule["ports"])]
    assert from_mda == [
        {
            "from": [{"podSelector": {"matchLabels": mda["spec"]["podSelector"]["matchLabels"]}}],
            "ports": [
                {"protocol": "TCP", "port": "mda-submit"},
                {"protocol": "TCP", "port": "mda-relay"},
            ],
        }
    ]


def test_the_daemons_accept_the_configs(tmp_path: Path) -> None:
    built = service({"service": PROXIED})
    conf = tmp_path / "dovecot.conf"
    conf.write_text(render_dovecot_conf(built))
    doveconf = shutil.which("doveconf") or "/usr/bin/doveconf"
    result = subprocess.run(
        [doveconf, "-c", str(conf), "-n"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "submission_relay_trusted = yes" in result.stdout
