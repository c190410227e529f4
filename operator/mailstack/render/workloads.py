"""The two StatefulSets: ``<name>-mta`` (postfix + rspamd, and clamd + freshclam with
``spec.spam.antivirus``: ``render.clamav``) and ``<name>-mda`` (dovecot).

Every container runs ``mailstack agent <daemon>`` from the mail image. Config comes from mounted
ConfigMaps and Secrets; the pod templates carry a checksum of the ConfigMaps, so a changed spec
rolls the pods, while account and certificate changes (Secrets) are reloaded in place by the agent.
They carry no operator version: an operator upgrade rolls the pods only if the image changes (or
the operator's mail pod defaults do). Resources, scheduling and extra pod metadata come from
``render.pod_settings``.
"""

from __future__ import annotations

from mailstack.api.assemble import MailService
from mailstack.api.pod_models import MailPods
from mailstack.kubedoc import Obj
from mailstack.render import layout
from mailstack.render.clamav import clamav_containers, clamav_volumes
from mailstack.render.containers import (
    config_map_volume,
    container,
    empty_dir,
    mount,
    port,
    secret_volume,
)
from mailstack.render.forwarding import FORWARDING_DIR, FORWARDING_MAP_KEY
from mailstack.render.objects import (
    CHECKSUM_ANNOTATION,
    STATEFULSET_REPLICAS,
    RenderOptions,
    metadata,
    pod_labels,
    selector_labels,
)
from mailstack.render.pod_settings import (
    container_resources,
    pod_settings,
    scheduling,
    template_metadata,
)
from mailstack.render.rspamd import dkim_key_file
from mailstack.render.server_paths import DOMAIN_TLS_DIR, VIRTUAL_DOMAINS_KEY, domain_tls_secret

# The capabilities the postfix container adds back after dropping all. Postfix runs as root:
# its master and each of its daemons switch to the postfix user themselves (set_ugid: setgid,
# setgroups, seteuid/setuid), which nothing but root may do. CHOWN, DAC_OVERRIDE and FOWNER
# were each taken away under mailstack up (which applies the securityContext) and the stack
# failed as said; the others are the calls named (KILL: seen in a trace of master stopping).
POSTFIX_CAPABILITIES = [
    # `postfix post-install create-missing` (a new queue volume) and the agent give folders to
    # the postfix user.
    "CHOWN",
    # Root processes (master; smtpd before it drops privileges, reaching tlsmgr and postlogd)
    # use the sockets in the queue's private/ (postfix, 0700) and public/ (postfix:postdrop,
    # 0710) folders: without it STARTTLS fails ("TLS not available due to local problem").
    "DAC_OVERRIDE",
    # post-install sets the modes of queue folders it already gave to postfix; the agent sets
    # the mode of /var/lib/postfix again when the container restarts.
    "FOWNER",
    # master stops its daemons (user postfix) with SIGTERM to its process group.
    "KILL",
    # SMTP on 25 (587 and 465 are Dovecot's, in the MDA pod).
    "NET_BIND_SERVICE",
    # master and every daemon switch to the postfix user and group.
    "SETGID",
    "SETUID",
]


# glibc's malloc raises its trim and mmap thresholds as large blocks are freed, so what rspamd's
# hs_helper frees after checking its hyperscan cache stays in that (otherwise idle) process for
# good. Pinning both at glibc's initial 128 KiB hands such memory back (about 3 MB per MTA pod).
RSPAMD_ENV = {
    "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072:glibc.malloc.mmap_threshold=131072"
}


def enabled_public_ports(service: MailService, component: str | None = None) -> list[layout.Port]:
    """The public ports the MailDomain's ``protocols`` switch on (SMTP on 25 always), of one
    component ("mta" or "mda") or of both."""
    return [
        port
        for port in layout.PUBLIC_PORTS
        if port.enabled_by(service.domain.protocols) and component in (None, port.component)
    ]


def internal_ports(service: MailService, component: str | None = None) -> list[layout.Port]:
    """The listeners without PROXY beside the enabled public ports but 25
    (``layout.internal_port``), with the ProxyProtocol exposure only: for in-cluster clients,
    through ``<name>-internal``."""
    if service.domain.service.exposure != "ProxyProtocol":
        return []
    return [
        layout.internal_port(port)
        for port in enabled_public_ports(service, component)
        if port is not layout.SMTP_PORT
    ]


def _public_port(service: MailService, entry: layout.Port) -> Obj:
    """A public container port; with the HostPort exposure bound on the node too."""
    declared = port(entry)
    if service.domain.service.exposure == "HostPort":
        declared["hostPort"] = entry.number
    return declared


def _claim(domain_labels: dict[str, str], name: str, size: str, storage_class: str | None) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name, "labels": domain_labels}, "spec": spec}


def _statefulset(
    service: MailService,
    settings: MailPods,
    component: str,
    governing_service: str,
    pod_spec: Obj,
    claims: list[Obj],
    config_checksum: str,
) -> Obj:
    domain = service.domain
    names = layout.object_names(domain.name)
    retention = domain.storage.retention
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(domain, names[component], component),
        "spec": {
            "replicas": STATEFULSET_REPLICAS,
            "serviceName": governing_service,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector_labels(domain, component)},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": retention,
                "whenScaled": "Retain",
            },
            "template": {
                "metadata": template_metadata(
                    settings,
                    pod_labels(domain, component),
                    {CHECKSUM_ANNOTATION: config_checksum},
                ),
                "spec": pod_spec,
            },
            "volumeClaimTemplates": claims,
        },
    }


def _pod_spec(
    service: MailService,
    settings: MailPods,
    containers: list[Obj],
    volumes: list[Obj],
    fs_group: int,
    unprivileged_ports_from: int | None = None,
) -> Obj:
    names = layout.object_names(service.domain.name)
    context: Obj = {
        "fsGroup": fs_group,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if unprivileged_ports_from is not None:
        context["sysctls"] = [
            {"name": "net.ipv4.ip_unprivileged_port_start", "value": str(unprivileged_ports_from)}
        ]
    return {
        "serviceAccountName": names["service_account"],
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # Postfix finishes the deliveries in progress; Dovecot flushes its indexes.
        "terminationGracePeriodSeconds": 60,
        "securityContext": context,
        "containers": containers,
        "volumes": volumes,
        **scheduling(settings),
    }


def render_mta_statefulset(
    service: MailService, options: RenderOptions, config_checksum: str, relay_auth: bool
) -> Obj:
    domain = service.domain
    names = layout.object_names(domain.name)
    settings = pod_settings(service, options)
    mta_ports = enabled_public_ports(service, "mta")
    shared = domain.server_ref is not None  # a MailServer's stack (render.server)
    user_keys = ["virtual_mailboxes", "virtual_aliases", "sender_logins"]
    guard_keys = [FORWARDING_MAP_KEY]
    if shared:
        user_keys.append(VIRTUAL_DOMAINS_KEY)
        guard_keys.append(VIRTUAL_DOMAINS_KEY)  # rspamd's own domains
    if relay_auth:
        user_keys.append("relay_passwords")
    postfix = container(
        "postfix",
        options,
        [
            *[_public_port(service, p) for p in mta_ports],
            *[port(p) for p in internal_ports(service, "mta")],
            port(layout.MDA_SUBMIT_PORT),
            port(layout.MDA_RELAY_PORT),
        ],
        [
            mount("postfix-config", layout.POSTFIX_CONFIG_DIR),
            mount("users", layout.USERS_DIR),
            mount("tls", layout.TLS_DIR),
            *_domain_tls_mounts(shared),
            mount("mda-client", layout.MDA_CLIENT_DIR),
            mount("mta-client", layout.MTA_CLIENT_DIR),
            mount("queue", layout.QUEUE_VOLUME, read_only=False),
            mount("postfix-data", layout.POSTFIX_DATA_DIR, read_only=False),
            mount("milter", layout.MILTER_DIR, read_only=False),
            mount("policy-sockets", layout.POLICY_SOCKET_DIR, read_only=False),
            mount("tmp", "/tmp", read_only=False),
        ],
        container_resources(settings, "postfix"),
        POSTFIX_CAPABILITIES,
    )
    rspamd = container(
        "rspamd",
        options,
        [],
        [
            mount("rspamd-config", f"{layout.RSPAMD_CONFIG_DIR}/local.d"),
            mount("dkim", layout.DKIM_DIR),
            # Where mail forwards outside the server (render/forwarding.py): rspamd.lua reads
            # the map again within 10 s of a change, without a reload.
            mount("forwarding", FORWARDING_DIR),
            mount("milter", layout.MILTER_DIR, read_only=False),
            # rspamd's compiled regexp cache takes ~12 s to build: keep it on the queue volume.
            # Not the "rspamd" folder of earlier versions, which root made rspamd's (another
            # uid, mode 0750): the kubelet makes this one with the volume's mode and fsGroup.
            mount("queue", layout.RSPAMD_DB_DIR, read_only=False, sub_path="rspamd-db"),
            mount("rspamd-run", layout.RSPAMD_RUN_DIR, read_only=False),
            mount("tmp", "/tmp", read_only=False),
        ],
        container_resources(settings, "rspamd"),
        [],  # runs as _rspamd: nothing needs root, no capability
        env=RSPAMD_ENV,
        run_as=(layout.RSPAMD_UID, layout.RSPAMD_GID),
    )
    volumes = [
        config_map_volume("postfix-config", names["postfix_config"]),
        config_map_volume("rspamd-config", names["rspamd_config"]),
        secret_volume("users", names["users"], user_keys),
        secret_volume("forwarding", names["users"], guard_keys),
        secret_volume("tls", names["tls"], ["tls.crt", "tls.key", "ca.crt"]),
        *_domain_tls_volumes(domain.name, shared),
        # The MDA's certificate and the fingerprint Postfix trusts, not the key.
        secret_volume("mda-client", names["mda_client"], ["clientcerts", "tls.crt"]),
        secret_volume("mta-client", names["mta_client"], ["tls.crt", "tls.key"]),
        # The key only: a key someone else put in the Secret never reaches the pod. A server's
        # keys come and go with its domains: the whole Secret, which only the operator writes.
        secret_volume(
            "dkim", names["dkim"], None if shared else [dkim_key_file(domain.dkim.selector)]
        ),
        empty_dir("postfix-data"),
        empty_dir("milter"),
        empty_dir("policy-sockets", memory=True),
        empty_dir("rspamd-run", memory=True),
        empty_dir("tmp"),
    ]
    containers = [postfix, rspamd]
    if domain.spam.antivirus.enabled:
        containers += clamav_containers(options, settings)
        volumes += clamav_volumes(names["rspamd_config"])
    pod = _pod_spec(service, settings, containers, volumes, layout.RSPAMD_GID)
    claims = [
        _claim(
            selector_labels(domain, "mta"),
            "queue",
            domain.storage.queue.size,
            domain.storage.queue.storage_class_name,
        )
    ]
    return _statefulset(service, settings, "mta", names["service"], pod, claims, config_checksum)


def _domain_tls_mounts(shared: bool) -> list[Obj]:
    """A shared server's domain certificates (render.server_domains), in both pods."""
    return [mount("domain-tls", DOMAIN_TLS_DIR)] if shared else []


def _domain_tls_volumes(name: str, shared: bool) -> list[Obj]:
    """Mounted whole: the files come and go with the domains, and an ``items`` list would
    change the pod template with each."""
    return [secret_volume("domain-tls", domain_tls_secret(name))] if shared else []


def _tunnel_sessions(service: MailService) -> str:
    """``layout.TUNNEL_SESSIONS_ENV`` for the MDA's agent (render.postfix.tunnel_sessions)."""
    from mailstack.render.postfix import tunnel_sessions_env  # render.postfix imports us

    return tunnel_sessions_env(service)


def render_mda_statefulset(
    service: MailService, options: RenderOptions, config_checksum: str
) -> Obj:
    domain = service.domain
    names = layout.object_names(domain.name)
    settings = pod_settings(service, options)
    mda_ports = enabled_public_ports(service, "mda")
    dovecot = container(
        "dovecot",
        options,
        [
            *[_public_port(service, p) for p in mda_ports],
            *[port(p) for p in internal_ports(service, "mda")],
            port(layout.LMTP_PORT),
        ],
        [
            mount("dovecot-config", layout.DOVECOT_CONFIG_DIR),
            mount("users", layout.USERS_DIR),
            mount("sieve", layout.SIEVE_DIR),
            mount("tls", layout.TLS_DIR),
            *_domain_tls_mounts(domain.server_ref is not None),
            mount("mda-client", layout.MDA_CLIENT_DIR),
            mount("mta-client", layout.MTA_CLIENT_DIR),
            mount("mail", layout.MAIL_DIR, read_only=False),
            mount("dovecot-state", layout.DOVECOT_STATE_DIR, read_only=False),
            mount("dovecot-run", layout.DOVECOT_RUN_DIR, read_only=False),
            mount("tmp", "/tmp", read_only=False),
        ],
        container_resources(settings, "dovecot"),
        [],  # runs as vmail, every process of it: no capability
        run_as=(layout.VMAIL_UID, layout.VMAIL_GID),
        # How many sessions its tunnel carries (agent/tunnel.py), from Postfix's limits.
        env={layout.TUNNEL_SESSIONS_ENV: _tunnel_sessions(service)},
    )
    volumes = [
        config_map_volume("dovecot-config", names["dovecot_config"]),
        config_map_volume("sieve", names["sieve"]),
        secret_volume("users", names["users"], ["passwd"]),
        secret_volume("tls", names["tls"], ["tls.crt", "tls.key", "ca.crt"]),
        *_domain_tls_volumes(domain.name, domain.server_ref is not None),
        secret_volume("mda-client", names["mda_client"], ["tls.crt", "tls.key"]),
        # The certificate the agent's LMTP tunnel pins (agent/tunnel.py), not the key.
        secret_volume("mta-client", names["mta_client"], ["tls.crt"]),
        empty_dir("dovecot-state"),
        empty_dir("dovecot-run", memory=True),
        empty_dir("tmp"),
    ]
    # Dovecot, not root, listens on ports below 1024 (LMTP 24, IMAP 143 ...): the pod's own
    # network namespace lets it, a safe sysctl under every Pod Security level.
    lowest = min(port["containerPort"] for port in dovecot["ports"])
    pod = _pod_spec(
        service, settings, [dovecot], volumes, layout.DOVECOT_GID, unprivileged_ports_from=lowest
    )
    claims = [
        _claim(
            selector_labels(domain, "mda"),
            "mail",
            domain.storage.mailboxes.size,
            domain.storage.mailboxes.storage_class_name,
        )
    ]
    return _statefulset(
        service, settings, "mda", names["mda_service"], pod, claims, config_checksum
    )
