"""Typed, fully defaulted models of the two resources and of the Secrets they reference.

The parser (``api.parse``) is the only producer of these objects, so every value in them has been
validated and every optional field has its default. Renderers and planners read them and never
see raw dictionaries. All models are frozen: they are values, compared and hashed as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from mailstack.api.dns_models import Dns
from mailstack.api.pod_models import MailPods
from mailstack.api.postscreen_models import Postscreen

GROUP = "mailstack.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

TlsIssuer = Literal["internal", "certManager", "acme"]
DkimAlgorithm = Literal["rsa2048", "ed25519"]
Retention = Literal["Retain", "Delete"]


@dataclass(frozen=True)
class SecretKeyRef:
    """A key in a Secret of the resource's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class ClientLimits:
    """What one client address may do (``spec.limits.perClient``); 0 turns a limit off.

    The SMTP limits are Postfix's anvil(8) counts on port 25, per minute (587 and 465 are
    Dovecot's, behind which Postfix skips them); ``sessions_per_user`` is Dovecot's per user and
    address, after login (IMAP, POP3). ``exempt_networks`` (IP addresses or CIDR
    ranges, canonical) are exempt from the SMTP limits, as the pod's own loopback always is.
    """

    smtp_connections: int = 20
    smtp_connections_per_minute: int = 60
    smtp_messages_per_minute: int = 60
    smtp_recipients_per_minute: int = 200
    # No effect since Postfix takes no logins (587 and 465 are Dovecot's): kept so that
    # MailDomains that set it stay valid; agent.auth_policy bounds guessing.
    smtp_logins_per_minute: int = 0
    sessions_per_user: int = 50
    exempt_networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    message_size: int = 25 * 1024 * 1024
    recipients_per_message: int = 100
    per_client: ClientLimits = field(default_factory=ClientLimits)


@dataclass(frozen=True)
class Protocols:
    imap: bool = True
    pop3: bool = True
    submission: bool = True
    submissions: bool = True
    managesieve: bool = False


@dataclass(frozen=True)
class Relay:
    """An optional smarthost for all outbound mail."""

    host: str
    port: int = 587
    credentials_secret: str | None = None
    username_key: str = "username"
    password_key: str = "password"
    # The CA certificates (PEM) that vouch for the smarthost; None: the system's CAs.
    ca: SecretKeyRef | None = None
    default_ca_key: ClassVar[str] = "ca.crt"  # of caSecretRef when no key is given

    @property
    def verified(self) -> bool:
        """Whether Postfix checks the smarthost's certificate against its host name: always
        with credentials (the password goes to that host only) or with a CA of its own."""
        return self.credentials_secret is not None or self.ca is not None


@dataclass(frozen=True)
class Outbound:
    """``spec.outbound``: the public addresses mail leaves from, the HELO name (the host name
    when not given), and whether Postfix binds to the addresses."""

    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    helo_name: str = ""
    bind_address: bool = False


@dataclass(frozen=True)
class IssuerRef:
    name: str
    kind: str = "ClusterIssuer"
    group: str = "cert-manager.io"


@dataclass(frozen=True)
class Tls:
    issuer: TlsIssuer = "internal"
    cert_manager_issuer: IssuerRef | None = None
    acme_server: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_email: str = ""


@dataclass(frozen=True)
class Dkim:
    selector: str = "mailstack"
    algorithm: DkimAlgorithm = "rsa2048"


# How clients' connections reach the mail pods (``spec.service.exposure``): the first three are
# the public Service's type, HostPort binds the pods' ports on their node, ProxyProtocol takes
# connections from upstream proxies that announce each client's address (api.parse.service).
Exposure = Literal["LoadBalancer", "NodePort", "ClusterIP", "HostPort", "ProxyProtocol"]


@dataclass(frozen=True)
class ProxyProtocol:
    """``spec.service.proxyProtocol``: the proxies trusted to announce client addresses (PROXY
    protocol v1 or v2), and the namespaces besides the MailDomain's own whose pods may use the
    internal listeners (without PROXY)."""

    trusted_cidrs: tuple[str, ...]
    internal_namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceSpec:
    type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = "LoadBalancer"
    annotations: tuple[tuple[str, str], ...] = ()
    external_traffic_policy: Literal["Local", "Cluster"] = "Local"
    load_balancer_ip: str | None = None
    exposure: Exposure = "LoadBalancer"
    proxy_protocol: ProxyProtocol | None = None  # with exposure ProxyProtocol only


@dataclass(frozen=True)
class Volume:
    size: str
    storage_class_name: str | None = None


@dataclass(frozen=True)
class Storage:
    mailboxes: Volume = field(default_factory=lambda: Volume("10Gi"))
    queue: Volume = field(default_factory=lambda: Volume("2Gi"))
    retention: Retention = "Retain"


@dataclass(frozen=True)
class Signatures:
    """Where freshclam gets ClamAV's signature databases."""

    official: bool = True  # main, daily, bytecode
    private_mirror: str | None = None  # a mirror of the official databases (http(s) URL)
    urls: tuple[str, ...] = ()  # further database files (freshclam's DatabaseCustomURL)


@dataclass(frozen=True)
class Antivirus:
    """ClamAV through rspamd's antivirus module: clamd and freshclam in the MTA pod."""

    enabled: bool = False
    action: Literal["reject", "quarantine"] = "reject"
    signatures: Signatures = field(default_factory=Signatures)


@dataclass(frozen=True)
class Spam:
    enabled: bool = True
    add_header_score: float = 6.0
    reject_score: float = 15.0
    junk_folder: bool = True
    # What happens to a message the scanner did not judge (rspamd not answering in time, or a
    # message over the scan limits): "tempfail" (the sender retries) or "accept" (delivered
    # unscanned, unsigned, marked in X-Spam-Status).
    on_scan_failure: str = "tempfail"
    antivirus: Antivirus = field(default_factory=Antivirus)


@dataclass(frozen=True)
class ServerRef:
    """``spec.serverRef``: the shared MailServer serving a MailDomain (``api.server_models``)."""

    namespace: str
    name: str

    @property
    def ref(self) -> str:
        return f"MailServer/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class MailDomain:
    """One mail service for one domain, fully defaulted. With ``server_ref`` it joins a shared
    MailServer, and the server's fields here keep their defaults (api.parse.maildomain)."""

    name: str
    namespace: str
    domain: str
    hostname: str
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()  # local part -> targets, sorted
    catch_all: str | None = None
    postmaster: str = ""
    limits: Limits = field(default_factory=Limits)
    protocols: Protocols = field(default_factory=Protocols)
    relay: Relay | None = None
    outbound: Outbound = field(default_factory=Outbound)
    tls: Tls = field(default_factory=Tls)
    dkim: Dkim = field(default_factory=Dkim)
    dns: Dns = field(default_factory=Dns)
    service: ServiceSpec = field(default_factory=ServiceSpec)
    storage: Storage = field(default_factory=Storage)
    spam: Spam = field(default_factory=Spam)
    postscreen: Postscreen = field(default_factory=Postscreen)
    resolvers: tuple[str, ...] = ()
    pods: MailPods = field(default_factory=MailPods)  # a layer: see api.pod_models
    server_ref: ServerRef | None = None
    generation: int = 0
    uid: str = ""
    created: str = ""  # metadata.creationTimestamp (RFC 3339, UTC); "" in files

    @property
    def ref(self) -> str:
        return f"MailDomain/{self.namespace}/{self.name}"

    @property
    def helo_name(self) -> str:
        """Postfix's HELO name: ``spec.outbound.heloName``, else (its default) the host name."""
        return self.outbound.helo_name or self.hostname

    @property
    def claim_order(self) -> tuple[str, str, str, str]:
        """Who serves a domain claimed twice, cluster-wide: the oldest claim, then the lowest
        uid; in files, without either, the first by namespace and name."""
        return (self.created, self.uid, self.namespace, self.name)


@dataclass(frozen=True)
class Mailbox:
    """One account, fully defaulted."""

    default_password_key: ClassVar[str] = "password"  # of passwordSecretRef when none is given
    name: str
    namespace: str
    address: str
    local_part: str
    domain: str
    password: SecretKeyRef
    display_name: str = ""
    quota: int | None = None  # bytes; None = unlimited
    aliases: tuple[str, ...] = ()  # full addresses on the same domain
    forward_to: tuple[str, ...] = ()
    keep_copy: bool = False
    suspended: bool = False
    sieve: str | None = None
    generation: int = 0
    uid: str = ""
    created: str = ""  # metadata.creationTimestamp; "" in files (the order under the limits)

    @property
    def ref(self) -> str:
        return f"Mailbox/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Secret:
    """A Secret document, decoded: only what the operator reads from it."""

    name: str
    namespace: str
    data: tuple[tuple[str, bytes], ...] = ()
    # The kinds its ``mailstack.dev/usable-by`` label lets use it (``api.secret_access``).
    usable_by: frozenset[str] = frozenset()

    def get(self, key: str) -> bytes | None:
        return dict(self.data).get(key)

    @property
    def ref(self) -> str:
        return f"Secret/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ClusterNetworks:
    """The cluster's own ranges (``--cluster-networks``, the chart's ``clusterNetworks``;
    canonical): a public client from one of them is masked (api/parse/cluster_networks.py)."""

    pods: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()

    def ranges(self) -> list[tuple[str, str]]:
        """(kind, range) pairs, kinds in the order pods, services, nodes."""
        return [
            *(("pods", n) for n in self.pods),
            *(("services", n) for n in self.services),
            *(("nodes", n) for n in self.nodes),
        ]
