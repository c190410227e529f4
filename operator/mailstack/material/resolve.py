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
from mailstack.api.errors import FieldError, Problem
from mailstack.api.models import Mailbox, MailDomain, Secret, SecretKeyRef
from mailstack.api.secret_access import MAILBOXES, MAILDOMAINS, UserKind, refusal_problem
from mailstack.api.validate import has_control_characters
from mailstack.api.validate import password as validate_password
from mailstack.material import Material
from mailstack.material.ca_bundle import load_ca_bundle
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

RandomBytes = Callable[[int], bytes]
_Pair = TypeVar("_Pair", CertificateAuthority, ClientCertificate)
_Value = TypeVar("_Value")

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
        dkim_secret_name(name),
        ca_secret_name(name),
        tls_secret_name(name),
        users_secret_name(name),
        mda_client_secret_name(name),
        mta_client_secret_name(name),
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
    relay = _resolve_relay(dom, secrets, problems)
    relay_ca = _resolve_relay_ca(dom, secrets, problems)
    material = Material(
        dkim=dkim,
        tls=tls,
        ca=ca,
        password_hashes=tuple(sorted(hashes.items())),
        relay_credentials=relay,
        relay_ca=relay_ca,
        mda_client=_resolve_client(dom, secrets, now, random_bytes, "mda"),
        mta_client=_resolve_client(dom, secrets, now, random_bytes, "mta"),
    )
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
    stored = _get(secrets, dkim_secret_name(dom.name), dkim_key_name(selector))
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
        plain = _read_password(box, secrets, problems)
        if plain is None:
            continue
        try:
            hashes[box.address] = password_hash(
                plain, previous.get(box.address), random_bytes, rounds
            )
        except MaterialError as err:
            problems.append(Problem(box.ref, "spec.passwordSecretRef", _in(box, err.message)))
    return hashes


def _read_password(
    box: Mailbox, secrets: Mapping[str, Secret], problems: list[Problem]
) -> str | None:
    path, load = "spec.passwordSecretRef", _password_text
    return _read_user_value(secrets, box.password, box.ref, path, MAILBOXES, load, problems)


def _password_text(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FieldError("the password is not UTF-8 text") from None
    return validate_password(text)


def _read_user_value(
    secrets: Mapping[str, Secret],
    ref: SecretKeyRef,
    owner: str,
    path: str,
    kind: UserKind,
    load: Callable[[bytes], _Value],
    problems: list[Problem],
) -> _Value | None:
    """What ``load`` makes of the value a user's Secret holds under ``ref``, or None after
    noting on ``owner`` (a resource of ``kind``) why not (``load`` raises ``FieldError`` or
    ``MaterialError``)."""
    raw = _lookup(secrets, ref.name, ref.key, kind, owner, path)
    if isinstance(raw, Problem):
        problems.append(raw)
        return None
    try:
        return load(raw)
    except (FieldError, MaterialError) as err:
        problems.append(Problem(owner, path, f"Secret {ref.name} key {ref.key}: {err.message}"))
        return None


def _resolve_relay(
    dom: MailDomain, secrets: Mapping[str, Secret], problems: list[Problem]
) -> tuple[str, str] | None:
    relay = dom.relay
    if relay is None or relay.credentials_secret is None:
        return None
    path = "spec.relay.credentialsSecretRef"
    secret_name = relay.credentials_secret
    refused = refusal_problem(secrets, secret_name, MAILDOMAINS, dom.ref, path)
    if refused is not None:  # said once, not once per key
        problems.append(refused)
        return None
    values: list[str] = []
    for key, what in ((relay.username_key, "username"), (relay.password_key, "password")):
        raw = _lookup(secrets, secret_name, key, MAILDOMAINS, dom.ref, path)
        if isinstance(raw, Problem):
            problems.append(raw)
            continue
        message = _relay_value_problem(raw, what)
        if message is not None:
            problems.append(Problem(dom.ref, path, f"Secret {secret_name} key {key}: {message}"))
            continue
        values.append(raw.decode("utf-8"))
    if len(values) != 2:
        return None
    return values[0], values[1]


def _resolve_relay_ca(
    dom: MailDomain, secrets: Mapping[str, Secret], problems: list[Problem]
) -> str | None:
    ref = dom.relay.ca if dom.relay is not None else None
    if ref is None:
        return None
    path = "spec.relay.caSecretRef"
    return _read_user_value(secrets, ref, dom.ref, path, MAILDOMAINS, load_ca_bundle, problems)


def _relay_value_problem(raw: bytes, what: str) -> str | None:
    # Both values end up in a Postfix sasl_passwd map line "[host]:port user:password": a line
    # break would start a new entry, and the user name ends at the first ':' or blank.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"the {what} is not UTF-8 text"
    if not text:
        return f"the {what} is empty"
    if has_control_characters(text):
        return f"the {what} contains a newline or another control character"
    if what == "username" and (":" in text or any(c.isspace() for c in text)):
        return "the username contains ':' or whitespace"

    if text != text.strip():
        # Postfix trims map values, so leading or trailing blanks would be silently lost.
        return f"the {what} starts or ends with whitespace"
    return None


def _lookup(
    secrets: Mapping[str, Secret], name: str, key: str, kind: UserKind, owner: str, path: str
) -> bytes | Problem:
    """The value, or the Problem of ``owner``'s field ``path`` saying what is missing or why it
    may not be used by a resource of ``kind`` (the ``mailstack.dev/usable-by`` label)."""
    refused = refusal_problem(secrets, name, kind, owner, path)
    if refused is not None:
        return refused
    value = secrets[name].get(key)
    if value is None:
        return Problem(owner, path, f"Secret {name} has no key {key}")
    return value


def _get(secrets: Mapping[str, Secret], name: str, key: str) -> bytes | None:
    secret = secrets.get(name)
    return None if secret is None else secret.get(key)


def _in(box: Mailbox, message: str) -> str:
    return f"Secret {box.password.name} key {box.password.key}: {message}"
