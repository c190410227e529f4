"""The whole object set of one MailService: the pure function behind ``mailstack render``.

``render_stack`` is deterministic: the same MailService, Material and options give the same
objects in the same order, byte for byte once dumped. It never reads the clock, the network or the
disk; key material comes in through ``Material``.
"""

from __future__ import annotations

import base64

from mailstack.api.assemble import MailService
from mailstack.kubedoc import Obj
from mailstack.material import ClientCertificate, Material
from mailstack.render import layout
from mailstack.render.dovecot import render_dovecot_config
from mailstack.render.network import (
    render_internal_service,
    render_mda_service,
    render_mta_service,
    render_network_policies,
    render_public_service,
)
from mailstack.render.objects import RenderOptions, checksum, metadata, selector_labels
from mailstack.render.postfix import render_postfix_config, render_postfix_mda_clientcerts
from mailstack.render.rspamd import dkim_key_file, render_rspamd_config
from mailstack.render.templating import RenderError
from mailstack.render.users import render_sieve_scripts, render_users_secret_data
from mailstack.render.workloads import render_mda_statefulset, render_mta_statefulset


def _b64(data: dict[str, str]) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in sorted(data.items())}


def _config_map(service: MailService, name: str, component: str, data: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(service.domain, name, component),
        "data": dict(sorted(data.items())),
    }


def secret_object(
    service: MailService, name: str, component: str, data: dict[str, str], kind: str = "Opaque"
) -> Obj:
    """A Secret of the stack, its data given as text."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(service.domain, name, component),
        "type": kind,
        "data": _b64(data),
    }


def render_tls_objects(service: MailService, material: Material) -> list[Obj]:
    """The CA and TLS Secrets (internal issuer), or a cert-manager Certificate."""
    domain = service.domain
    names = layout.object_names(domain.name)
    if domain.tls.issuer == "certManager":
        issuer = domain.tls.cert_manager_issuer
        if issuer is None:
            raise RenderError("issuer certManager without issuerRef")
        dns_names = list(dict.fromkeys([domain.hostname, domain.domain]))
        return [
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Certificate",
                "metadata": metadata(domain, names["tls"], "tls"),
                "spec": {
                    "secretName": names["tls"],
                    # Marks the Secret cert-manager issues as this MailDomain's (``ownership``).
                    "secretTemplate": {"labels": metadata(domain, names["tls"], "tls")["labels"]},
                    "commonName": domain.hostname,
                    "dnsNames": dns_names,
                    "duration": "2160h",
                    "renewBefore": "720h",
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                    "usages": ["server auth", "digital signature", "key encipherment"],
                    "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer.group},
                },
            }
        ]
    if material.tls is None or material.ca is None:
        raise RenderError(
            f"{domain.ref}: no TLS certificate material for issuer {domain.tls.issuer}"
        )
    return [
        secret_object(
            service,
            names["ca"],
            "tls",
            {"ca.crt": material.ca.cert_pem, "ca.key": material.ca.key_pem},
        ),
        secret_object(
            service,
            names["tls"],
            "tls",
            {
                "tls.crt": material.tls.cert_pem,
                "tls.key": material.tls.key_pem,
                "ca.crt": material.tls.ca_pem,
            },
            kind="kubernetes.io/tls",
        ),
    ]


def _client(service: MailService, client: ClientCertificate | None, pod: str) -> ClientCertificate:
    if client is None:
        raise RenderError(f"{service.domain.ref}: no client certificate for the {pod.upper()}")
    return client


def render_mda_client_secret(service: MailService, material: Material) -> Obj:
    """Dovecot's certificate and key (mounted in the MDA pod), and the map of its public key
    fingerprint that Postfix trusts (mounted in the MTA pod with the certificate, not the key)."""
    client = _client(service, material.mda_client, "mda")
    names = layout.object_names(service.domain.name)
    return secret_object(
        service,
        names["mda_client"],
        "mda",
        {
            "tls.crt": client.cert_pem,
            "tls.key": client.key_pem,
            "clientcerts": render_postfix_mda_clientcerts(service, client.public_key_fingerprint()),
        },
    )


def render_mta_client_secret(service: MailService, material: Material) -> Obj:
    """Postfix's client certificate and key towards Dovecot's LMTP and auth service (mounted in
    the MTA pod; the certificate alone in the MDA pod, which pins it)."""
    client = _client(service, material.mta_client, "mta")
    names = layout.object_names(service.domain.name)
    data = {"tls.crt": client.cert_pem, "tls.key": client.key_pem}
    return secret_object(service, names["mta_client"], "mta", data)


def render_dkim_secret(service: MailService, material: Material) -> Obj:
    """``<name>-dkim``: the private key in the form rspamd loads, and the TXT value to publish."""
    domain, dkim = service.domain, material.dkim
    if dkim.selector != domain.dkim.selector:
        raise RenderError(f"{domain.ref}: DKIM key is for selector {dkim.selector}")
    data = {
        dkim_key_file(dkim.selector): dkim.rspamd_private_key(),
        f"{dkim.selector}.txt": dkim.dns_value() + "\n",
    }
    return secret_object(service, layout.object_names(domain.name)["dkim"], "dkim", data)


def render_stack(
    service: MailService, material: Material, options: RenderOptions | None = None
) -> list[Obj]:
    """Every Kubernetes object for one MailService, in apply order."""
    options = options or RenderOptions()
    domain = service.domain
    names = layout.object_names(domain.name)

    mda_client = _client(service, material.mda_client, "mda")
    postfix_files = render_postfix_config(
        service, material.relay_ca, mda_client.public_key_fingerprint(), options.cluster_networks
    )
    rspamd_files = render_rspamd_config(service)
    dovecot_files = render_dovecot_config(service)
    users = render_users_secret_data(service, material)

    objects: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(domain, names["service_account"], "service-account"),
            "automountServiceAccountToken": False,
        },
        _config_map(service, names["postfix_config"], "mta", postfix_files),
        _config_map(service, names["rspamd_config"], "mta", rspamd_files),
        _config_map(service, names["dovecot_config"], "mda", dovecot_files),
        _config_map(service, names["sieve"], "mda", render_sieve_scripts(service)),
        secret_object(service, names["users"], "users", users),
        render_dkim_secret(service, material),
        *render_tls_objects(service, material),
        render_mda_client_secret(service, material),
        render_mta_client_secret(service, material),
        render_public_service(service),
        render_mda_service(service),
        render_mta_service(service),
        *filter(None, [render_internal_service(service)]),
        render_mta_statefulset(
            service,
            options,
            checksum(postfix_files, rspamd_files),
            relay_auth="relay_passwords" in users,
        ),
        render_mda_statefulset(service, options, checksum(dovecot_files)),
        *render_network_policies(service, options.operator_namespace),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(domain, names["pdb"], "pdb"),
            # At most one of MTA and MDA is evicted at a time: while Dovecot is away, mail waits
            # in Postfix's queue; while Postfix is away, users still read their mail.
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": selector_labels(domain, None)},
            },
        },
    ]
    return objects
