"""The CRDs' ``default:`` values are the model classes' defaults (``mailstack.api.models``).

The parser takes its defaults from the models, and the API server fills in the CRD's, so the two
must be the same values. ``test_crds.test_schema_defaults_agree_with_parser_defaults`` checks that
on the documents of the test cases; this checks every default of the schemas, one by one, so a
default changed on one side only (or a new one without its model default) fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailstack.api import dns_models, models, pod_models, policy, server_models
from mailstack.api.validate import size_bytes
from tests.unit.test_crds import CRD_FILES, root_schema, walk_schema

# (kind, schema path) -> the model default the CRD's default must equal.
MODEL_DEFAULTS: dict[tuple[str, str], object] = {
    ("MailDomainPolicy", ".spec.service.loadBalancerIP"): policy.ServiceLimits.load_balancer_ip,
    ("MailDomainPolicy", ".spec.requireProof"): policy.MailDomainPolicy.require_proof,
    ("MailDomain", ".spec.limits.messageSize"): models.Limits.message_size,
    ("MailDomain", ".spec.limits.recipientsPerMessage"): models.Limits.recipients_per_message,
    ("MailDomain", ".spec.limits.perClient.smtpConnections"): models.ClientLimits.smtp_connections,
    ("MailDomain", ".spec.limits.perClient.smtpConnectionsPerMinute"): (
        models.ClientLimits.smtp_connections_per_minute
    ),
    ("MailDomain", ".spec.limits.perClient.smtpMessagesPerMinute"): (
        models.ClientLimits.smtp_messages_per_minute
    ),
    ("MailDomain", ".spec.limits.perClient.smtpRecipientsPerMinute"): (
        models.ClientLimits.smtp_recipients_per_minute
    ),
    ("MailDomain", ".spec.limits.perClient.smtpLoginsPerMinute"): (
        models.ClientLimits.smtp_logins_per_minute
    ),
    ("MailDomain", ".spec.limits.perClient.sessionsPerUser"): models.ClientLimits.sessions_per_user,
    ("MailDomain", ".spec.protocols.imap"): models.Protocols.imap,
    ("MailDomain", ".spec.protocols.pop3"): models.Protocols.pop3,
    ("MailDomain", ".spec.protocols.submission"): models.Protocols.submission,
    ("MailDomain", ".spec.protocols.submissions"): models.Protocols.submissions,
    ("MailDomain", ".spec.protocols.managesieve"): models.Protocols.managesieve,
    ("MailDomain", ".spec.relay.port"): models.Relay.port,
    ("MailDomain", ".spec.outbound.bindAddress"): models.Outbound.bind_address,
    ("MailDomain", ".spec.relay.credentialsSecretRef.usernameKey"): models.Relay.username_key,
    ("MailDomain", ".spec.relay.credentialsSecretRef.passwordKey"): models.Relay.password_key,
    ("MailDomain", ".spec.relay.caSecretRef.key"): models.Relay.default_ca_key,
    ("MailDomain", ".spec.tls.issuer"): models.Tls.issuer,
    ("MailDomain", ".spec.tls.certManager.issuerRef.kind"): models.IssuerRef.kind,
    ("MailDomain", ".spec.tls.certManager.issuerRef.group"): models.IssuerRef.group,
    ("MailDomain", ".spec.tls.acme.server"): models.Tls.acme_server,
    ("MailDomain", ".spec.dkim.selector"): models.Dkim.selector,
    ("MailDomain", ".spec.dkim.algorithm"): models.Dkim.algorithm,
    ("MailDomain", ".spec.dns.provider.rfc2136.port"): dns_models.Rfc2136Settings.port,
    ("MailDomain", ".spec.dns.provider.rfc2136.tsigAlgorithm"): (
        dns_models.Rfc2136Settings.tsig_algorithm
    ),
    ("MailDomain", ".spec.dns.provider.rfc2136.tsigSecretRef.key"): (
        dns_models.Rfc2136Settings.default_secret_key
    ),
    ("MailDomain", ".spec.dns.provider.powerdns.serverId"): dns_models.PowerDnsSettings.server_id,
    ("MailDomain", ".spec.dns.provider.powerdns.apiKeySecretRef.key"): (
        dns_models.PowerDnsSettings.default_secret_key
    ),
    ("MailDomain", ".spec.dns.provider.cloudflare.apiTokenSecretRef.key"): (
        dns_models.CloudflareSettings.default_secret_key
    ),
    ("MailDomain", ".spec.dns.provider.route53.region"): dns_models.Route53Settings.region,
    ("MailDomain", ".spec.dns.ttl"): dns_models.Dns.ttl,
    ("MailDomain", ".spec.dns.spf.policy"): dns_models.Spf.policy,
    ("MailDomain", ".spec.dns.dmarc.policy"): dns_models.Dmarc.policy,
    ("MailDomain", ".spec.dns.dmarc.pct"): dns_models.Dmarc.pct,
    ("MailDomain", ".spec.dns.dmarc.alignment.dkim"): dns_models.Dmarc.adkim,
    ("MailDomain", ".spec.dns.dmarc.alignment.spf"): dns_models.Dmarc.aspf,
    ("MailDomain", ".spec.dns.mtaSts.enabled"): dns_models.MtaSts.enabled,
    ("MailDomain", ".spec.dns.mtaSts.mode"): dns_models.MtaSts.mode,
    ("MailDomain", ".spec.dns.mtaSts.maxAge"): dns_models.MtaSts.max_age,
    ("MailDomain", ".spec.dns.tlsRpt.enabled"): dns_models.TlsRpt.enabled,
    ("MailDomain", ".spec.service.externalTrafficPolicy"): (
        models.ServiceSpec.external_traffic_policy
    ),
    ("MailDomain", ".spec.storage.mailboxes.size"): models.Storage().mailboxes.size,
    ("MailDomain", ".spec.storage.queue.size"): models.Storage().queue.size,
    ("MailDomain", ".spec.storage.retention"): models.Storage.retention,
    ("MailDomain", ".spec.spam.enabled"): models.Spam.enabled,
    ("MailDomain", ".spec.spam.thresholds.addHeader"): models.Spam.add_header_score,
    ("MailDomain", ".spec.spam.thresholds.reject"): models.Spam.reject_score,
    ("MailDomain", ".spec.spam.moveToJunk"): models.Spam.junk_folder,
    ("MailDomain", ".spec.spam.onScanFailure"): models.Spam.on_scan_failure,
    ("MailDomain", ".spec.spam.antivirus.enabled"): models.Antivirus.enabled,
    ("MailDomain", ".spec.spam.antivirus.action"): models.Antivirus.action,
    ("MailDomain", ".spec.spam.antivirus.signatures.official"): models.Signatures.official,
    ("MailDomain", ".spec.pods.tolerations[*].operator"): pod_models.Toleration.operator,
    ("Mailbox", ".spec.passwordSecretRef.key"): models.Mailbox.default_password_key,
    ("Mailbox", ".spec.keepCopy"): models.Mailbox.keep_copy,
    ("Mailbox", ".spec.suspended"): models.Mailbox.suspended,
}

# The MailServer's sections are the MailDomain's (api.parse.server), with their defaults.
_SERVER_SECTIONS = (*server_models.SERVER_FIELDS, "tls")
MODEL_DEFAULTS.update(
    {
        ("MailServer", path): value
        for (kind, path), value in list(MODEL_DEFAULTS.items())
        if kind == "MailDomain" and path.split(".")[2] in _SERVER_SECTIONS
    }
)
MODEL_DEFAULTS[("MailServer", ".spec.replicas.mta")] = server_models.Replicas.mta
MODEL_DEFAULTS[("MailServer", ".spec.replicas.mda")] = server_models.Replicas.mda

# Where the CRD spells a value otherwise than the model holds it.
ALIGNMENT_MODES = {"relaxed": "r", "strict": "s"}
AS_MODEL_VALUE: dict[str, Callable[[Any], object]] = {
    ".spec.limits.messageSize": size_bytes,
    ".spec.dns.dmarc.alignment.dkim": ALIGNMENT_MODES.__getitem__,
    ".spec.dns.dmarc.alignment.spf": ALIGNMENT_MODES.__getitem__,
}


def crd_defaults() -> dict[tuple[str, str], Any]:
    """Every ``default:`` of the two schemas but the ``{}`` that makes a section present."""
    return {
        (kind, path): node["default"]
        for kind in CRD_FILES
        for path, node in walk_schema(root_schema(kind))
        if "default" in node and not (node.get("type") == "object" and node["default"] == {})
    }


def test_every_crd_default_has_its_model_default() -> None:
    assert set(crd_defaults()) == set(MODEL_DEFAULTS)


@pytest.mark.parametrize(
    ("kind", "path"), sorted(MODEL_DEFAULTS), ids=[f"{k}{p}" for k, p in sorted(MODEL_DEFAULTS)]
)
def test_crd_default_is_the_model_default(kind: str, path: str) -> None:
    crd_value = crd_defaults()[(kind, path)]
    as_model_value = AS_MODEL_VALUE.get(path, lambda value: value)
    assert as_model_value(crd_value) == MODEL_DEFAULTS[(kind, path)]


def test_section_defaults_are_empty_objects() -> None:
    # A `default: {}` makes the API server fill in the defaults of the fields inside.
    for kind in CRD_FILES:
        for path, node in walk_schema(root_schema(kind)):
            if node.get("type") == "object" and "default" in node:
                assert node["default"] == {}, f"{kind}{path}"
