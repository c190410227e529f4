"""Typed models of ``spec.dns``: the provider and its settings, SPF, DMARC, MTA-STS, TLS-RPT.

Owns the DNS section's models; ``api.models`` re-exports them, so callers import from there.
Like every model they are frozen and fully defaulted, produced only by the parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:  # api.models imports this module; the annotations are strings at run time
    from mailstack.api.models import SecretKeyRef

DnsProviderKind = Literal["manual", "rfc2136", "powerdns", "cloudflare", "route53", "externalDNS"]
TsigAlgorithm = Literal["hmac-sha256", "hmac-sha512"]


# One settings class per provider kind (``spec.dns.provider.<kind>``), each with its defaults.
# ``default_secret_key``: the key of the credentials Secret reference when none is given (None:
# the provider reads the whole Secret, or has none).


@dataclass(frozen=True)
class ManualSettings:
    """Nothing is published: people publish the records themselves."""

    kind: ClassVar[DnsProviderKind] = "manual"
    default_secret_key: ClassVar[str | None] = None
    pushes_records: ClassVar[bool] = False


@dataclass(frozen=True)
class ExternalDnsSettings:
    """The records go to a ``DNSEndpoint`` for an external-dns already in the cluster."""

    kind: ClassVar[DnsProviderKind] = "externalDNS"
    default_secret_key: ClassVar[str | None] = None
    pushes_records: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True)
class Rfc2136Settings:
    """A DNS server taking TSIG-signed dynamic updates; the TSIG secret is in ``tsigSecretRef``."""

    kind: ClassVar[DnsProviderKind] = "rfc2136"
    default_secret_key: ClassVar[str | None] = "secret"
    pushes_records: ClassVar[bool] = True
    server: str
    port: int = 53
    zone: str
    tsig_key_name: str
    tsig_algorithm: TsigAlgorithm = "hmac-sha256"


@dataclass(frozen=True, kw_only=True)
class PowerDnsSettings:
    """The PowerDNS HTTP API; the API key is in ``apiKeySecretRef``."""

    kind: ClassVar[DnsProviderKind] = "powerdns"
    default_secret_key: ClassVar[str | None] = "apiKey"
    pushes_records: ClassVar[bool] = True
    api_url: str
    server_id: str = "localhost"
    zone: str


@dataclass(frozen=True, kw_only=True)
class CloudflareSettings:
    """The Cloudflare API; the API token is in ``apiTokenSecretRef``."""

    kind: ClassVar[DnsProviderKind] = "cloudflare"
    default_secret_key: ClassVar[str | None] = "apiToken"
    pushes_records: ClassVar[bool] = True
    zone: str
    zone_id: str | None = None  # None: looked up by the zone's name


@dataclass(frozen=True, kw_only=True)
class Route53Settings:
    """Amazon Route 53; the AWS keys are in the Secret of ``credentialsSecretRef``."""

    kind: ClassVar[DnsProviderKind] = "route53"
    default_secret_key: ClassVar[str | None] = None
    pushes_records: ClassVar[bool] = True
    hosted_zone_id: str
    region: str = "us-east-1"


ProviderSettings = (
    ManualSettings
    | ExternalDnsSettings
    | Rfc2136Settings
    | PowerDnsSettings
    | CloudflareSettings
    | Route53Settings
)


@dataclass(frozen=True)
class DnsProvider:
    """Exactly one provider: its settings and the Secret holding its credentials.

    ``secret`` names a key of a Secret, or the whole Secret (``key`` empty) for Route 53.
    """

    settings: ProviderSettings = field(default_factory=ManualSettings)
    secret: SecretKeyRef | None = None

    @property
    def kind(self) -> DnsProviderKind:
        return self.settings.kind

    @property
    def pushes_records(self) -> bool:
        """Whether mailstack writes the records to this provider (not manual, not externalDNS)."""
        return self.settings.pushes_records


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
