"""rspamd configuration: the ``local.d`` overrides for the milter in the MTA pod.

rspamd runs from Debian's stock configuration with ``LOCAL_CONFDIR`` pointing at the mounted
ConfigMap, so only what differs from the defaults is rendered here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mailstack.api import hosts
from mailstack.api.assemble import MailService
from mailstack.render import layout
from mailstack.render.forwarding import FORWARDING_DIR, FORWARDING_MAP, HELD_DETAIL
from mailstack.render.server_paths import SELECTOR_MAP_KEY, VIRTUAL_DOMAINS_KEY
from mailstack.render.templating import render_template

RSPAMD_FILES = (
    "actions.conf",
    "dkim_signing.conf",
    "dmarc.conf",
    "force_actions.conf",
    "fuzzy_check.conf",
    "logging.inc",
    "milter_headers.conf",
    "multimap.conf",
    "options.inc",
    "rspamd.lua",
    "settings.conf",
    "worker-controller.inc",
    "worker-fuzzy.inc",
    "worker-normal.inc",
    "worker-proxy.inc",
)


# How long rspamd may spend on one message (its task timeout: the proxy's, which rules when it
# scans itself, and the options' for anything else). At the bound rspamd answers with what it
# has found so far. Postfix's milter timeouts (render.postfix) are set from it.
SCAN_TIMEOUT_SECONDS = 8
# Proxy processes. Each is event-driven, but parsing a message and running its Lua rules is not:
# while one process is busy with a heavy message, new milter sessions go to the others.
PROXY_PROCESSES = 2


@dataclass(frozen=True)
class ScanLimits:
    """What makes a message too complex to scan (rspamd.lua): rspamd 3.4 has no limit of its own
    on MIME parts. Parts are counted as lines of "--" and a character other than white space,
    whatever the message declares (rspamd matches boundaries in any case, decodes RFC 2231 ones
    and guesses undeclared ones). Real mail stays far below these (a digest of 100 messages has
    ~200 parts; "-- " before signatures and "-- comments" count only as dash lines); 1000 parts
    cost rspamd well under a second, 10000 about half a second, 99000 with a link each ~4.6 s."""

    max_parts: int = 1000
    max_boundaries: int = 100
    max_dash_lines: int = 10_000


SCAN_LIMITS = ScanLimits()


# Stock modules this stack cannot use, switched off by name so that rspamd does not load their
# Lua code into each of its processes (a module without Redis loads, then disables itself).
# What each would need is said in the rendered file.
UNUSED_MODULES = {
    "asn": "its lookup (a DNS query to asn.rspamd.com per message) only feeds Redis-backed "
    "reputation and ASN maps, and neither runs here",
    "elastic": "it exports to Elasticsearch, which is not configured",
    "greylist": "greylisting needs Redis, which this stack does not run",
    "history_redis": "the scan history is kept in Redis, which this stack does not run",
    "metadata_exporter": "no export rules are configured",
    "neural": "the neural network is trained and stored in Redis, which this stack does not run",
    "ratelimit": "rate limits are counted in Redis, which this stack does not run",
    "replies": "replies are tracked in Redis, which this stack does not run",
    "url_redirector": "redirects are cached in Redis, which this stack does not run",
}


def own_domains(service: MailService) -> list[str]:
    """The domains this stack receives mail for (Postfix's virtual_mailbox_domains)."""
    return [service.domain.domain]


def dkim_key_file(selector: str) -> str:
    """The key inside the ``<name>-dkim`` Secret holding the private key."""
    return f"{selector}.key"


def _server_context() -> dict[str, str]:
    """What a shared server's rspamd reads instead of its one domain (render.server_domains):
    the key by the From: domain and its mapped selector, the domains from the users Secret."""
    return {
        "dkim_key_path": f"{layout.DKIM_DIR}/$domain.$selector.key",
        "dkim_selector_map": f"{layout.DKIM_DIR}/{SELECTOR_MAP_KEY}",
        "own_domains_map": f"{FORWARDING_DIR}/{VIRTUAL_DOMAINS_KEY}",
    }


def render_rspamd_config(service: MailService) -> dict[str, str]:
    """The files of the ``<name>-rspamd`` ConfigMap (mounted as ``local.d``)."""
    domain = service.domain
    context = {
        "domain": domain,
        "spam": domain.spam,
        "resolvers": domain.resolvers,
        "paths": {"milter_socket": layout.MILTER_SOCKET},
        "sieve_login": layout.SIEVE_LOGIN,
        "probe_sender": layout.MILTER_PROBE_SENDER,
        "dkim_key_path": f"{layout.DKIM_DIR}/{dkim_key_file(domain.dkim.selector)}",
        **(_server_context() if domain.server_ref else {}),
        "limits": SCAN_LIMITS,
        "scan_timeout": SCAN_TIMEOUT_SECONDS,
        "proxy_processes": PROXY_PROCESSES,
        # The domains whose envelope senders strangers may use only from the addresses of the
        # SPF record we publish (rspamd.lua).
        "own_domains": own_domains(service),
        "forwarding_map": FORWARDING_MAP,
        "held_detail": HELD_DETAIL,
    }
    files = {name: render_template(f"rspamd/{name}.j2", **context) for name in RSPAMD_FILES}
    if domain.spam.antivirus.enabled:
        files.update(render_antivirus_files(service))
    for module, reason in UNUSED_MODULES.items():
        files[f"{module}.conf"] = render_template("rspamd/unused-module.conf.j2", reason=reason)
    return files


# With spec.spam.antivirus: rspamd's module settings, and the config files of clamd and
# freshclam, which mount the same ConfigMap (one ConfigMap, one checksum, for the MTA pod).
CLAMAV_FILES = ("clamd.conf", "freshclam.conf")


def render_antivirus_files(service: MailService) -> dict[str, str]:
    """antivirus.conf (rspamd), clamd.conf and freshclam.conf."""
    domain = service.domain
    given = domain.spam.antivirus.signatures
    # Absolute host names: freshclam resolves through the pod's resolver, whose search list
    # would turn a tenant's ``kubernetes.default`` into the API server (``hosts``).
    signatures = dataclasses.replace(
        given,
        private_mirror=given.private_mirror and hosts.absolute_url(given.private_mirror),
        urls=tuple(hosts.absolute_url(url) for url in given.urls),
    )
    context = {
        "domain": domain,
        "signatures": signatures,
        "clamd_port": layout.CLAMD_PORT,
        "paths": {"clamav_db": layout.CLAMAV_DB_DIR, "clamav_run": layout.CLAMAV_RUN_DIR},
        # An attachment is never larger than the message (base64 makes it smaller decoded).
        "stream_max_length": domain.limits.message_size,
        "max_size": domain.limits.message_size,
    }
    names = ("antivirus.conf", *CLAMAV_FILES)
    return {name: render_template(f"rspamd/{name}.j2", **context) for name in names}
