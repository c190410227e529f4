"""Dovecot configuration: dovecot.conf and the global Sieve script for the MDA pod."""

from __future__ import annotations

import json

from mailstack.api.assemble import MailService
from mailstack.render import layout
from mailstack.render.server_paths import DOMAIN_TLS_DIR, DOVECOT_LOCAL_NAMES_KEY
from mailstack.render.templating import render_template
from mailstack.render.tls_profile import template_values as tls_profile
from mailstack.render.workloads import enabled_public_ports

# Where Pigeonhole keeps the compiled form of scripts that live on read-only mounts (the global
# spam-to-Junk script, the spec's per-user scripts): without it, every delivery recompiles them
# and logs "Read-only file system". In the user's home, which the vmail user owns.
SIEVE_BINDIR = "~/.sieve-bin"
# Above limits.messageSize, what Dovecot still stores: the headers added to mail after Postfix
# accepted it (rspamd's results, DKIM, Received, Return-Path, Delivered-To), which must never
# get it refused at delivery. IMAP clients may save up to the same size.
STORED_HEADER_ROOM = 1 << 20
# Each login service (imap-login, pop3-login, managesieve-login) runs LOGIN_PROCESSES processes
# (started with Dovecot, so TLS handshakes spread over the cores) of LOGIN_CLIENTS connections
# each: the connections that have not logged in yet. An idle one costs a few kB; when all are
# taken Dovecot drops the oldest. With one process to start with, a login beside 300 new TLS
# connections took 1.3 s here, with four 0.4 s (in the default mode, a process forked per
# connection: 5.4 s).
LOGIN_PROCESSES = 4
# Dovecot's listeners that speak TLS from the first byte.
IMPLICIT_TLS = frozenset(
    {"imaps", "pop3s", "submissions", "int-imaps", "int-pop3s", "int-submissions"}
)
LOGIN_CLIENTS = 250


# Dovecot's protocols, in the order dovecot.conf lists them, each with the listeners that serve
# it: a protocol is on when one of them is (imaps and pop3s go with imap and pop3; submission
# serves 587 and 465).
_DOVECOT_PROTOCOLS = (
    ("imap", ("imap",)),
    ("pop3", ("pop3",)),
    ("lmtp", ("lmtp",)),
    ("sieve", ("sieve",)),
    ("submission", ("submission", "submissions")),
)


def listener_ports(service: MailService) -> dict[str, int]:
    """Each of Dovecot's listeners (named as its port) and its port number, 0 when the
    MailDomain's ``protocols`` switch it off."""
    enabled = enabled_public_ports(service, "mda")
    ports = {
        port.name: port.number if port in enabled else 0
        for port in layout.PUBLIC_PORTS
        if port.component == "mda"
    }
    ports[layout.LMTP_PORT.name] = layout.LMTP_PORT.number
    if service.domain.service.exposure == "ProxyProtocol":
        ports.update(
            {
                layout.internal_port(p).name: ports[p.name]
                and ports[p.name] + layout.INTERNAL_PORT_OFFSET
                for p in layout.PUBLIC_PORTS
                if p.component == "mda"
            }
        )
    return ports


def dovecot_protocols(service: MailService) -> list[str]:
    listeners = listener_ports(service)
    return [name for name, served in _DOVECOT_PROTOCOLS if any(listeners[n] for n in served)]


def render_dovecot_conf(service: MailService) -> str:
    domain = service.domain
    proxy = domain.service.proxy_protocol
    return render_template(
        "dovecot/dovecot.conf.j2",
        domain=domain,
        protocols=" ".join(dovecot_protocols(service)),
        tls=tls_profile(),
        listeners=listener_ports(service),
        postmaster=f"postmaster@{domain.domain}",  # routed by the alias map, see postfix.py
        paths={
            "dovecot_run": layout.DOVECOT_RUN_DIR,
            "dovecot_state": layout.DOVECOT_STATE_DIR,
            "dovecot_config": layout.DOVECOT_CONFIG_DIR,
            "tls_cert": layout.TLS_CERT,
            "tls_key": layout.TLS_KEY,
            "local_names": f"{DOMAIN_TLS_DIR}/{DOVECOT_LOCAL_NAMES_KEY}",  # a shared server's
            "passwd": layout.PASSWD_FILE,
            "mail": layout.MAIL_DIR,
            "mda_client_cert": layout.MDA_CLIENT_CERT,
            "mda_client_key": layout.MDA_CLIENT_KEY,
            "lmtp_socket": layout.DOVECOT_LMTP_SOCKET_NAME,
            "auth_policy_nonce": layout.AUTH_POLICY_NONCE,
            "auth_dir": layout.DOVECOT_AUTH_DIR,
        },
        auth_policy_port=layout.AUTH_POLICY_PORT,
        names=layout.object_names(domain.name),
        mda_submit_port=layout.MDA_SUBMIT_PORT.number,
        mda_relay_port=layout.MDA_RELAY_PORT.number,
        mda_relay_processes=layout.MDA_RELAY_PROCESSES,
        submission=_login_listeners(service)["submission-login"],
        vmail_user=layout.VMAIL_USER,
        vmail_uid=layout.VMAIL_UID,
        vmail_gid=layout.VMAIL_GID,
        spam_to_junk=domain.spam.enabled and domain.spam.junk_folder,
        sieve_bindir=SIEVE_BINDIR,
        expunge_after_days=dict(layout.EXPUNGE_AFTER_DAYS),
        max_mail_size=domain.limits.message_size + STORED_HEADER_ROOM,
        sessions_per_user=domain.limits.per_client.sessions_per_user,
        login_services=_login_services(service),
        login_processes=LOGIN_PROCESSES,
        login_clients=LOGIN_CLIENTS,
        login_slots=LOGIN_PROCESSES * LOGIN_CLIENTS,
        login_listeners=_login_listeners(service),
        implicit_tls=IMPLICIT_TLS,
        # The listeners that take a PROXY header first, and from where (ProxyProtocol exposure).
        proxied=[p.name for p in enabled_public_ports(service, "mda")] if proxy else [],
        trusted_networks=proxy.trusted_cidrs if proxy else (),
    )


def _login_listeners(service: MailService) -> dict[str, list[str]]:
    """Each login service's inet listeners (named as their ports): imap and pop3 always (with
    port 0 when off), managesieve when on; the internal ones with the ProxyProtocol exposure."""
    listeners = listener_ports(service)
    return {
        login: [name for name in names if name in listeners]
        for login, names in (
            ("imap-login", ("imap", "imaps", "int-imap", "int-imaps")),
            ("pop3-login", ("pop3", "pop3s", "int-pop3", "int-pop3s")),
            ("managesieve-login", ("sieve", "int-sieve") if listeners["sieve"] else ()),
            ("submission-login", _submission_listeners(listeners)),
        )
    }


def _submission_listeners(listeners: dict[str, int]) -> tuple[str, ...]:
    """submission-login's listeners: those of 587 and 465 that are on (with their int-* twins).
    None when both are off (the submission protocol is then off too)."""
    names = ("submission", "submissions", "int-submission", "int-submissions")
    return tuple(name for name in names if listeners.get(name))


def _login_services(service: MailService) -> list[str]:
    """Dovecot's login services that the config names: imap and pop3 always (their listeners
    are off with port 0), managesieve only when on (its service exists with Pigeonhole's), and
    submission when 587 or 465 is (its service exists with dovecot-submissiond's)."""
    listeners = listener_ports(service)
    sieve = ["managesieve-login"] if listeners["sieve"] else []
    submission = ["submission-login"] if _submission_listeners(listeners) else []
    return ["imap-login", "pop3-login", *sieve, *submission]


def render_auth_policy_settings(service: MailService) -> str:
    """The auth policy service's settings (``agent.exempt_networks`` reads them): the networks
    held to per-login guessing budgets only, those exempt from the SMTP limits too."""
    exempt = list(service.domain.limits.per_client.exempt_networks)
    return json.dumps({"exemptNetworks": exempt}, indent=2) + "\n"


def render_dovecot_config(service: MailService) -> dict[str, str]:
    """The files of the ``<name>-dovecot`` ConfigMap."""
    files = {
        "dovecot.conf": render_dovecot_conf(service),
        "auth-policy.json": render_auth_policy_settings(service),
    }
    if service.domain.spam.enabled and service.domain.spam.junk_folder:
        files["spam-to-junk.sieve"] = render_template("dovecot/spam-to-junk.sieve.j2")
    return files
