"""Owns the MTA-STS policy (RFC 8461 §3.2) served at
``https://mta-sts.<domain>/.well-known/mta-sts.txt``, its MX hosts, and the policy id of the
``_mta-sts`` TXT record (§3.1), derived from the policy text so that it changes exactly when the
policy does (dns.records publishes it).

The MX hosts are the ones the MX record names (``mx_hosts``, which dns.records uses for it):
a sending MTA refuses an MX the policy does not list once the mode is ``enforce``.
"""

from __future__ import annotations

import hashlib

from mailstack.api.models import MailDomain

POLICY_PATH = "/.well-known/mta-sts.txt"
POLICY_HOST_LABEL = "mta-sts"
# RFC 8461 §3.3: the policy is served as text/plain; a charset is allowed.
POLICY_CONTENT_TYPE = "text/plain; charset=utf-8"
ID_LENGTH = 20  # §3.1 allows 1-32 alphanumerics; hexadecimal digits are


def mx_hosts(domain: MailDomain) -> tuple[str, ...]:
    """The domain's MX hosts, most preferred first: the host name (the spec has no field for
    more)."""
    return (domain.hostname,)


def mta_sts_policy(domain: MailDomain) -> str:
    """The policy text: one field per line, each ending in CRLF (§3.2 allows CRLF or LF; CRLF is
    what the examples show), ``mx`` once per MX host."""
    sts = domain.dns.mta_sts
    lines = ["version: STSv1", f"mode: {sts.mode}"]
    lines += [f"mx: {host}" for host in mx_hosts(domain)]
    lines.append(f"max_age: {sts.max_age}")
    return "".join(f"{line}\r\n" for line in lines)


def mta_sts_id(domain: MailDomain) -> str:
    """The policy id: the first hex digits of the policy text's SHA-256, so the same policy
    keeps its id (senders do not fetch it again) and any change to it gives a new one."""
    return hashlib.sha256(mta_sts_policy(domain).encode()).hexdigest()[:ID_LENGTH]


def policy_host(domain: MailDomain) -> str:
    return f"{POLICY_HOST_LABEL}.{domain.domain}"
