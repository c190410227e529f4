"""``spec.dns.provider`` of a MailDomain: exactly one provider kind, with its typed settings.

Owns: the fields of each kind and of the reference to its credentials Secret. Defaults are the
settings classes' (``dns_models.Rfc2136Settings`` and the others); a provider with a ``zone`` field
takes the MailDomain's domain when none is given. Fields are read in the order of their names, so
the problems of a provider come in that order.
"""

from __future__ import annotations

from collections.abc import Callable

from mailstack.api import dns_models, models, validate
from mailstack.api.parse.common import host_or_ip, secret_ref
from mailstack.api.reader import Reader, integer, join, one_of

# (reader, the kind's body, its path, the MailDomain's domain) -> the provider, None if invalid
KindParser = Callable[[Reader, object, str, str], dns_models.DnsProvider | None]


def parse_provider(r: Reader, value: object, path: str, domain: str) -> dns_models.DnsProvider:
    """``spec.dns.provider``: none given is the manual provider."""
    raw = r.mapping(value, path, set(KINDS))
    if value is not None and len(raw) != 1:
        r.fail(path, "set exactly one provider: " + ", ".join(KINDS))
        return dns_models.DnsProvider()
    if not raw:
        return dns_models.DnsProvider()
    kind, body = next(iter(raw.items()))
    return KINDS[kind](r, body, join(path, kind), domain) or dns_models.DnsProvider()


def _manual(r: Reader, body: object, path: str, domain: str) -> dns_models.DnsProvider:
    r.mapping(body, path, set())
    return dns_models.DnsProvider(dns_models.ManualSettings())


def _external_dns(r: Reader, body: object, path: str, domain: str) -> dns_models.DnsProvider:
    r.mapping(body, path, set())
    return dns_models.DnsProvider(dns_models.ExternalDnsSettings())


def _rfc2136(r: Reader, body: object, path: str, domain: str) -> dns_models.DnsProvider | None:
    fields = {"port", "server", "tsigAlgorithm", "tsigKeyName", "tsigSecretRef", "zone"}
    config = r.mapping(body, path, fields)
    default = dns_models.Rfc2136Settings
    port = r.field(config, "port", path, integer(1, 65535), default.port)
    server = r.field(config, "server", path, host_or_ip)
    algorithm = r.field(
        config,
        "tsigAlgorithm",
        path,
        one_of("hmac-sha256", "hmac-sha512"),
        default.tsig_algorithm,
    )
    key_name = r.field(config, "tsigKeyName", path, validate.domain_name_or_label)
    zone = r.field(config, "zone", path, validate.domain_name, None)
    secret_path = join(path, "tsigSecretRef")
    secret = secret_ref(r, config.get("tsigSecretRef"), secret_path, default.default_secret_key)
    if not (r.present(server) and r.present(key_name)):
        return None
    settings = dns_models.Rfc2136Settings(
        server=server,
        port=port,
        zone=zone or domain,
        tsig_key_name=key_name,
        tsig_algorithm=algorithm,
    )
    return dns_models.DnsProvider(settings, secret)


def _powerdns(r: Reader, body: object, path: str, domain: str) -> dns_models.DnsProvider | None:
    config = r.mapping(body, path, {"apiKeySecretRef", "apiUrl", "serverId", "zone"})
    default = dns_models.PowerDnsSettings
    api_url = r.field(config, "apiUrl", path, validate.http_url)
    server_id = r.field(config, "serverId", path, validate.kubernetes_subdomain, default.server_id)
    zone = r.field(config, "zone", path, validate.domain_name, None)
    secret_path = join(path, "apiKeySecretRef")
    secret = secret_ref(r, config.get("apiKeySecretRef"), secret_path, default.default_secret_key)
    if not r.present(api_url):
        return None
    settings = dns_models.PowerDnsSettings(
        api_url=api_url, server_id=server_id, zone=zone or domain
    )
    return dns_models.DnsProvider(settings, secret)


def _cloudflare(r: Reader, body: object, path: str, domain: str) -> dns_models.DnsProvider | None:
    config = r.mapping(body, path, {"apiTokenSecretRef", "zone", "zoneId"})
    default = dns_models.CloudflareSettings
    zone = r.field(config, "zone", path, validate.domain_name, None)
    zone_id = r.field(config, "zoneId", path, validate.hex_id, default.zone_id)
    secret_path = join(path, "apiTokenSecretRef")
    secret = secret_ref(r, config.get("apiTokenSecretRef"), secret_path, default.default_secret_key)
    settings = dns_models.CloudflareSettings(zone=zone or domain, zone_id=zone_id)
    return dns_models.DnsProvider(settings, secret)


def _route53(r: Reader, body: object, path: str, domain: str) -> dns_models.DnsProvider | None:
    config = r.mapping(body, path, {"credentialsSecretRef", "hostedZoneId", "region"})
    default = dns_models.Route53Settings
    hosted_zone_id = r.field(config, "hostedZoneId", path, validate.route53_zone_id)
    region = r.field(config, "region", path, validate.kubernetes_subdomain, default.region)
    secret = _whole_secret(
        r, config.get("credentialsSecretRef"), join(path, "credentialsSecretRef")
    )
    if not r.present(hosted_zone_id):
        return None
    settings = dns_models.Route53Settings(hosted_zone_id=hosted_zone_id, region=region)
    return dns_models.DnsProvider(settings, secret)


def _whole_secret(r: Reader, value: object, path: str) -> models.SecretKeyRef | None:
    """A reference to a whole Secret (``{name}``), as a ``SecretKeyRef`` with an empty key."""
    ref = r.mapping(value, path, {"name"})
    if not ref:
        r.fail(path, "is required")
        return None
    name = r.field(ref, "name", path, validate.kubernetes_subdomain)
    return models.SecretKeyRef(name, "") if r.present(name) else None


# In the order the "set exactly one provider" message lists them.
KINDS: dict[str, KindParser] = {
    "manual": _manual,
    "externalDNS": _external_dns,
    "rfc2136": _rfc2136,
    "powerdns": _powerdns,
    "cloudflare": _cloudflare,
    "route53": _route53,
}
