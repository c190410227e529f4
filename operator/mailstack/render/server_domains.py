"""The per-domain files of a shared MailServer: what changes when a domain or a Mailbox joins or
leaves it, gathered into the data of Secrets the server owns.

Owns ``server_users_data`` (``<server>-users``: every domain's passwd lines, Postfix maps and
forwarding guard, and the list of the domains), ``server_dkim_data`` (``<server>-dkim``: a key per
domain and selector, the server's own among them, and rspamd's selector map) and
``server_tls_data`` (``<server>-domain-tls``: each domain's certificate and key under its host
name, Postfix's SNI table and Dovecot's ``local_name`` blocks). Only Secrets change with the
domains: the pods mount each of them whole (no ``items``, whose list is part of the pod template)
and the agents reload on a change, so no domain or Mailbox rolls a pod. Each domain's part is made
by the single-domain renderer's own function (``render.users``, ``render.forwarding``); this module
only joins them. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailstack.api.assemble import MailService
from mailstack.material import Material
from mailstack.material.resolve import server_dkim_key_name
from mailstack.render.forwarding import FORWARDING_MAP_KEY, render_forwarding_maps
from mailstack.render.server_paths import (
    DOMAIN_TLS_DIR,
    DOVECOT_LOCAL_NAMES_KEY,
    SELECTOR_MAP_KEY,
    SNI_MAP_KEY,
    VIRTUAL_DOMAINS_KEY,
)
from mailstack.render.templating import RenderError
from mailstack.render.users import (
    render_passwd_file,
    render_sender_logins,
    render_virtual_aliases,
    render_virtual_mailboxes,
    virtual_alias_entries,
)

ServedDomain = tuple[MailService, Material]


def _ordered(domains: Sequence[ServedDomain]) -> list[ServedDomain]:
    """By domain name, so that the data does not depend on the order the domains came in."""
    found: dict[str, ServedDomain] = {}
    hosts: set[str] = set()
    for service, material in domains:
        domain = service.domain
        if domain.domain in found:
            raise RenderError(f"{domain.domain} is served twice on one server")
        if domain.hostname in hosts:  # SNI could give only one of them its certificate
            raise RenderError(f"{domain.hostname} is the host name of two domains on one server")
        hosts.add(domain.hostname)
        found[domain.domain] = (service, material)
    return [found[name] for name in sorted(found)]


def server_users_data(domains: Sequence[ServedDomain]) -> dict[str, str]:
    """The files of ``<server>-users``: the single-domain files of each domain, joined."""
    ordered = _ordered(domains)
    services = [service for service, _ in ordered]
    return {
        "passwd": "".join(render_passwd_file(s, m) for s, m in ordered),
        "virtual_mailboxes": "".join(render_virtual_mailboxes(s) for s in services),
        "virtual_aliases": "".join(render_virtual_aliases(s) for s in services),
        "sender_logins": "".join(render_sender_logins(s) for s in services),
        VIRTUAL_DOMAINS_KEY: "".join(f"{s.domain.domain} OK\n" for s in services),
        FORWARDING_MAP_KEY: render_forwarding_maps(
            (virtual_alias_entries(s), s.domain.domain) for s in services
        ),
    }


def server_dkim_data(domains: Sequence[ServedDomain], host: ServedDomain) -> dict[str, str]:
    """The files of ``<server>-dkim``: each domain's private key (its own selector), and the
    selector map that makes rspamd sign a From: domain of the server and no other. ``host`` is
    the server itself (``render.server.server_host``): its own key signs its host name's mail
    (bounces and DSNs), and is kept here between renders (``material.resolve``)."""
    data: dict[str, str] = {}
    selectors = []
    for service, material in _ordered([*domains, host]):
        domain, key = service.domain, material.dkim
        if key.selector != domain.dkim.selector:
            raise RenderError(f"{domain.ref}: DKIM key is for selector {key.selector}")
        data[server_dkim_key_name(domain.domain, key.selector)] = key.rspamd_private_key()
        selectors.append(f"{domain.domain} {key.selector}\n")
    data[SELECTOR_MAP_KEY] = "".join(selectors)
    return data


def _pem_files(hostname: str) -> tuple[str, str]:
    return f"{hostname}.crt", f"{hostname}.key"


def server_tls_data(domains: Sequence[ServedDomain]) -> dict[str, str]:
    """The files of ``<server>-domain-tls``: each domain's certificate (chain) and key under its
    host name (``mail.<domain>`` by default), Postfix's SNI table (the host name to the key and
    chain files: Postfix reads the files a texthash SNI table names when it opens the table, as
    ``postmap -F`` does for an indexed one; measured on 3.7, a base64 value is taken for a file
    name) and Dovecot's ``local_name`` blocks. The server's own host name keeps the default
    certificate (``<server>-tls``), for clients that send no SNI."""
    data: dict[str, str] = {}
    sni: list[str] = []
    local_names: list[str] = []
    for service, material in _ordered(domains):
        domain = service.domain
        if material.tls is None:
            raise RenderError(f"{domain.ref}: no certificate for {domain.hostname} on the server")
        chain = material.tls.cert_pem + material.tls.ca_pem
        cert_file, key_file = _pem_files(domain.hostname)
        data[cert_file] = chain
        data[key_file] = material.tls.key_pem
        sni.append(f"{domain.hostname} {DOMAIN_TLS_DIR}/{key_file} {DOMAIN_TLS_DIR}/{cert_file}\n")
        local_names.append(
            f"local_name {domain.hostname} {{\n"
            f"  ssl_cert = <{DOMAIN_TLS_DIR}/{cert_file}\n"
            f"  ssl_key = <{DOMAIN_TLS_DIR}/{key_file}\n"
            "}\n"
        )
    data[SNI_MAP_KEY] = "".join(sni)
    data[DOVECOT_LOCAL_NAMES_KEY] = "".join(local_names)
    return data
