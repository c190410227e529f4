"""``spec.tls`` of a MailDomain: the issuer of its certificate and that issuer's section.

Owns: the rule that the section of an issuer (``certManager``, ``acme``) is given exactly when
that issuer is chosen.
"""

from __future__ import annotations

from typing import Any

from mailstack.api import models, validate
from mailstack.api.reader import Reader, join, one_of


def parse_tls(r: Reader, value: object) -> models.Tls:
    path = "spec.tls"
    tls = r.mapping(value, path, {"issuer", "certManager", "acme"})
    issuer = r.field(
        tls, "issuer", path, one_of("internal", "certManager", "acme"), models.Tls.issuer
    )
    issuer_ref = None
    if tls.get("certManager") is not None:
        issuer_ref = _cert_manager_issuer(r, tls["certManager"], join(path, "certManager"))
    acme_server, acme_email = models.Tls.acme_server, models.Tls.acme_email
    if tls.get("acme") is not None:
        acme_server, acme_email = _acme(r, tls["acme"], join(path, "acme"))
    _check_issuer_sections(r, tls, path, issuer)
    return models.Tls(
        issuer=issuer,
        cert_manager_issuer=issuer_ref,
        acme_server=acme_server,
        acme_email=acme_email if r.present(acme_email) else models.Tls.acme_email,
    )


def _cert_manager_issuer(r: Reader, value: object, path: str) -> models.IssuerRef | None:
    cert_manager = r.mapping(value, path, {"issuerRef"})
    ref_path = join(path, "issuerRef")
    ref = r.mapping(cert_manager.get("issuerRef"), ref_path, {"name", "kind", "group"})
    if not ref:
        r.fail(ref_path, "is required")
        return None
    return models.IssuerRef(
        name=r.field(ref, "name", ref_path, validate.kubernetes_subdomain),
        kind=r.field(
            ref, "kind", ref_path, one_of("Issuer", "ClusterIssuer"), models.IssuerRef.kind
        ),
        group=r.field(
            ref, "group", ref_path, validate.kubernetes_subdomain, models.IssuerRef.group
        ),
    )


def _acme(r: Reader, value: object, path: str) -> tuple[str, str]:
    """The ACME directory URL and the account's email address."""
    acme = r.mapping(value, path, {"server", "email"})
    server = r.field(acme, "server", path, validate.http_url, models.Tls.acme_server)
    email = r.field(acme, "email", path, validate.external_address)
    return server, email


def _check_issuer_sections(r: Reader, tls: dict[str, Any], path: str, issuer: str) -> None:
    if issuer == "certManager" and tls.get("certManager") is None:
        r.fail(path, "issuer certManager needs certManager.issuerRef")
    if issuer == "acme" and tls.get("acme") is None:
        r.fail(path, "issuer acme needs acme.email (and optionally acme.server)")
    if issuer != "certManager" and tls.get("certManager") is not None:
        r.fail(
            join(path, "certManager"), f"only allowed with issuer certManager (issuer is {issuer})"
        )
    if issuer != "acme" and tls.get("acme") is not None:
        r.fail(join(path, "acme"), f"only allowed with issuer acme (issuer is {issuer})")
