"""Typed, fully defaulted models of the two resources and of the Secrets they reference.

The parser (``api.parse``) is the only producer of these objects, so every value in them has been
validated and every optional field has its default. Renderers and planners read them and never
see raw dictionaries. All models are frozen: they are values, compared and hashed as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

GROUP = "mailstack.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

TlsIssuer = Literal["internal", "certManager", "acme"]
DkimAlgorithm = Literal["rsa2048", "ed25519"]
Retention = Literal["Retain", "Delete"]
DnsProviderKind = Literal["manual", "rfc2136", "powerdns", "cloudflare", "route53", "externalDNS"]


@dataclass(frozen=True)
class SecretKeyRef:
    """A key in a Secret of the resource's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class Limits:
    message_size: int = 25 * 1024 * 1024
    recipients_per_message: int = 100


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


@dataclass(frozen=True)
class DnsProvider:
    """Exactly one provider; ``settings`` holds its validated, provider-specific fields."""

    kind: DnsProviderKind = "manual"
    settings: tuple[tuple[str, object], ...] = ()
    secret: SecretKeyRef | None = None

    def setting(self, name: str, default: object = None) -> object:
        return dict(self.settings).get(name, default)


@dataclass(frozen=True)
class Spf:
    policy: Literal["-all", "~all", "?all"] = "-all"
    includes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dmarc:
    policy: Literal["none", "quarantine", "reject"] = "quarantine"
    subdomain_policy: Literal["none", "quarantine", "reject"] | None = None
    rua: tuple[str, ...] = ()
    pct: int = 100
    adkim: Literal["r", "s"] = "r"
    aspf: Literal["r", "s"] = "r"


@dataclass(frozen=True)
class MtaSts:
    enabled: bool = False
    mode: Literal["none", "testing", "enforce"] = "testing"
    max_age: int = 604800


@dataclass(frozen=True)
class TlsRpt:
    enabled: bool = False
    rua: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dns:
    provider: DnsProvider = field(default_factory=DnsProvider)
    ttl: int = 3600
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    spf: Spf = field(default_factory=Spf)
    dmarc: Dmarc = field(default_factory=Dmarc)
    mta_sts: MtaSts = field(default_factory=MtaSts)
    tls_rpt: TlsRpt = field(default_factory=TlsRpt)


@dataclass(frozen=True)
class ServiceSpec:
    type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = "LoadBalancer"
    annotations: tuple[tuple[str, str], ...] = ()
    external_traffic_policy: Literal["Local", "Cluster"] = "Local"
    load_balancer_ip: str | None = None


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
class Spam:
    enabled: bool = True
    add_header_score: float = 6.0
    reject_score: float = 15.0
    junk_folder: bool = True


@dataclass(frozen=True)
class MailDomain:
    """One mail service for one domain, fully defaulted."""

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
    tls: Tls = field(default_factory=Tls)
    dkim: Dkim = field(default_factory=Dkim)
    dns: Dns = field(default_factory=Dns)
    service: ServiceSpec = field(default_factory=ServiceSpec)
    storage: Storage = field(default_factory=Storage)
    spam: Spam = field(default_factory=Spam)
    resolvers: tuple[str, ...] = ()
    generation: int = 0
    uid: str = ""

    @property
    def ref(self) -> str:
        return f"MailDomain/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Mailbox:
    """One account, fully defaulted."""

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

    @property
    def ref(self) -> str:
        return f"Mailbox/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Secret:
    """A Secret document, decoded: only what the operator reads from it."""

    name: str
    namespace: str
    data: tuple[tuple[str, bytes], ...] = ()

    def get(self, key: str) -> bytes | None:
        return dict(self.data).get(key)

    @property
    def ref(self) -> str:
        return f"Secret/{self.namespace}/{self.name}"
