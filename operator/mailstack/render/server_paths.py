"""Where a shared MailServer's per-domain files are: the keys of its Secrets
(``render.server_domains``) and where its pods mount them, which main.cf, dovecot.conf and
rspamd's config name.

Owns those names. Here, not in ``render.layout``, until the agents reload these mounts (layout
is part of the mail image); ``<server>-dkim`` is mounted where a stack's dkim Secret is
(``layout.DKIM_DIR``), and the users Secret where a stack's is.
"""

from __future__ import annotations

DOMAIN_TLS_DIR = "/etc/mailstack/domain-tls"
VIRTUAL_DOMAINS_KEY = "virtual_domains"  # Postfix's virtual_mailbox_domains, a texthash table
SELECTOR_MAP_KEY = "selectors.map"  # rspamd's dkim_signing selector_map: "domain selector"
SNI_MAP_KEY = "sni"  # Postfix's tls_server_sni_maps, a texthash table
DOVECOT_LOCAL_NAMES_KEY = "local-names.conf"  # included by dovecot.conf


def domain_tls_secret(server: str) -> str:
    """The name of the Secret of a server's domain certificates."""
    return f"{server}-domain-tls"
