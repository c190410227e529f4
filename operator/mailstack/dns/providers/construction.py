"""What a provider module's ``from_domain`` needs to build its provider from a MailDomain.

Owns: ``ProviderOptions`` (what the caller adds to the MailDomain: timeouts, the publication's
deadline, the guard of the hosts the MailDomain names, replacement clients and endpoints for
tests and proxies), the ``Constructor`` signature every provider module
exports, the typed settings of the MailDomain's provider, and its credentials looked up among the
Secrets of the MailDomain's namespace (only a Secret labelled ``mailstack.dev/usable-by`` for
MailDomains: ``api.secret_access``), with messages that name the missing Secret or key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from mailstack.api.dns_models import ProviderSettings
from mailstack.api.models import MailDomain, Secret, SecretKeyRef
from mailstack.api.secret_access import MAILDOMAINS, refusal
from mailstack.dns.errors import DnsConfigError
from mailstack.dns.providers.base import Provider
from mailstack.dns.providers.reach import Deadline, HostGuard, Reach

SettingsT = TypeVar("SettingsT", bound=ProviderSettings)


@dataclass(frozen=True)
class ProviderOptions:
    """How to build a provider beyond what its MailDomain says."""

    timeout: float | None = None  # seconds per request; None: the provider's own default
    route53_client: Any = None  # replaces the Route 53 client outright (credentials unread)
    route53_endpoint: str | None = None  # instead of https://route53.amazonaws.com
    cloudflare_api_url: str | None = None  # instead of Cloudflare's API
    # The hosts the MailDomain names (rfc2136 server, PowerDNS API): resolved and checked by
    # it (None: as the system resolves them, which is what the CLI does).
    guard: HostGuard | None = None
    deadline: Deadline | None = None  # of the whole publication; None: only per call

    def reach(self, named_by_tenant: bool) -> Reach:
        """How to connect: with the guard for a host the MailDomain names, else without."""
        return Reach(self.guard if named_by_tenant else None, self.deadline)


# (the MailDomain, the Secrets of its namespace by name, options) -> its provider
Constructor = Callable[[MailDomain, Mapping[str, Secret], ProviderOptions], Provider]


def settings_of(domain: MailDomain, kind: type[SettingsT]) -> SettingsT:
    """The provider settings of ``domain``, which a constructor of ``kind`` was chosen for."""
    settings = domain.dns.provider.settings
    if not isinstance(settings, kind):
        raise TypeError(f"{domain.ref}: {type(settings).__name__} given, {kind.__name__} expected")
    return settings


def _reference(domain: MailDomain) -> SecretKeyRef:
    ref = domain.dns.provider.secret
    if ref is None:
        kind = domain.dns.provider.kind
        raise DnsConfigError(f"{domain.ref}: the {kind} provider needs a Secret reference")
    return ref


def credentials_secret(domain: MailDomain, secrets: Mapping[str, Secret]) -> Secret:
    """The Secret the provider of ``domain`` refers to."""
    ref = _reference(domain)
    refused = refusal(secrets, ref.name, MAILDOMAINS)  # missing, or not labelled for MailDomains
    if refused is not None:
        raise DnsConfigError(f"{domain.ref}: the {domain.dns.provider.kind} credentials: {refused}")
    return secrets[ref.name]


def credentials_text(domain: MailDomain, secrets: Mapping[str, Secret]) -> str:
    """The key of that Secret the reference names, as text without surrounding whitespace."""
    ref = _reference(domain)
    value = credentials_secret(domain, secrets).get(ref.key)
    if value is None:
        raise DnsConfigError(
            f"{domain.ref}: Secret {domain.namespace}/{ref.name} has no key {ref.key!r}"
        )
    try:
        return value.decode().strip()
    except UnicodeDecodeError:
        raise DnsConfigError(
            f"{domain.ref}: Secret {domain.namespace}/{ref.name} key {ref.key!r} is not text"
        ) from None
