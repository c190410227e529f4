"""Resolving one MailService's material from the Secrets of its namespace.

The Secrets given include the previously rendered ones (``<name>-dkim``, ``<name>-ca``,
``<name>-tls``, ``<name>-users``): whatever in them is still valid for the current spec is reused,
and only what is missing or outdated is generated. Given the same Secrets, including the rendered
ones, the result is identical, so reconciling twice changes nothing. Faults in user-supplied
Secrets (Mailbox passwords, relay credentials and CA) become ``Problem``s on the resource that
refers to them, and so does a user Secret not labelled for its kind (``api.secret_access``):
nothing is read from it. Faults in operator-owned Secrets only mean that part is generated again.
The controller passes only the Secrets that are the MailDomain's own (``controller.ownership``):
one of these names made by someone else is never read, nor generated into (``NameTaken``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal, TypeVar

from mailstack.api.assemble import MailService
from mailstack.api.errors import Problem
from mailstack.api.models import Mailbox, MailDomain, Secret, ServerRef
from mailstack.material import Material
from mailstack.material.dkim import DkimKey, generate_dkim_key, load_dkim_key
from mailstack.material.errors import MaterialError
from mailstack.material.passwords import DEFAULT_ROUNDS, parse_passwd_file, password_hash
from mailstack.material.pki import (
    CertificateAuthority,
    ClientCertificate,
    ServerCertificate,
    generate_ca,
    generate_client_certificate,
    issue_server_certificate,
    load_ca,
    load_client_certificate,
    load_server_certificate,
    needs_renewal,
)
from mailstack.material.user_secrets import read_password, relay_ca, relay_credentials

RandomBytes = Callable[[int], bytes]
_Pair = TypeVar("_Pair", CertificateAuthority, ClientCertificate)

# Names of the operator-owned Secrets and their keys (``<name>`` is the MailDomain's name).
CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
TLS_CERT_KEY = "tls.crt"  # the kubernetes.io/tls keys, which cert-manager writes too
TLS_KEY_KEY = "tls.key"
PASSWD_KEY = "passwd"


def dkim_secret_name(name: str) -> str:
    return f"{name}-dkim"


def dkim_key_name(selector: str) -> str:
    """The key in the DKIM Secret: the file rspamd's ``path`` setting points at."""
    return f"{selector}.key"


def server_dkim_key_name(domain: str, selector: str) -> str:
    """The key of one domain's DKIM key in a shared server's ``<server>-dkim``: rspamd's
    ``path`` pattern ``$domain.$selector.key`` finds it by the From: domain and the mapped
    selector. The server's own key (its host name's) is kept there under this name too."""
    return f"{domain}.{selector}.key"


def is_server_host(dom: MailDomain) -> bool:
    """Whether ``dom`` is a shared server seen as the domain whose stack it runs
    (``render.server.server_host``: its ``server_ref`` names itself)."""
    return dom.server_ref == ServerRef(dom.namespace, dom.name)


def ca_secret_name(name: str) -> str:
    return f"{name}-ca"


def tls_secret_name(name: str) -> str:
    return f"{name}-tls"


def users_secret_name(name: str) -> str:
    return f"{name}-users"


def mda_client_secret_name(name: str) -> str:
    return f"{name}-mda-client"


def mta_client_secret_name(name: str) -> str:
    return f"{name}-mta-client"


def material_secret_names(name: str) -> list[str]:
    """The operator-owned Secrets the material is read back from (and written to)."""
    return [
        *domain_material_secret_names(name),
        mda_client_secret_name(name),
        mta_client_secret_name(name),
    ]


def domain_material_secret_names(name: str) -> list[str]:
    """The Secrets a MailDomain on a shared server keeps in its own namespace, and its material
    is read back from (``resolve_domain_material``): its key, CA, certificate and passwd lines.
    The server's Secrets are made of them, never read back for them (docs/architecture.md)."""
    return [
        dkim_secret_name(name),
        ca_secret_name(name),
        tls_secret_name(name),
        users_secret_name(name),
    ]


def tls_names(domain: MailDomain) -> list[str]:
    """The names the server certificate covers: the hostname (CN) first, then the domain."""
    return list(dict.fromkeys([domain.hostname, domain.domain]))


def resolve_material(
    service: MailService,
    secrets: Mapping[str, Secret],
    now: datetime,
    random_bytes: RandomBytes = os.urandom,
    *,
    password_rounds: int = DEFAULT_ROUNDS,
) -> tuple[Material, list[Problem]]:
    """The Material for ``service`` and the problems found in the Secrets it refers to."""
    dom = service.domain
    own, problems = resolve_domain_material(
        service, secrets, now, random_bytes, password_rounds=password_rounds
    )
    material = Material(
        dkim=own.dkim,
        tls=own.tls,
        ca=own.ca,
        password_hashes=own.password_hashes,
        relay_credentials=relay_credentials(dom, secrets, problems),
        relay_ca=relay_ca(dom, secrets, problems),
        mda_client=_resolve_client(dom, secrets, now, random_bytes, "mda"),
        mta_client=_resolve_client(dom, secrets, now, random_bytes, "mta"),
    )
    return material, problems


def resolve_domain_material(
    service: MailService,
    secrets: Mapping[str, Secret],
    now: datetime,
    random_bytes: RandomBytes = os.urandom,
    *,
    password_rounds: int = DEFAULT_ROUNDS,
) -> tuple[Material, list[Problem]]:
    """What is the domain's own whatever serves it: its DKIM key, its CA and certificate
    (issuer internal or acme) and its Mailboxes' password hashes, read back from its
    ``domain_material_secret_names`` and generated where missing. All a MailDomain on a shared
    server has: the relay and the pods' client certificates are the server's."""
    dom = service.domain
    problems: list[Problem] = []
    dkim = _resolve_dkim(dom, secrets)
    ca: CertificateAuthority | None = None
    tls: ServerCertificate | None = None
    if dom.tls.issuer in ("internal", "acme"):
        # acme uses the internal CA until the ACME flow exists, so the service has TLS from the
        # first minute either way.
        ca = _resolve_ca(dom, secrets, now, random_bytes)
        tls = _resolve_tls(dom, ca, secrets, now, random_bytes)
    hashes = _resolve_passwords(service, secrets, random_bytes, password_rounds, problems)
    material = Material(dkim=dkim, tls=tls, ca=ca, password_hashes=tuple(sorted(hashes.items())))
    return material, problems


def material_secrets(name: str, material: Material) -> dict[str, dict[str, bytes]]:
    """The data of the ``<name>-dkim``, ``<name>-ca``, ``<name>-tls``, ``<name>-mda-client`` and
    ``<name>-mta-client`` Secrets to render.

    Exactly the layout ``resolve_material`` reads back. The DKIM key is stored in the form rspamd
    loads (``DkimKey.rspamd_private_key``), so the Secret can be mounted as rspamd's key file.
    The ``<name>-users`` Secret (the passwd-file) belongs to the renderer.
    """
    dkim = material.dkim
    result: dict[str, dict[str, bytes]] = {
        dkim_secret_name(name): {
            dkim_key_name(dkim.selector): dkim.rspamd_private_key().encode("ascii"),
        }
    }
    if material.ca is not None:
        result[ca_secret_name(name)] = {
            CA_CERT_KEY: material.ca.cert_pem.encode("ascii"),
            CA_KEY_KEY: material.ca.key_pem.encode("ascii"),
        }
    if material.tls is not None:
        result[tls_secret_name(name)] = {
            TLS_CERT_KEY: material.tls.cert_pem.encode("ascii"),
            TLS_KEY_KEY: material.tls.key_pem.encode("ascii"),
            CA_CERT_KEY: material.tls.ca_pem.encode("ascii"),
        }
    clients = (
        (mda_client_secret_name, material.mda_client),
        (mta_client_secret_name, material.mta_client),
    )
    for secret_name, client in clients:
        if client is not None:
            result[secret_name(name)] = {
                TLS_CERT_KEY: client.cert_pem.encode("ascii"),
                TLS_KEY_KEY: client.key_pem.encode("ascii"),
            }
    return result


def _resolve_dkim(dom: MailDomain, secrets: Mapping[str, Secret]) -> DkimKey:
    selector, algorithm = dom.dkim.selector, dom.dkim.algorithm
    key = server_dkim_key_name(dom.domain, selector) if is_server_host(dom) else None
    stored = _get(secrets, dkim_secret_name(dom.name), key or dkim_key_name(selector))
    if stored is not None:
        try:
            return load_dkim_key(selector, algorithm, stored)
        except MaterialError:
            # Another algorithm under the same selector, or a damaged key: the spec wins. The new
            # key gets published under the same selector by the DNS step.
            pass
    return generate_dkim_key(selector, algorithm)


def _stored_pair(
    secrets: Mapping[str, Secret],
    name: str,
    keys: tuple[str, str],
    load: Callable[[bytes, bytes], _Pair],
) -> _Pair | None:
    """A certificate and key kept in Secret ``name``, or None when missing or damaged (then a
    new pair is generated)."""
    cert, key = _get(secrets, name, keys[0]), _get(secrets, name, keys[1])
    if cert is None or key is None:
        return None
    try:
        return load(cert, key)
    except MaterialError:
        return None


def _resolve_ca(
    dom: MailDomain, secrets: Mapping[str, Secret], now: datetime, random_bytes: RandomBytes
) -> CertificateAuthority:
    keys = (CA_CERT_KEY, CA_KEY_KEY)
    stored = _stored_pair(secrets, ca_secret_name(dom.name), keys, load_ca)
    if stored is not None:
        return stored
    return generate_ca(f"mailstack CA for {dom.domain}", now, random_bytes=random_bytes)


def _resolve_client(
    dom: MailDomain,
    secrets: Mapping[str, Secret],
    now: datetime,
    random_bytes: RandomBytes,
    pod: Literal["mda", "mta"],
) -> ClientCertificate:
    """The identity of the MDA or the MTA pod towards the other one.

    A new pair gets pinned by the same render, so Postfix and Dovecot agree."""
    name = (mda_client_secret_name if pod == "mda" else mta_client_secret_name)(dom.name)
    stored = _stored_pair(secrets, name, (TLS_CERT_KEY, TLS_KEY_KEY), load_client_certificate)
    if stored is not None:
        return stored
    return generate_client_certificate(f"{dom.name}-{pod}", now, random_bytes=random_bytes)


def _resolve_tls(
    dom: MailDomain,
    ca: CertificateAuthority,
    secrets: Mapping[str, Secret],
    now: datetime,
    random_bytes: RandomBytes,
) -> ServerCertificate:
    names = tls_names(dom)
    name = tls_secret_name(dom.name)
    cert = _get(secrets, name, TLS_CERT_KEY)
    key = _get(secrets, name, TLS_KEY_KEY)
    ca_pem = _get(secrets, name, CA_CERT_KEY)
    if cert is not None and key is not None and ca_pem is not None:
        try:
            existing = load_server_certificate(cert, key, ca_pem)
        except MaterialError:
            pass
        else:
            if not needs_renewal(existing, names, ca, now):
                return existing
    return issue_server_certificate(ca, names, now, random_bytes=random_bytes)


def _resolve_passwords(
    service: MailService,
    secrets: Mapping[str, Secret],
    random_bytes: RandomBytes,
    rounds: int,
    problems: list[Problem],
) -> dict[str, str]:
    previous_text = _get(secrets, users_secret_name(service.domain.name), PASSWD_KEY)
    previous: dict[str, str] = {}
    if previous_text is not None:
        previous = parse_passwd_file(previous_text.decode("utf-8", errors="replace"))
    hashes: dict[str, str] = {}
    for box in service.mailboxes:
        plain = read_password(box, secrets, problems)
        if plain is None:
            continue
        try:
            hashes[box.address] = password_hash(
                plain, previous.get(box.address), random_bytes, rounds
            )
        except MaterialError as err:
            problems.append(Problem(box.ref, "spec.passwordSecretRef", _in(box, err.message)))
    return hashes


def _get(secrets: Mapping[str, Secret], name: str, key: str) -> bytes | None:
    secret = secrets.get(name)
    return None if secret is None else secret.get(key)


def _in(box: Mailbox, message: str) -> str:
    return f"Secret {box.password.name} key {box.password.key}: {message}"
