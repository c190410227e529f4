"""The whole object set of a shared MailServer with the MailDomains that join it (pure).

Owns ``server_host`` (the server seen as the MailDomain whose stack it runs), ``render_server`` and
``render_joined_domain`` (what a domain on the server keeps in its own namespace). The workloads,
Services, NetworkPolicies and config files are the single-domain stack's (``render.stack``) for
that host domain; its ``server_ref`` (the server itself) makes the renderers name the per-domain
tables instead of one domain: main.cf's ``virtual_mailbox_domains`` and SNI table, dovecot.conf's
``local_name`` include, rspamd's selector map and own domains, and the pods mount the server's
Secrets whole (``render.workloads``). The domains' own files are in the data of three Secrets
(``render.server_domains``), so a domain or a Mailbox joining or leaving changes Secrets only: the
ConfigMaps, and with them the pod templates' checksums, depend on the server alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailstack.api.assemble import MailService
from mailstack.api.models import MailDomain, ServerRef
from mailstack.api.server_models import MailServer
from mailstack.kubedoc import Obj
from mailstack.material import Material
from mailstack.material.resolve import PASSWD_KEY
from mailstack.render import layout
from mailstack.render.objects import RenderOptions
from mailstack.render.server_domains import (
    ServedDomain,
    server_dkim_data,
    server_tls_data,
    server_users_data,
)
from mailstack.render.server_paths import domain_tls_secret
from mailstack.render.stack import (
    render_dkim_secret,
    render_stack,
    render_tls_objects,
    secret_object,
)
from mailstack.render.users import render_passwd_file, render_relay_passwords


def server_host(server: MailServer) -> MailDomain:
    """The MailDomain whose stack the server runs: its host name for a domain, its sections,
    and ``server_ref`` naming itself (what the renderers read as "a shared server")."""
    return MailDomain(
        name=server.name,
        namespace=server.namespace,
        domain=server.hostname,
        hostname=server.hostname,
        postmaster=f"postmaster@{server.hostname}",
        limits=server.limits,
        protocols=server.protocols,
        relay=server.relay,
        outbound=server.outbound,
        tls=server.tls,
        service=server.service,
        storage=server.storage,
        spam=server.spam,
        postscreen=server.postscreen,
        resolvers=server.resolvers,
        pods=server.pods,
        server_ref=ServerRef(server.namespace, server.name),
        generation=server.generation,
        uid=server.uid,
        created=server.created,
    )


def render_server(
    server: MailServer,
    domains: Sequence[ServedDomain],
    material: Material,
    options: RenderOptions | None = None,
) -> list[Obj]:
    """Every Kubernetes object of ``server`` serving ``domains`` (each with its Mailboxes and
    its own material), in apply order; ``material`` is the server's own (``server_host``'s:
    its certificate, CA, client certificates, relay credentials)."""
    host = MailService(server_host(server), ())
    names = layout.object_names(server.name)
    users = server_users_data(domains)
    relay = render_relay_passwords(host, material)
    if relay is not None:
        users["relay_passwords"] = relay
    replaced = {
        names["users"]: secret_object(host, names["users"], "users", users),
        names["dkim"]: secret_object(
            host, names["dkim"], "dkim", server_dkim_data(domains, (host, material))
        ),
    }
    domain_tls = secret_object(
        host, domain_tls_secret(server.name), "tls", server_tls_data(domains)
    )
    result: list[Obj] = []
    for obj in render_stack(host, material, options):
        name = obj["metadata"]["name"]
        if obj["kind"] == "Secret" and name in replaced:
            obj = replaced[name]
        elif obj["kind"] == "StatefulSet":
            replicas = server.replicas.mta if name == names["mta"] else server.replicas.mda
            obj = {**obj, "spec": {**obj["spec"], "replicas": replicas}}
        result.append(obj)
        if name == names["tls"]:  # the server's own certificate (a Secret, or a Certificate)
            result.append(domain_tls)
    return result


def render_joined_domain(service: MailService, material: Material) -> list[Obj]:
    """The Secrets a MailDomain on a shared server keeps in its own namespace, under its own
    name: its DKIM key (``<name>-dkim``, with the TXT value to publish), CA and certificate
    (``<name>-ca``, ``<name>-tls``; or the cert-manager Certificate) and its Mailboxes' passwd
    lines (``<name>-users``). ``material.resolve`` reads them back, as a stack's; the server's
    Secrets are made of them and never read back for a domain, so a domain that leaves takes its
    key along and a tenant reads its own material only (docs/architecture.md, section 7)."""
    name = layout.object_names(service.domain.name)["users"]
    users = {PASSWD_KEY: render_passwd_file(service, material)}
    return [
        secret_object(service, name, "users", users),
        render_dkim_secret(service, material),
        *render_tls_objects(service, material),
    ]
