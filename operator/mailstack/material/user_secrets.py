"""Reading the values users keep in their own Secrets: Mailbox passwords, the relay's
credentials and CA.

Owns ``read_password``, ``relay_credentials`` and ``relay_ca``. A Secret not labelled for the
referring kind (``api.secret_access``) is not read; a missing Secret or key, or a value that
could break the line of a map it ends up in, becomes a ``Problem`` on the resource that refers
to it, never an exception. ``material.resolve`` calls these; the generated material is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from mailstack.api.errors import FieldError, Problem
from mailstack.api.models import Mailbox, MailDomain, Secret, SecretKeyRef
from mailstack.api.secret_access import MAILBOXES, MAILDOMAINS, UserKind, refusal_problem
from mailstack.api.validate import has_control_characters
from mailstack.api.validate import password as validate_password
from mailstack.material.ca_bundle import load_ca_bundle
from mailstack.material.errors import MaterialError

_Value = TypeVar("_Value")


def read_password(
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


def relay_credentials(
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


def relay_ca(dom: MailDomain, secrets: Mapping[str, Secret], problems: list[Problem]) -> str | None:
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
