"""Postfix configuration: main.cf and master.cf for the MTA pod, and the relay's CA file."""

from __future__ import annotations

from dataclasses import dataclass

from mailstack.api.assemble import MailService
from mailstack.api.models import ClusterNetworks
from mailstack.api.postscreen_models import DnsblSite
from mailstack.render import layout
from mailstack.render.rspamd import SCAN_TIMEOUT_SECONDS
from mailstack.render.server_paths import DOMAIN_TLS_DIR, SNI_MAP_KEY, VIRTUAL_DOMAINS_KEY
from mailstack.render.templating import RenderError, render_template
from mailstack.render.tls_profile import template_values as tls_profile
from mailstack.render.workloads import enabled_public_ports, internal_ports

# Postfix's milter timeouts (its defaults, 30 s per command and 300 s for the message, would
# hold a client that long on a wedged scanner). The message's includes sending it (25 MB over a
# local socket: well under a second) and the scan, which rspamd bounds itself.
MILTER_TIMEOUTS = {
    "connect": 5,
    "command": 10,
    "content": SCAN_TIMEOUT_SECONDS + 12,
}

# The CAs Postfix trusts for outbound TLS: the operating system's (Debian's ca-certificates, in
# the mail image), or the ones a relay's caSecretRef names. A CA certificate is public: it goes
# in the ConfigMap beside main.cf, whose checksum rolls the pod when it changes.
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
RELAY_CA_FILE = "relay-ca.crt"
# The cluster's own ranges as a cidr table (the tripwire; docs/operator.md, "Masked client
# addresses"): the public listeners hand their clients from there to the agent's policy service.
CLUSTER_CLIENTS_FILE = "cluster-clients.cidr"
MASKED_CLIENT_CLASS = "mailstack_masked_client"

# Port 25's smtpd processes (the "smtpd pass" service behind postscreen): twice Postfix's 100,
# so that sessions held from a few addresses at the per-address limit (6 x 17 in DATA, the
# outside re-check of #21) leave room for other senders. They cost memory only
# (docs/operator.md, "Hostile clients"). The submission ports are Dovecot's (render/dovecot.py):
# its login processes hold the sessions before login, which took every smtpd of 587 when
# Postfix served it (#21, F2), and only logged-in sessions reach Postfix, on mda-relay.
PORT_25_SMTPD_PROCESSES = 200


def _paths() -> dict[str, str]:
    return {
        "postfix_config": layout.POSTFIX_CONFIG_DIR,
        "queue": layout.QUEUE_DIR,
        "postfix_data": layout.POSTFIX_DATA_DIR,
        "virtual_mailboxes": layout.VIRTUAL_MAILBOXES,
        "virtual_aliases": layout.VIRTUAL_ALIASES,
        "sender_logins": layout.SENDER_LOGINS,
        "relay_passwords": layout.RELAY_PASSWORDS,
        "tls_cert": layout.TLS_CERT,
        "tls_key": layout.TLS_KEY,
        "milter_socket": layout.MILTER_SOCKET,
        "mda_clientcerts": layout.MDA_CLIENT_CERTS,
        "mta_client_cert": layout.MTA_CLIENT_CERT,
        "mta_client_key": layout.MTA_CLIENT_KEY,
        "postscreen_cache": layout.POSTSCREEN_CACHE,
        "tripwire": layout.TRIPWIRE_SOCKET,
        # A shared server's (render.server_domains).
        "virtual_domains": f"{layout.USERS_DIR}/{VIRTUAL_DOMAINS_KEY}",
        "sni_map": f"{DOMAIN_TLS_DIR}/{SNI_MAP_KEY}",
    }


def render_postfix_main_cf(
    service: MailService, mda_fingerprint: str, networks: ClusterNetworks | None = None
) -> str:
    """``mda_fingerprint``: the MDA certificate's public key (``public_key_fingerprint``), the
    only server certificate Postfix's LMTP client accepts."""
    domain = service.domain
    own_ca = domain.relay is not None and domain.relay.ca is not None
    return render_template(
        "postfix/main.cf.j2",
        domain=domain,
        names=layout.object_names(domain.name),
        paths=_paths(),
        lmtp_port=layout.LMTP_PORT.number,
        mda_fingerprint=mda_fingerprint,
        # The address, not where it leads: the alias map routes it, so adding a Mailbox never
        # changes main.cf (and never rolls the pod).
        postmaster=f"postmaster@{domain.domain}" if service.postmaster_target() else None,
        relay=domain.relay,
        relay_auth=bool(domain.relay and domain.relay.credentials_secret),
        ca_file=f"{layout.POSTFIX_CONFIG_DIR}/{RELAY_CA_FILE}" if own_ca else SYSTEM_CA_FILE,
        # rspamd always runs: it signs outbound mail even when spam filtering is off.
        milter=True,
        milter_timeouts=MILTER_TIMEOUTS,
        sieve_login=layout.SIEVE_LOGIN,
        per_client=domain.limits.per_client,
        port_25_processes=PORT_25_SMTPD_PROCESSES,
        exempt_networks=[postfix_network(n) for n in domain.limits.per_client.exempt_networks],
        postscreen=domain.postscreen,
        dnsbl_sites=[dnsbl_site(site) for site in domain.postscreen.dnsbl.sites],
        postscreen_access_list=postscreen_access_list(domain.postscreen.allow_networks),
        unannounceable=unannounceable_clients(),
        tripwire=f"{layout.POSTFIX_CONFIG_DIR}/{CLUSTER_CLIENTS_FILE}" if networks else None,
        proxy_protocol=domain.service.proxy_protocol,
        tls=tls_profile(),
    )


# Client addresses no PROXY header may announce on a public port: the pod's own loopback (rspamd
# and mynetworks take it for the pod itself: its bounces, its probe), "this network" and
# link-local ones. A proxy's own local clients come as its public address (``mailstack up``'s
# HAProxy: the host's bridge address); a header naming one of these is broken or forged. Nor
# may Dovecot's XCLIENT on mda-relay name one: it passes on what a PROXY header told it on 587.
UNANNOUNCEABLE_CLIENTS = (
    "127.0.0.0/8",
    "::ffff:127.0.0.0/104",
    "::1/128",
    "0.0.0.0/8",
    "::/128",
    "169.254.0.0/16",
    "fe80::/10",
)


@dataclass(frozen=True)
class Unannounceable:
    """The two forms of ``UNANNOUNCEABLE_CLIENTS`` for main.cf: smtpd's client check (mda-relay
    and the smtpd behind postscreen) and postscreen's access list entries (port 25)."""

    smtpd: str
    postscreen: str


def unannounceable_clients() -> Unannounceable:
    text = "REJECT 5.7.1 The proxy announced an address that no client of this port can have"
    smtpd = ", ".join(f"{{{network} {text}}}" for network in UNANNOUNCEABLE_CLIENTS)
    postscreen = ", ".join(f"{{{network} reject}}" for network in UNANNOUNCEABLE_CLIENTS)
    return Unannounceable(f"check_client_access cidr:{{ {smtpd} }}", f"cidr:{{ {postscreen} }}")


def postscreen_access_list(allow_networks: tuple[str, ...]) -> str:
    """``postscreen_access_list``: the pod's loopback (mynetworks) and the allow-listed ranges
    (an inline cidr table: no map file to mount)."""
    rules = ", ".join(f"{{{network} permit}}" for network in allow_networks)
    return f"permit_mynetworks, cidr:{{ {rules} }}" if rules else "permit_mynetworks"


def dnsbl_site(site: DnsblSite) -> str:
    """One entry of ``postscreen_dnsbl_sites``: ``name[=filter][*weight]``."""
    text = site.name if site.filter is None else f"{site.name}={site.filter}"
    return text if site.weight == 1 else f"{text}*{site.weight}"


def postfix_network(network: str) -> str:
    """A canonical CIDR range as Postfix's address lists write it: IPv6 in brackets."""
    address, _, prefix = network.partition("/")
    return f"[{address}]/{prefix}" if ":" in address else network


def render_cluster_clients(networks: ClusterNetworks) -> str:
    """The cidr table of the cluster's ranges: each leads to the restriction class that reports
    the client to the agent (which answers DUNNO: the client is judged as any other)."""
    lines = [
        "# The cluster's own ranges (the operator's clusterNetworks). A client of a public",
        "# listener from one of them came through SNAT or a proxy without PROXY protocol: it is",
        "# reported (ClientAddressesMasked) and trusted no more than any public client.",
    ]
    lines += [f"{network} {MASKED_CLIENT_CLASS}" for _, network in networks.ranges()]
    return "\n".join(lines) + "\n"


def render_postfix_mda_clientcerts(service: MailService, fingerprint: str) -> str:
    """The ``relay_clientcerts`` map: the public key fingerprint of Dovecot's client certificate
    (``ClientCertificate.public_key_fingerprint``), the only one the mda-submit port relays for."""
    names = layout.object_names(service.domain.name)
    return (
        "# Public key (SHA-256) of the MDA's client certificate: Postfix relays the mail that\n"
        "# Sieve scripts send (redirects, vacation replies) for this key only.\n"
        f"{fingerprint} {names['mda']}\n"
    )


def listener_ports(service: MailService) -> dict[str, int]:
    """The ports smtpd listens on (named as in layout), those that ``protocols`` switch on, and
    with the ProxyProtocol exposure the internal listeners without PROXY."""
    ports = [
        *enabled_public_ports(service, "mta"),
        *internal_ports(service, "mta"),
        layout.MDA_SUBMIT_PORT,
        layout.MDA_RELAY_PORT,
    ]
    return {port.name: port.number for port in ports}


# Postfix's default_process_limit (main.cf does not set it): a master.cf service's "-".
DEFAULT_PROCESS_LIMIT = 100
# lmtp's process limit, as master.cf's maxproc column writes it ("-": the default).
LMTP_PROCESSES = "-"


# The mda-relay port's SASL (master.cf): Postfix 3.7 applies XCLIENT's LOGIN to
# permit_sasl_authenticated and reject_sender_login_mismatch only where SASL is on, and turning
# it on needs a backend that lists a mechanism. Cyrus, with this file (cyrus_sasl_config_path):
# no password database, so every AUTH fails; the logins are Dovecot's.
RELAY_SASL_APP = "mda-relay-sasl"
RELAY_SASL_CONF = """\
# Cyrus SASL for Postfix's mda-relay port: there to let Postfix take the login Dovecot names
# with XCLIENT. It checks no password (no database): every AUTH command fails.
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: /nonexistent
mech_list: PLAIN
"""


# Sessions beyond twice the process limits (a reload leaves the old processes their sessions
# while new ones start): room for the connections Postfix opens and closes around them.
TUNNEL_SESSION_MARGIN = 16


def render_postfix_master_cf(service: MailService) -> str:
    proxied = service.domain.service.exposure == "ProxyProtocol"
    return render_template(
        "postfix/master.cf.j2",
        domain=service.domain,
        listeners=listener_ports(service),
        # The listeners that take a PROXY header first (none without the ProxyProtocol exposure).
        proxied=[p.name for p in enabled_public_ports(service, "mta")] if proxied else [],
        probe_port=layout.POSTFIX_PROBE_PORT,
        probe_processes=layout.POSTFIX_PROBE_PROCESSES,
        port_25_processes=PORT_25_SMTPD_PROCESSES,
        lmtp_processes=LMTP_PROCESSES,
        relay_sasl=RELAY_SASL_APP,
        mda_relay_processes=layout.MDA_RELAY_PROCESSES,
        postfix_config=layout.POSTFIX_CONFIG_DIR,
    )


def process_limit(maxproc: str) -> int:
    """A maxproc column's number of processes."""
    return DEFAULT_PROCESS_LIMIT if maxproc == "-" else int(maxproc.rstrip("?"))


def tunnel_sessions(service: MailService) -> dict[str, int]:
    """How many sessions the LMTP tunnel must carry at once for ``service``'s Postfix (the value
    master.cf is rendered from): each lmtp process holds one LMTP session. Twice the process
    limit, and a margin."""
    del service  # the same for every MailDomain, as lmtp's process limit
    return {"lmtp": 2 * process_limit(LMTP_PROCESSES) + TUNNEL_SESSION_MARGIN}


def tunnel_sessions_env(service: MailService) -> str:
    """``layout.TUNNEL_SESSIONS_ENV``'s value for the agents of ``service``'s pods."""
    sessions = tunnel_sessions(service)
    return ",".join(f"{name}={count}" for name, count in sorted(sessions.items()))


def render_postfix_config(
    service: MailService,
    relay_ca: str | None,
    mda_fingerprint: str,
    networks: ClusterNetworks | None = None,
) -> dict[str, str]:
    """The files of the ``<name>-postfix`` ConfigMap; ``relay_ca`` is ``Material.relay_ca``,
    ``mda_fingerprint`` the public key fingerprint of ``Material.mda_client``, ``networks`` the
    cluster's ranges (``RenderOptions.cluster_networks``; none: no tripwire)."""
    networks = networks if networks is not None and networks.ranges() else None
    files = {
        "main.cf": render_postfix_main_cf(service, mda_fingerprint, networks),
        "master.cf": render_postfix_master_cf(service),
    }
    files[f"{RELAY_SASL_APP}.conf"] = RELAY_SASL_CONF
    if networks is not None:
        files[CLUSTER_CLIENTS_FILE] = render_cluster_clients(networks)
    relay = service.domain.relay
    if relay is not None and relay.ca is not None:
        if relay_ca is None:
            raise RenderError(f"{service.domain.ref}: no CA certificates for the relay")
        files[RELAY_CA_FILE] = relay_ca
    return files
