"""Errors of the DNS side, each with a one-line reason fit for stderr and a status condition.

``DnsConfigError``: the MailDomain or its Secrets cannot drive the provider (missing key, bad TSIG
secret). ``ProviderError``: the provider failed (unreachable, timeout, 5xx, refused change);
``CredentialsError`` narrows it to refused credentials (TSIG BADKEY/BADSIG, HTTP 401/403),
``ProviderTimeoutError`` to a provider that did not answer in time (a call's timeout or the
publication's deadline), ``HostRefusedError`` to a host that resolved to an address the
MailDomain may not reach (``providers.reach.HostGuard``).
``UnsafePlanError``: a plan over the safety threshold, not forced.
"""

from __future__ import annotations


class DnsError(Exception):
    """Base: ``str(err)`` is the one-line reason."""

    reason = "DNSError"  # a CamelCase condition reason


class DnsConfigError(DnsError):
    reason = "DNSConfigInvalid"


class ProviderError(DnsError):
    reason = "DNSProviderFailed"


class CredentialsError(ProviderError):
    reason = "DNSCredentialsRefused"


class UnsafePlanError(DnsError):
    reason = "DNSPlanUnsafe"


class ProviderTimeoutError(ProviderError):
    reason = "DNSProviderTimeout"


class HostRefusedError(ProviderError):
    reason = "DNSHostNotAllowed"
