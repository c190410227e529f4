"""Where things live: object names, container paths and ports shared by the renderer and the agent.

The renderer mounts volumes at these paths and writes config files that refer to them; the agent
(and the local runtime) prepares the same paths. Keeping them in one module is what keeps the
config files, the pod specs and the supervisor in agreement. Likewise ``PUBLIC_PORTS``, the one
table of the public ports, each with the ``spec.protocols`` switch that turns it on and the SRV
record that announces it.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mailstack.api.models import Protocols

# Mounted configuration (read-only volumes).
POSTFIX_CONFIG_DIR = "/etc/mailstack/postfix"
DOVECOT_CONFIG_DIR = "/etc/mailstack/dovecot"
RSPAMD_CONFIG_DIR = "/etc/mailstack/rspamd"
USERS_DIR = "/etc/mailstack/users"
TLS_DIR = "/etc/mailstack/tls"
DKIM_DIR = "/etc/mailstack/dkim"
MDA_CLIENT_DIR = "/etc/mailstack/mda-client"
MTA_CLIENT_DIR = "/etc/mailstack/mta-client"
SIEVE_DIR = "/etc/mailstack/sieve"
CLAMAV_CONFIG_DIR = "/etc/mailstack/clamav"

# Writable state.
# Persistent volumes are mounted one level above the directories the daemons own, so that the
# kubelet's fsGroup handling of the volume root never fights the daemons' own ownership rules.
QUEUE_VOLUME = "/var/spool/mailstack"  # PVC: the queue survives pod restarts
QUEUE_DIR = f"{QUEUE_VOLUME}/postfix"
POSTFIX_DATA_DIR = "/var/lib/postfix"  # emptyDir: TLS session and address verification caches
# postscreen's memory of clients that passed its tests (Postfix's own folder, beside the queue
# on its volume): a restarted pod does not make every known sender wait through the tests again.
POSTSCREEN_DIR = f"{QUEUE_VOLUME}/postscreen"
POSTSCREEN_CACHE = f"{POSTSCREEN_DIR}/cache"  # btree: Postfix adds ".db"
MAIL_DIR = "/var/mail"  # PVC: the Maildirs, in <domain>/<local part>/Maildir
DOVECOT_STATE_DIR = "/var/lib/dovecot"
DOVECOT_RUN_DIR = "/run/dovecot"
RSPAMD_DB_DIR = "/var/lib/rspamd"
RSPAMD_RUN_DIR = "/run/rspamd"
MILTER_DIR = "/run/mailstack/milter"  # emptyDir shared by postfix and rspamd in the MTA pod
MILTER_SOCKET = f"{MILTER_DIR}/rspamd.sock"
# The envelope sender of the agent's health probe (agent/milter_probe), which it sends as from
# 127.0.0.1: rspamd's rspamd.lua answers that message without scanning or logging it.
MILTER_PROBE_SENDER = "probe@localhost"
# Dovecot's LMTP service listens on a unix socket only; the dovecot container's agent reaches
# it from its TLS listener on LMTP_PORT (agent/tunnel.py). (dovecot.conf names it relative to
# its base_dir, DOVECOT_RUN_DIR.)
DOVECOT_LMTP_SOCKET_NAME = "lmtp-tunnel"
DOVECOT_LMTP_SOCKET = f"{DOVECOT_RUN_DIR}/{DOVECOT_LMTP_SOCKET_NAME}"
# emptyDir of the postfix container where its agent serves Postfix's policy service: the
# tripwire, for clients of the public listeners from the cluster's own ranges (agent/tripwire.py).
POLICY_SOCKET_DIR = "/run/mailstack/policy"
TRIPWIRE_SOCKET = f"{POLICY_SOCKET_DIR}/tripwire"
# Where the postfix agent's health server serves what the tripwire saw (the operator reads it).
MASKED_CLIENTS_PATH = "/masked-clients"
# The env variable that tells the dovecot container's agent how many sessions its tunnel
# carries at once (``lmtp=N``), derived from Postfix's process limits in the rendered master.cf
# (render.postfix.tunnel_sessions): Postfix must never find it full.
TUNNEL_SESSIONS_ENV = "MAILSTACK_TUNNEL_SESSIONS"
# The server name (SNI) the MTA's readiness probe asks for in its handshakes through the MDA's
# tunnel: the tunnel serves it on slots of its own, so that sessions held by Postfix never make
# the MTA unready.
TUNNEL_PROBE_SERVER_NAME = "readiness-probe.mailstack.invalid"
# ClamAV's signature databases, on the queue volume (a subPath): freshclam writes them, clamd
# reads them, and a restarted pod does not download them again.
CLAMAV_DB_DIR = "/var/lib/clamav"
CLAMAV_RUN_DIR = "/run/clamav"  # emptyDir: freshclam's and clamd's pid files
# clamd listens on the pod's loopback only; rspamd in the same pod is its one client.
CLAMD_PORT = 3310

# Files inside the mounted Secrets.
TLS_CERT = f"{TLS_DIR}/tls.crt"
TLS_KEY = f"{TLS_DIR}/tls.key"
PASSWD_FILE = f"{USERS_DIR}/passwd"
VIRTUAL_MAILBOXES = f"{USERS_DIR}/virtual_mailboxes"
VIRTUAL_ALIASES = f"{USERS_DIR}/virtual_aliases"
SENDER_LOGINS = f"{USERS_DIR}/sender_logins"
RELAY_PASSWORDS = f"{USERS_DIR}/relay_passwords"
MDA_CLIENT_CERT = f"{MDA_CLIENT_DIR}/tls.crt"
MDA_CLIENT_KEY = f"{MDA_CLIENT_DIR}/tls.key"
MDA_CLIENT_CERTS = f"{MDA_CLIENT_DIR}/clientcerts"  # the fingerprint map, in the MTA pod
MTA_CLIENT_CERT = f"{MTA_CLIENT_DIR}/tls.crt"
MTA_CLIENT_KEY = f"{MTA_CLIENT_DIR}/tls.key"
# The login Postfix reports to rspamd for mail that Sieve scripts send (a milter macro on the
# mda-submit port). Not an address, so no user can log in with it.
SIEVE_LOGIN = "mailstack-sieve"

# Folders whose messages Dovecot deletes once they were saved this many days ago. The renderer
# sets them as the folders' autoexpunge (applied when an IMAP or POP3 session ends); the agent
# beside Dovecot sweeps every mailbox with the same ages once a day ("doveadm expunge"), so
# mailboxes nobody logs in to are cleaned too, without a check on every LMTP delivery.
EXPUNGE_AFTER_DAYS: tuple[tuple[str, int], ...] = (("Junk", 30), ("Trash", 30))

# The user that owns the Maildirs and runs Dovecot, every process of it (the container's
# runAsUser). The mail image creates it with these ids; Dovecot names its users, so the name
# must resolve to this uid wherever Dovecot runs (scripts/setup.sh creates it for mailstack up).
VMAIL_USER = "vmail"
VMAIL_UID = 5000
VMAIL_GID = 5000
# Groups pinned in the mail image, used as the pods' fsGroup so that mounted Secrets can stay
# mode 0440: Dovecot's auth process (user dovecot) reads the passwd-file, rspamd's workers
# (user _rspamd) read the DKIM key. Postfix and Dovecot read TLS keys as root before dropping.
DOVECOT_GID = 11143
RSPAMD_GID = 11333
# rspamd runs as _rspamd (the image pins its uid too): the container's runAsUser.
RSPAMD_UID = 11333
# clamd and freshclam run as clamav (the image pins its ids): the containers' runAsUser and
# runAsGroup.
CLAMAV_UID = 11310
CLAMAV_GID = 11310


class Srv:
    """The SRV record that tells mail clients where a port is: the record's service label, its
    priority among the records of the same service (lower is preferred), what the port offers
    and the RFC that defines the record. A plain class, as ``Port``."""

    __slots__ = ("label", "offers", "priority", "rfc")

    def __init__(self, label: str, priority: int, offers: str, rfc: str = "RFC 6186") -> None:
        self.label = label
        self.priority = priority
        self.offers = offers
        self.rfc = rfc

    def __repr__(self) -> str:
        return f"Srv({self.label!r}, {self.priority}, {self.offers!r}, {self.rfc!r})"


class Port:
    """A port of the stack: its name (of the container port, the Service port and Dovecot's
    listener), its number, the pod that listens on it ("mta" or "mda"), the ``spec.protocols``
    switch that turns it on (None: always on) and the SRV record that announces it (None: none).

    A plain class, not a dataclass: the agent imports this module, and ``dataclasses`` (with
    ``inspect``) would cost each agent process more than a megabyte."""

    __slots__ = ("component", "name", "number", "protocol", "srv")

    def __init__(
        self,
        name: str,
        number: int,
        component: str,
        protocol: str | None = None,
        srv: Srv | None = None,
    ) -> None:
        self.name = name
        self.number = number
        self.component = component
        self.protocol = protocol
        self.srv = srv

    def enabled_by(self, protocols: Protocols) -> bool:
        """Whether a MailDomain with these ``spec.protocols`` listens on this port."""
        return self.protocol is None or bool(getattr(protocols, self.protocol))

    def __repr__(self) -> str:
        return f"Port({self.name!r}, {self.number}, {self.component!r}, {self.protocol!r})"


# The one table of the public ports: Postfix's master.cf, Dovecot's listeners and protocols,
# the containers' ports, the Services, the NetworkPolicies, the SRV records and the endpoints
# of the status and of "mailstack up" all derive from it. SRV priorities: RFC 8314 §5.1 prefers
# implicit TLS, so its records have the lower (preferred) priority; IMAP is preferred over POP3
# (RFC 6186 §3.4 lets clients compare priorities across the services).
SMTP_PORT = Port("smtp", 25, "mta")  # always on; other servers find it through the MX record
PUBLIC_PORTS: tuple[Port, ...] = (
    SMTP_PORT,
    Port(
        "submissions",
        465,
        "mda",
        protocol="submissions",
        srv=Srv("_submissions._tcp", 0, "message submission over implicit TLS (RFC 8314)"),
    ),
    Port(
        "submission",
        587,
        "mda",
        protocol="submission",
        srv=Srv("_submission._tcp", 10, "message submission with STARTTLS"),
    ),
    Port("imap", 143, "mda", protocol="imap", srv=Srv("_imap._tcp", 10, "IMAP with STARTTLS")),
    Port("imaps", 993, "mda", protocol="imap", srv=Srv("_imaps._tcp", 0, "IMAP over implicit TLS")),
    Port("pop3", 110, "mda", protocol="pop3", srv=Srv("_pop3._tcp", 30, "POP3 with STARTTLS")),
    Port(
        "pop3s", 995, "mda", protocol="pop3", srv=Srv("_pop3s._tcp", 20, "POP3 over implicit TLS")
    ),
    # Not RFC 6186 but RFC 5804 §1.8: where Sieve clients (ManageSieve) find the server.
    Port(
        "sieve",
        4190,
        "mda",
        protocol="managesieve",
        srv=Srv("_sieve._tcp", 0, "ManageSieve with STARTTLS", rfc="RFC 5804"),
    ),
)
# With ``spec.service.exposure: ProxyProtocol`` every public port wants a PROXY header from a
# trusted proxy. In-cluster clients (a webmail, applications relaying through 587) use these
# listeners instead, without PROXY: each public port but 25 has one, this much higher, named
# "int-<name>", reached through the ``<name>-internal`` Service on the standard port numbers.
INTERNAL_PORT_OFFSET = 11000


def internal_port(port: Port) -> Port:
    """The listener without PROXY beside a public ``port`` (ProxyProtocol exposure only)."""
    return Port(
        f"int-{port.name}", port.number + INTERNAL_PORT_OFFSET, port.component, port.protocol
    )


# Internal ports: always on, never announced. LMTP is TLS with a pinned certificate on both ends
# (the MTA's client certificate), served by the dovecot container's agent.
LMTP_PORT = Port("lmtp", 24, "mda")
# Where Dovecot hands Postfix the mail that Sieve scripts send (redirects, vacation replies),
# showing its client certificate; on the internal ``<name>-mta`` Service, for the MDA pods only.
MDA_SUBMIT_PORT = Port("mda-submit", 10587, "mta")
# Where Dovecot's submission service (587 and 465) relays the mail of logged-in users: TLS with
# Dovecot's client certificate, then XCLIENT with the user's address, HELO and login; on the
# internal ``<name>-mta`` Service, for the MDA pods only.
MDA_RELAY_PORT = Port("mda-relay", 10588, "mta")
# Its smtpd processes, one per logged-in session; Dovecot's submission service (one process per
# logged-in session, each holding its relay connection) has the same limit, so its sessions
# never wait for an smtpd, and a flood of logins costs the dovecot container this many at most.
MDA_RELAY_PROCESSES = 100
# Postfix's probe listener: an smtpd on the pod's loopback only, with its own process limit, so
# that sessions holding every public smtpd (port 25's process limit) cannot fail the probes; its
# banner says that the master process is alive and spawns smtpd (agent.daemons).
POSTFIX_PROBE_PORT = 10025
POSTFIX_PROBE_PROCESSES = 2
# Dovecot's auth policy service (agent.auth_policy): HTTP on the MDA pod's loopback, asked before
# each login and told each result; and the file where the agent leaves the nonce Dovecot hashes
# passwords with for it. The nonce and the known hashes (agent.known_hashes) are kept on the mail
# volume, in a dot-folder of the agent's beside the domains' folders (a domain never starts with
# a dot), so a restarted agent still knows the right passwords.
AUTH_POLICY_PORT = 10071
AUTH_POLICY_NONCE = f"{DOVECOT_RUN_DIR}/auth-policy-nonce"
AUTH_POLICY_STATE_DIR = f"{MAIL_DIR}/.mailstack-auth-policy"
AUTH_POLICY_STATE = f"{AUTH_POLICY_STATE_DIR}/known-hashes.json"
# The auth policy's settings from the spec (render.dovecot: the dovecot ConfigMap's file).
AUTH_POLICY_SETTINGS = f"{DOVECOT_CONFIG_DIR}/auth-policy.json"
# The folder Dovecot's auth processes start in: it holds a link to the auth-worker socket (which
# they find relative to it) but not the per-address penalty's socket, so they have no penalty.
DOVECOT_AUTH_DIR = f"{DOVECOT_RUN_DIR}/auth-without-penalty"
# Health endpoints of the agents; the containers of one pod share a network namespace.
HEALTH_PORTS = {"postfix": 9101, "rspamd": 9102, "dovecot": 9103, "clamd": 9104, "freshclam": 9105}


def object_names(name: str) -> dict[str, str]:
    """The names of every object written for the MailDomain called ``name``."""
    return {
        "service": name,
        "mda_service": f"{name}-mda",
        "mta_service": f"{name}-mta",
        "internal_service": f"{name}-internal",  # ProxyProtocol exposure only
        "mta": f"{name}-mta",
        "mda": f"{name}-mda",
        "postfix_config": f"{name}-postfix",
        "dovecot_config": f"{name}-dovecot",
        "rspamd_config": f"{name}-rspamd",
        "sieve": f"{name}-sieve",
        "users": f"{name}-users",
        "tls": f"{name}-tls",
        "ca": f"{name}-ca",
        "dkim": f"{name}-dkim",
        "mda_client": f"{name}-mda-client",
        "mta_client": f"{name}-mta-client",
        "service_account": name,
        "pdb": name,
        "dns_endpoint": f"{name}-dns",  # externalDNS provider only
    }
