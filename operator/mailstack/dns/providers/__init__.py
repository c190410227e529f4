"""DNS providers, one module each, behind the interface of ``providers.base.Provider``.

Owns: ``build_provider``, which turns a MailDomain's ``spec.dns.provider`` and the Secrets of its
namespace into a ready provider (credentials decoded, zone settled). The externalDNS provider is
not built here: it has no records to read and writes a Kubernetes object instead
(``providers.external_dns``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailstack.api.models import MailDomain, Secret
from mailstack.dns.errors import DnsConfigError
from mailstack.dns.providers.base import Provider

ROUTE53_KEYS = {
    "access_key": ("AWS_ACCESS_KEY_ID", "aws_access_key_id", "accessKeyId"),
    "secret_key": ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", "secretAccessKey"),
    "session_token": ("AWS_SESSION_TOKEN", "aws_session_token", "sessionToken"),
}


def _secret(domain: MailDomain, secrets: Mapping[str, Secret]) -> Secret:
    ref = domain.dns.provider.secret
    kind = domain.dns.provider.kind
    if ref is None:
        raise DnsConfigError(f"{domain.ref}: the {kind} provider needs a Secret reference")
    secret = secrets.get(ref.name)
    if secret is None:
        raise DnsConfigError(
            f"{domain.ref}: Secret {domain.namespace}/{ref.name} (the {kind} credentials) "
            "was not found"
        )
    return secret


def _secret_text(domain: MailDomain, secrets: Mapping[str, Secret]) -> str:
    ref = domain.dns.provider.secret
    assert ref is not None
    value = _secret(domain, secrets).get(ref.key)
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


def build_provider(
    domain: MailDomain,
    secrets: Mapping[str, Secret],
    *,
    timeout: float | None = None,
    route53_client: Any = None,
    route53_endpoint: str | None = None,
    cloudflare_api_url: str | None = None,
) -> Provider:
    """The provider of ``domain`` (not externalDNS), with credentials from ``secrets``.

    ``secrets``: the Secrets of the MailDomain's namespace by name. Raises ``DnsConfigError``
    when a referenced Secret or key is missing or unusable. ``route53_client`` replaces the
    Route 53 client outright (credentials unread); ``route53_endpoint`` and
    ``cloudflare_api_url`` point the built-in clients elsewhere (tests, proxies).
    """
    provider = domain.dns.provider
    kind = provider.kind
    zone = str(provider.setting("zone") or domain.domain)
    if kind == "manual":
        from mailstack.dns.providers.manual import ManualProvider

        return ManualProvider(zone)
    if kind == "rfc2136":
        from mailstack.dns.providers.rfc2136 import Rfc2136Provider

        return Rfc2136Provider(
            zone,
            str(provider.setting("server")),
            int(str(provider.setting("port", 53))),
            key_name=str(provider.setting("tsigKeyName")),
            secret=_secret_text(domain, secrets),
            algorithm=str(provider.setting("tsigAlgorithm", "hmac-sha256")),
            timeout=timeout or 5.0,
        )
    if kind == "powerdns":
        from mailstack.dns.providers.powerdns import PowerDnsProvider

        return PowerDnsProvider(
            zone,
            str(provider.setting("apiUrl")),
            _secret_text(domain, secrets),
            server_id=str(provider.setting("serverId", "localhost")),
            timeout=timeout or 10.0,
        )
    if kind == "cloudflare":
        from mailstack.dns.providers.cloudflare import API_URL, CloudflareProvider

        zone_id = provider.setting("zoneId")
        return CloudflareProvider(
            zone,
            _secret_text(domain, secrets),
            zone_id=str(zone_id) if zone_id else None,
            api_url=cloudflare_api_url or API_URL,
            timeout=timeout or 15.0,
        )
    if kind == "route53":
        from mailstack.dns.providers.route53 import Route53Provider, make_client

        client = route53_client
        if client is None:
            secret = _secret(domain, secrets)
            found: dict[str, str | None] = {}
            for field, keys in ROUTE53_KEYS.items():
                raw = next((secret.get(k) for k in keys if secret.get(k) is not None), None)
                found[field] = raw.decode().strip() if raw is not None else None
            access_key, secret_key = found["access_key"], found["secret_key"]
            if not access_key or not secret_key:
                raise DnsConfigError(
                    f"{domain.ref}: Secret {domain.namespace}/{secret.name} needs the keys "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                )
            client = make_client(
                str(provider.setting("region", "us-east-1")),
                access_key,
                secret_key,
                found["session_token"] or None,
                endpoint=route53_endpoint,
                timeout=timeout or 15.0,
            )
        return Route53Provider(str(provider.setting("hostedZoneId")), client)
    raise DnsConfigError(f"{domain.ref}: provider {kind} has no records to read or write here")


__all__ = ["Provider", "build_provider"]
