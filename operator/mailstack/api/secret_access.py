"""Which user Secrets a MailDomain or a Mailbox may use: the ``mailstack.dev/usable-by`` label.

Owns the opt-in rule against the confused deputy. The operator reads Secrets with its own
account, so without a rule "may create a MailDomain" would mean "may make the operator read any
Secret of the namespace" (and send it to a relay or DNS server of one's choice). A Secret a
resource refers to is therefore used only when its owner labelled it for that kind of resource:

    mailstack.dev/usable-by: maildomains             (relay credentials and CA, DNS credentials)
    mailstack.dev/usable-by: mailboxes               (Mailbox passwords)
    mailstack.dev/usable-by: maildomains_mailboxes   (both; any order)

A label value cannot hold a comma, so the kinds are joined with ``_``. Other words in the value
grant nothing. The operator-owned Secrets (``material.resolve.material_secret_names``) are not
referred to by users and are not checked. The ``ValidatingAdmissionPolicy`` of the chart adds the
other half: whoever creates the reference must be allowed to ``get`` the Secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from mailstack.api.errors import Problem
from mailstack.api.models import Secret

USABLE_BY_LABEL: Final = "mailstack.dev/usable-by"
SEPARATOR: Final = "_"
MAILDOMAINS: Final = "maildomains"
MAILBOXES: Final = "mailboxes"
UserKind = Literal["maildomains", "mailboxes"]
# Problem.kind of a reference to a Secret the operator does not see (Problem.subject: its name):
# ``pipeline`` tells a Secret refused for a file error of its own apart by this, not by words.
SECRET_NOT_FOUND: Final = "SecretNotFound"


def usable_by(labels: Mapping[str, object] | None) -> frozenset[str]:
    """The kinds a Secret's labels allow to use it (empty without the label)."""
    value = (labels or {}).get(USABLE_BY_LABEL)
    if not isinstance(value, str):
        return frozenset()
    return frozenset(word for word in value.split(SEPARATOR) if word in (MAILDOMAINS, MAILBOXES))


def label_command(name: str, kinds: frozenset[str]) -> str:
    """The kubectl command that labels Secret ``name`` for ``kinds``."""
    value = SEPARATOR.join(sorted(kinds, reverse=True))  # maildomains before mailboxes
    return f"kubectl label --overwrite secret {name} {USABLE_BY_LABEL}={value}"


def refusal(secrets: Mapping[str, Secret], name: str, kind: UserKind) -> str | None:
    """Why a resource of ``kind`` may not use Secret ``name``, or None when it may.

    A Secret that is absent may exist without the label: the operator watches only labelled
    Secrets, so in a cluster it cannot tell the two apart, and the message says both.
    """
    secret = secrets.get(name)
    if secret is None:
        return (
            f"Secret {name} not found (the operator reads only Secrets labelled "
            f"{USABLE_BY_LABEL}; if it exists: {label_command(name, frozenset({kind}))})"
        )
    if kind in secret.usable_by:
        return None
    if secret.usable_by:
        now = SEPARATOR.join(sorted(secret.usable_by, reverse=True))
        found = f"its label {USABLE_BY_LABEL}={now} does not include {kind}"
    else:
        found = f"it has no label {USABLE_BY_LABEL}"
    command = label_command(name, secret.usable_by | {kind})
    return f"Secret {name} may not be used by {kind}: {found} (to allow it: {command})"


def refusal_problem(
    secrets: Mapping[str, Secret], name: str, kind: UserKind, document: str, path: str
) -> Problem | None:
    """``refusal`` as the Problem of ``document``'s field ``path``, marked ``SECRET_NOT_FOUND``
    when the Secret is absent."""
    message = refusal(secrets, name, kind)
    if message is None:
        return None
    missing = SECRET_NOT_FOUND if name not in secrets else ""
    return Problem(document, path, message, kind=missing, subject=name)
