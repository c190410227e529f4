"""Which assembled MailServices join which MailServer of the documents (pure).

Owns ``join_servers``: the MailServices of ``assemble(..., on_servers=True)`` split into those
with a stack of their own and those served by a MailServer among the documents, with a problem
for a MailDomain that cannot be served where it asks: its ``serverRef`` names a MailServer that
is not there (then nothing is rendered for it, rather than a stack of its own with the server's
defaults), its host name is the server's or another domain's on the same server (SNI could give
only one of them its certificate), its certificate is cert-manager's (not copied yet), or it
has the name of a MailServer of its namespace (their objects would share names). Grants are
checked before this, by ``assemble``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mailstack.api.assemble import MailService
from mailstack.api.errors import Problem
from mailstack.api.server_models import MailServer


@dataclass
class ServerLayout:
    """``isolated``: the services with a stack of their own; ``joined``: by MailServer ref, the
    services it serves (in the order given); ``problems``: the services refused."""

    isolated: list[MailService] = field(default_factory=list)
    joined: dict[str, list[MailService]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def join_servers(services: Iterable[MailService], servers: Iterable[MailServer]) -> ServerLayout:
    """Each service to its own stack or to the MailServer its ``serverRef`` names."""
    by_key = {(s.namespace, s.name): s for s in servers}
    layout = ServerLayout(joined={s.ref: [] for s in by_key.values()})
    hosts: dict[str, dict[str, str]] = {s.ref: {s.hostname: s.ref} for s in by_key.values()}
    for service in services:
        dom = service.domain
        if (dom.namespace, dom.name) in by_key:
            message = (
                f"MailServer {dom.namespace}/{dom.name} has the same name: their objects would "
                "share names; rename one of them"
            )
            layout.problems.append(Problem(dom.ref, "metadata.name", message))
            continue
        if dom.server_ref is None:
            layout.isolated.append(service)
            continue
        server = by_key.get((dom.server_ref.namespace, dom.server_ref.name))
        if server is None:
            message = (
                f"{dom.server_ref.ref} is not among the documents: the domain is served by "
                "nothing (give the MailServer's file too)"
            )
            layout.problems.append(Problem(dom.ref, "spec.serverRef", message))
            continue
        if dom.tls.issuer == "certManager":  # the server needs a copy of what it issues
            message = (
                "a domain on a shared MailServer takes issuer internal or acme for now: the "
                "server serves a copy of the domain's certificate, and copying the one "
                "cert-manager issues is not built yet"
            )
            layout.problems.append(Problem(dom.ref, "spec.tls.issuer", message))
            continue
        taken = hosts[server.ref].get(dom.hostname)
        if taken is not None:
            message = (
                f"{dom.hostname} is already the host name of {taken} on {server.ref}: each domain "
                "on a server needs its own (the name its certificate is served for by SNI)"
            )
            layout.problems.append(Problem(dom.ref, "spec.hostname", message))
            continue
        hosts[server.ref][dom.hostname] = dom.ref
        layout.joined[server.ref].append(service)
    return layout
