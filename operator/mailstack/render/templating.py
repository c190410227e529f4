"""The jinja2 environment for config templates, with a guard against injected lines.

Every value interpolated into a template passes ``_finalize``: it refuses control characters
(newlines above all), so even a value that slipped past validation cannot add a line or a
directive to main.cf, master.cf, dovecot.conf or an rspamd file. Rendering is strict: an
undefined name is an error, not an empty string.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import jinja2


class RenderError(Exception):
    """A template could not be rendered safely."""


def _finalize(value: Any) -> Any:
    text = value if isinstance(value, str) else str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise RenderError(f"refusing to render a value with a control character: {text[:40]!r}")
    return value


def _score(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{int(value)}.0"


def _rspamd_nameserver(address: str) -> str:
    parsed = ipaddress.ip_address(address)
    return f"[{parsed}]:53" if parsed.version == 6 else f"{parsed}:53"


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("mailstack.render", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_finalize,
)
_ENV.filters["score"] = _score
_ENV.filters["rspamd_nameserver"] = _rspamd_nameserver


def render_template(name: str, **context: Any) -> str:
    """Render ``templates/<name>`` with the given context."""
    try:
        return _ENV.get_template(name).render(**context)
    except jinja2.TemplateError as err:
        raise RenderError(f"{name}: {err}") from err
