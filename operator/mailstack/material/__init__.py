"""Key and certificate material: DKIM keys, the internal CA, server certificates, password hashes.

Material is taken from what already exists (Secrets read back from the cluster, or the ``--state``
directory of the CLI, which stores the same Secrets as files) and generated only when missing, so
neither a restart nor a re-render rotates a key by accident. Everything here is a pure function of
its inputs plus an explicit random source and clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailstack.material.dkim import DkimKey
from mailstack.material.errors import MaterialError
from mailstack.material.pki import CertificateAuthority, ClientCertificate, ServerCertificate


@dataclass(frozen=True)
class Material:
    """Everything secret that one MailService's render needs."""

    dkim: DkimKey
    # None when cert-manager issues the certificate into the TLS Secret itself.
    tls: ServerCertificate | None
    # The internal CA (issuer internal, and the stand-in for acme until the ACME flow lands).
    ca: CertificateAuthority | None
    # Mailbox address -> "{SCHEME}hash" for the passwd-file, sorted by address.
    password_hashes: tuple[tuple[str, str], ...] = field(default=())
    # Relay credentials (username, password) from the referenced Secret, if a relay is set.
    relay_credentials: tuple[str, str] | None = None
    # The CA certificates (PEM, written again from the parsed certificates) that vouch for the
    # relay, from the Secret its caSecretRef names; None without one (then the system's CAs).
    relay_ca: str | None = None
    # What Dovecot presents to Postfix to send mail written by Sieve scripts. Always resolved;
    # the render refuses material without it.
    mda_client: ClientCertificate | None = None
    # What Postfix presents to Dovecot's LMTP and auth service (through the agents' tunnel,
    # agent/tunnel.py), pinned there. Always resolved, like mda_client.
    mta_client: ClientCertificate | None = None

    def password_hash(self, address: str) -> str | None:
        return dict(self.password_hashes).get(address)


__all__ = [
    "CertificateAuthority",
    "ClientCertificate",
    "DkimKey",
    "Material",
    "MaterialError",
    "ServerCertificate",
]
