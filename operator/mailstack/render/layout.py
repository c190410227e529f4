"""Where things live: object names, container paths and ports shared by the renderer and the agent.

The renderer mounts volumes at these paths and writes config files that refer to them; the agent
(and the local runtime) prepares the same paths. Keeping them in one module is what keeps the
config files, the pod specs and the supervisor in agreement.
"""

from __future__ import annotations

# Mounted configuration (read-only volumes).
POSTFIX_CONFIG_DIR = "/etc/mailstack/postfix"
DOVECOT_CONFIG_DIR = "/etc/mailstack/dovecot"
RSPAMD_CONFIG_DIR = "/etc/mailstack/rspamd"
USERS_DIR = "/etc/mailstack/users"
TLS_DIR = "/etc/mailstack/tls"
DKIM_DIR = "/etc/mailstack/dkim"
MDA_CLIENT_DIR = "/etc/mailstack/mda-client"
SIEVE_DIR = "/etc/mailstack/sieve"

# Writable state.
# Persistent volumes are mounted one level above the directories the daemons own, so that the
# kubelet's fsGroup handling of the volume root never fights the daemons' own ownership rules.
QUEUE_VOLUME = "/var/spool/mailstack"  # PVC: the queue survives pod restarts
QUEUE_DIR = f"{QUEUE_VOLUME}/postfix"
POSTFIX_DATA_DIR = "/var/lib/postfix"  # emptyDir: TLS session and address verification caches
MAIL_DIR = "/var/mail"  # PVC: the Maildirs, in <domain>/<local part>/Maildir
DOVECOT_STATE_DIR = "/var/lib/dovecot"
DOVECOT_RUN_DIR = "/run/dovecot"
RSPAMD_DB_DIR = "/var/lib/rspamd"
RSPAMD_RUN_DIR = "/run/rspamd"
MILTER_DIR = "/run/mailstack/milter"  # emptyDir shared by postfix and rspamd in the MTA pod
MILTER_SOCKET = f"{MILTER_DIR}/rspamd.sock"

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
# The login Postfix reports to rspamd for mail that Sieve scripts send (a milter macro on the
# mda-submit port). Not an address, so no user can log in with it.
SIEVE_LOGIN = "mailstack-sieve"

# Folders whose messages Dovecot deletes once they were saved this many days ago. The renderer
# sets them as the folders' autoexpunge (applied when an IMAP or POP3 session ends); the agent
# beside Dovecot sweeps every mailbox with the same ages once a day ("doveadm expunge"), so
# mailboxes nobody logs in to are cleaned too, without a check on every LMTP delivery.
EXPUNGE_AFTER_DAYS: tuple[tuple[str, int], ...] = (("Junk", 30), ("Trash", 30))

# The uid/gid that owns the Maildirs (numeric: the image needs no vmail user).
VMAIL_UID = 5000
VMAIL_GID = 5000
# Groups pinned in the mail image, used as the pods' fsGroup so that mounted Secrets can stay
# mode 0440: Dovecot's auth process (user dovecot) reads the passwd-file, rspamd's workers
# (user _rspamd) read the DKIM key. Postfix and Dovecot read TLS keys as root before dropping.
DOVECOT_GID = 11143
RSPAMD_GID = 11333


class Port:
    """A port of the stack. A plain class, not a dataclass: the agent imports this module, and
    ``dataclasses`` (with ``inspect``) would cost each agent process more than a megabyte."""

    __slots__ = ("component", "name", "number")

    def __init__(self, name: str, number: int, component: str) -> None:
        self.name = name
        self.number = number
        self.component = component  # "mta" or "mda"

    def __repr__(self) -> str:
        return f"Port({self.name!r}, {self.number}, {self.component!r})"


PUBLIC_PORTS: tuple[Port, ...] = (
    Port("smtp", 25, "mta"),
    Port("submissions", 465, "mta"),
    Port("submission", 587, "mta"),
    Port("imap", 143, "mda"),
    Port("imaps", 993, "mda"),
    Port("pop3", 110, "mda"),
    Port("pop3s", 995, "mda"),
    Port("sieve", 4190, "mda"),
)
LMTP_PORT = Port("lmtp", 24, "mda")
SASL_PORT = Port("sasl", 12345, "mda")
# Where Dovecot hands Postfix the mail that Sieve scripts send (redirects, vacation replies),
# showing its client certificate; on the internal ``<name>-mta`` Service, for the MDA pods only.
MDA_SUBMIT_PORT = Port("mda-submit", 10587, "mta")
# Health endpoints of the agents; the containers of one pod share a network namespace.
HEALTH_PORTS = {"postfix": 9101, "rspamd": 9102, "dovecot": 9103}


def object_names(name: str) -> dict[str, str]:
    """The names of every object written for the MailDomain called ``name``."""
    return {
        "service": name,
        "mda_service": f"{name}-mda",
        "mta_service": f"{name}-mta",
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
        "service_account": name,
        "pdb": name,
        "dns_endpoint": f"{name}-dns",  # externalDNS provider only
    }
