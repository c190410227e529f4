"""``spec.relay`` of a MailDomain: the smarthost, its credentials and the CA that vouches for it.

Owns: the rule that a relay whose certificate is checked (one with credentials or a CA of its
own, ``models.Relay.verified``) is named by its host name: Postfix checks the certificate against
that name, and an IP address would match no certificate.
"""

from __future__ import annotations

from collections.abc import Mapping

from mailstack.api import models, validate
from mailstack.api.errors import FieldError
from mailstack.api.parse.common import host_or_ip, secret_ref
from mailstack.api.reader import Reader, integer, join

NAMED_BY_HOST_NAME = (
    "a relay with credentialsSecretRef or caSecretRef must be given by its host name, not an IP "
    "address: Postfix checks the relay's certificate against that name"
)


def parse_relay(r: Reader, value: object) -> models.Relay | None:
    if value is None:
        return None
    path = "spec.relay"
    relay = r.mapping(value, path, {"host", "port", "credentialsSecretRef", "caSecretRef"})
    host = r.field(relay, "host", path, host_or_ip)
    port = r.field(relay, "port", path, integer(1, 65535), models.Relay.port)
    credentials_path = join(path, "credentialsSecretRef")
    credentials = r.mapping(
        relay.get("credentialsSecretRef"),
        credentials_path,
        {"name", "usernameKey", "passwordKey"},
    )
    has_credentials = isinstance(relay.get("credentialsSecretRef"), Mapping)
    secret = (
        r.field(credentials, "name", credentials_path, validate.kubernetes_subdomain)
        if has_credentials
        else None
    )
    username_key = r.field(
        credentials, "usernameKey", credentials_path, validate.secret_key, models.Relay.username_key
    )
    password_key = r.field(
        credentials, "passwordKey", credentials_path, validate.secret_key, models.Relay.password_key
    )
    ca = None
    if relay.get("caSecretRef") is not None:
        ca = secret_ref(
            r, relay["caSecretRef"], join(path, "caSecretRef"), models.Relay.default_ca_key
        )
    verified = has_credentials or relay.get("caSecretRef") is not None
    if verified and r.present(host) and _is_ip_address(host):
        r.fail(join(path, "host"), NAMED_BY_HOST_NAME)
    if not r.present(host):
        return None
    return models.Relay(
        host=host,
        port=port,
        credentials_secret=secret if r.present(secret) else None,
        username_key=username_key,
        password_key=password_key,
        ca=ca,
    )


def _is_ip_address(host: str) -> bool:
    try:
        validate.any_ip_address(host)
    except FieldError:
        return False
    return True
