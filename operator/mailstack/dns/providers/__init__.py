"""DNS providers, one module each, behind the interface of ``providers.base.Provider``.

Owns: ``PROVIDERS``, the constructor of each kind (its module's ``from_domain``), and
``build_provider``, which turns a MailDomain's ``spec.dns.provider`` and the Secrets of its
namespace into a ready provider (credentials decoded, zone settled). The externalDNS provider is
not built here: it has no records to read and writes a Kubernetes object instead
(``providers.external_dns``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailstack.api.dns_models import DnsProviderKind
from mailstack.api.models import MailDomain, Secret
from mailstack.dns.errors import DnsConfigError
from mailstack.dns.providers import cloudflare, manual, powerdns, rfc2136, route53
from mailstack.dns.providers.base import Provider
from mailstack.dns.providers.construction import Constructor, ProviderOptions
from mailstack.dns.providers.reach import Deadline, HostGuard

PROVIDERS: dict[DnsProviderKind, Constructor] = {
    "manual": manual.from_domain,
    "rfc2136": rfc2136.from_domain,
    "powerdns": powerdns.from_domain,
    "cloudflare": cloudflare.from_domain,
    "route53": route53.from_domain,
}


def build_provider(
    domain: MailDomain,
    secrets: Mapping[str, Secret],
    *,
    timeout: float | None = None,
    route53_client: Any = None,
    route53_endpoint: str | None = None,
    cloudflare_api_url: str | None = None,
    guard: HostGuard | None = None,
    deadline: Deadline | None = None,
) -> Provider:
    """The provider of ``domain`` (not externalDNS), with credentials from ``secrets``.

    ``secrets``: the Secrets of the MailDomain's namespace by name. Raises ``DnsConfigError``
    when a referenced Secret or key is missing or unusable. The keyword arguments are those of
    ``ProviderOptions``.
    """
    kind = domain.dns.provider.kind
    constructor = PROVIDERS.get(kind)
    if constructor is None:
        raise DnsConfigError(f"{domain.ref}: provider {kind} has no records to read or write here")
    options = ProviderOptions(
        timeout, route53_client, route53_endpoint, cloudflare_api_url, guard, deadline
    )
    return constructor(domain, secrets, options)


__all__ = ["PROVIDERS", "Provider", "ProviderOptions", "build_provider"]
