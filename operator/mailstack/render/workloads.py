"""The two StatefulSets: ``<name>-mta`` (postfix + rspamd) and ``<name>-mda`` (dovecot).

Every container runs ``mailstack agent <daemon>`` from the mail image. Config comes from mounted
ConfigMaps and Secrets; the pod templates carry a checksum of the ConfigMaps, so a changed spec
rolls the pods, while account and certificate changes (Secrets) are reloaded in place by the agent.
They carry no operator version: an operator upgrade rolls the pods only if the image changes (or
the operator's mail pod defaults do). Resources, scheduling and extra pod metadata come from
``render.pod_settings``.
"""

from __future__ import annotations

from typing import Any

from mailstack.api.assemble import MailService
from mailstack.api.pod_models import MailPods
from mailstack.kubedoc import Obj
from mailstack.render import layout
from mailstack.render.objects import (
    CHECKSUM_ANNOTATION,
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

_SECRET_MODE = 0o440
_CONFIG_MODE = 0o444


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
    # SMTP on 25, submissions on 465, submission on 587.
    "NET_BIND_SERVICE",
    # master and every daemon switch to the postfix user and group.
    "SETGID",
    "SETUID",
]


def _security_context(capabilities: list[str], run_as: tuple[int, int] | None) -> Obj:
    """Every capability dropped but ``capabilities``; ``run_as``: (uid, gid) of a container
    that runs as that user rather than root (it then keeps no capability at all)."""
    context: Obj = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], **({"add": capabilities} if capabilities else {})},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as is not None:
        context.update(runAsNonRoot=True, runAsUser=run_as[0], runAsGroup=run_as[1])
    return context


def _probes() -> Obj:
    return {
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "health"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 2,
        },
    }


def _container(
    daemon: str,
    options: RenderOptions,
    ports: list[Obj],
    mounts: list[Obj],
    resources: Obj,
    capabilities: list[str],
    env: dict[str, str] | None = None,
    run_as: tuple[int, int] | None = None,
) -> Obj:
    health = layout.HEALTH_PORTS[daemon]
    return {
        "name": daemon,
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": ["mailstack"],
        "args": ["agent", daemon, "--health-port", str(health)],
        **({"env": [{"name": k, "value": v} for k, v in env.items()]} if env else {}),
        "ports": [*ports, {"name": "health", "containerPort": health, "protocol": "TCP"}],
        "volumeMounts": mounts,
        **_probes(),  # on the named "health" port
        "resources": resources,
        "securityContext": _security_context(capabilities, run_as),
    }


# glibc's malloc raises its trim and mmap thresholds as large blocks are freed, so what rspamd's
# hs_helper frees after checking its hyperscan cache stays in that (otherwise idle) process for
# good. Pinning both at glibc's initial 128 KiB hands such memory back (about 3 MB per MTA pod).
RSPAMD_ENV = {
    "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072:glibc.malloc.mmap_threshold=131072"
}


def _port(port: layout.Port) -> Obj:
    return {"name": port.name, "containerPort": port.number, "protocol": "TCP"}


def enabled_public_ports(service: MailService, component: str | None = None) -> list[layout.Port]:
    """The public ports the MailDomain's ``protocols`` switch on (SMTP on 25 always), of one
    component ("mta" or "mda") or of both."""
    return [
        port
        for port in layout.PUBLIC_PORTS
        if port.enabled_by(service.domain.protocols) and component in (None, port.component)
    ]


def _mount(name: str, path: str, read_only: bool = True, sub_path: str | None = None) -> Obj:
    mount: Obj = {"name": name, "mountPath": path, "readOnly": read_only}
    if sub_path:
        mount["subPath"] = sub_path
    return mount


def _config_map_volume(name: str, config_map: str) -> Obj:
    return {"name": name, "configMap": {"name": config_map, "defaultMode": _CONFIG_MODE}}


def _secret_volume(name: str, secret: str, keys: list[str] | None = None) -> Obj:
    source: dict[str, Any] = {"secretName": secret, "defaultMode": _SECRET_MODE}
    if keys is not None:
        source["items"] = [{"key": key, "path": key} for key in keys]
    return {"name": name, "secret": source}


def _empty_dir(name: str, memory: bool = False) -> Obj:
    return {"name": name, "emptyDir": {"medium": "Memory"} if memory else {}}


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
            "replicas": 1,
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
    user_keys = ["virtual_mailboxes", "virtual_aliases", "sender_logins"]
    if relay_auth:
        user_keys.append("relay_passwords")
    postfix = _container(
        "postfix",
        options,
        [
            *[_port(p) for p in mta_ports],
            _port(layout.MDA_SUBMIT_PORT),
        ],
        [
            _mount("postfix-config", layout.POSTFIX_CONFIG_DIR),
            _mount("users", layout.USERS_DIR),
            _mount("tls", layout.TLS_DIR),
            _mount("mda-client", layout.MDA_CLIENT_DIR),
            _mount("mta-client", layout.MTA_CLIENT_DIR),
            _mount("queue", layout.QUEUE_VOLUME, read_only=False),
            _mount("postfix-data", layout.POSTFIX_DATA_DIR, read_only=False),
            _mount("milter", layout.MILTER_DIR, read_only=False),
            _mount("sasl-tunnel", layout.SASL_TUNNEL_DIR, read_only=False),
            _mount("tmp", "/tmp", read_only=False),
        ],
        container_resources(settings, "postfix"),
        POSTFIX_CAPABILITIES,
        # Where the agent's tunnel takes Postfix's SASL connections (agent/tunnel.py).
        env={layout.AUTH_SERVER_ENV: f"{names['mda_service']}:{layout.SASL_PORT.number}"},
    )
    rspamd = _container(
        "rspamd",
        options,
        [],
        [
            _mount("rspamd-config", f"{layout.RSPAMD_CONFIG_DIR}/local.d"),
            _mount("dkim", layout.DKIM_DIR),
            _mount("milter", layout.MILTER_DIR, read_only=False),
            # rspamd's compiled regexp cache takes ~12 s to build: keep it on the queue volume.
            # Not the "rspamd" folder of earlier versions, which root made rspamd's (another
            # uid, mode 0750): the kubelet makes this one with the volume's mode and fsGroup.
            _mount("queue", layout.RSPAMD_DB_DIR, read_only=False, sub_path="rspamd-db"),
            _mount("rspamd-run", layout.RSPAMD_RUN_DIR, read_only=False),
            _mount("tmp", "/tmp", read_only=False),
        ],
        container_resources(settings, "rspamd"),
        [],  # runs as _rspamd: nothing needs root, no capability
        env=RSPAMD_ENV,
        run_as=(layout.RSPAMD_UID, layout.RSPAMD_GID),
    )
    volumes = [
        _config_map_volume("postfix-config", names["postfix_config"]),
        _config_map_volume("rspamd-config", names["rspamd_config"]),
        _secret_volume("users", names["users"], user_keys),
        _secret_volume("tls", names["tls"], ["tls.crt", "tls.key", "ca.crt"]),
        # The MDA's certificate and the fingerprint Postfix trusts, not the key.
        _secret_volume("mda-client", names["mda_client"], ["clientcerts", "tls.crt"]),
        _secret_volume("mta-client", names["mta_client"], ["tls.crt", "tls.key"]),
        _secret_volume("dkim", names["dkim"]),
        _empty_dir("postfix-data"),
        _empty_dir("milter"),
        _empty_dir("sasl-tunnel", memory=True),
        _empty_dir("rspamd-run", memory=True),
        _empty_dir("tmp"),
    ]
    pod = _pod_spec(service, settings, [postfix, rspamd], volumes, layout.RSPAMD_GID)
    claims = [
        _claim(
            selector_labels(domain, "mta"),
            "queue",
            domain.storage.queue.size,
            domain.storage.queue.storage_class_name,
        )
    ]
    return _statefulset(service, settings, "mta", names["service"], pod, claims, config_checksum)


def render_mda_statefulset(
    service: MailService, options: RenderOptions, config_checksum: str
) -> Obj:
    domain = service.domain
    names = layout.object_names(domain.name)
    settings = pod_settings(service, options)
    mda_ports = enabled_public_ports(service, "mda")
    dovecot = _container(
        "dovecot",
        options,
        [
            *[_port(p) for p in mda_ports],
            _port(layout.LMTP_PORT),
            _port(layout.SASL_PORT),
        ],
        [
            _mount("dovecot-config", layout.DOVECOT_CONFIG_DIR),
            _mount("users", layout.USERS_DIR),
            _mount("sieve", layout.SIEVE_DIR),
            _mount("tls", layout.TLS_DIR),
            _mount("mda-client", layout.MDA_CLIENT_DIR),
            _mount("mta-client", layout.MTA_CLIENT_DIR),
            _mount("mail", layout.MAIL_DIR, read_only=False),
            _mount("dovecot-state", layout.DOVECOT_STATE_DIR, read_only=False),
            _mount("dovecot-run", layout.DOVECOT_RUN_DIR, read_only=False),
            _mount("tmp", "/tmp", read_only=False),
        ],
        container_resources(settings, "dovecot"),
        [],  # runs as vmail, every process of it: no capability
        run_as=(layout.VMAIL_UID, layout.VMAIL_GID),
    )
    volumes = [
        _config_map_volume("dovecot-config", names["dovecot_config"]),
        _config_map_volume("sieve", names["sieve"]),
        _secret_volume("users", names["users"], ["passwd"]),
        _secret_volume("tls", names["tls"], ["tls.crt", "tls.key", "ca.crt"]),
        _secret_volume("mda-client", names["mda_client"], ["tls.crt", "tls.key"]),
        # The certificate the agent's LMTP and SASL tunnel pins (agent/tunnel.py), not the key.
        _secret_volume("mta-client", names["mta_client"], ["tls.crt"]),
        _empty_dir("dovecot-state"),
        _empty_dir("dovecot-run", memory=True),
        _empty_dir("tmp"),
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
