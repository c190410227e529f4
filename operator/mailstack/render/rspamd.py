"""rspamd configuration: the ``local.d`` overrides for the milter in the MTA pod.

rspamd runs from Debian's stock configuration with ``LOCAL_CONFDIR`` pointing at the mounted
ConfigMap, so only what differs from the defaults is rendered here.
"""

from __future__ import annotations

from mailstack.api.assemble import MailService
from mailstack.render import layout
from mailstack.render.templating import render_template

RSPAMD_FILES = (
    "actions.conf",
    "dkim_signing.conf",
    "fuzzy_check.conf",
    "logging.inc",
    "milter_headers.conf",
    "options.inc",
    "worker-controller.inc",
    "worker-fuzzy.inc",
    "worker-normal.inc",
    "worker-proxy.inc",
)


def dkim_key_file(selector: str) -> str:
    """The key inside the ``<name>-dkim`` Secret holding the private key."""
    return f"{selector}.key"


def render_rspamd_config(service: MailService) -> dict[str, str]:
    """The files of the ``<name>-rspamd`` ConfigMap (mounted as ``local.d``)."""
    domain = service.domain
    context = {
        "domain": domain,
        "spam": domain.spam,
        "resolvers": domain.resolvers,
        "paths": {"milter_socket": layout.MILTER_SOCKET},
        "dkim_key_path": f"{layout.DKIM_DIR}/{dkim_key_file(domain.dkim.selector)}",
    }
    return {name: render_template(f"rspamd/{name}.j2", **context) for name in RSPAMD_FILES}
