"""From files to rendered objects: the sequence shared by the CLI commands (a thin shell).

load documents → parse → assemble → join the MailServers → resolve material (state dir,
given Secrets, else generate) → render. Any problem anywhere stops the pipeline before anything
is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mailstack.api.assemble import UNSERVED, MailService, assemble
from mailstack.api.documents import Inputs, load_documents
from mailstack.api.errors import Problem
from mailstack.api.models import ClusterNetworks, Secret
from mailstack.api.parse.cluster_networks import exempt_cluster_problems
from mailstack.api.policy import Grants
from mailstack.api.secret_access import SECRET_NOT_FOUND
from mailstack.api.server_join import join_servers
from mailstack.api.server_models import MailServer
from mailstack.kubedoc import Obj
from mailstack.material import Material
from mailstack.material.resolve import (
    domain_material_secret_names,
    material_secret_names,
    resolve_domain_material,
    resolve_material,
)
from mailstack.render.objects import RenderOptions
from mailstack.render.server import render_joined_domain, render_server, server_host
from mailstack.render.server_domains import ServedDomain
from mailstack.render.stack import render_stack
from mailstack.statedir import StateDir

# resolve_material or resolve_domain_material, with the default password rounds
Resolve = Callable[
    [MailService, dict[str, Secret], datetime, Callable[[int], bytes]],
    tuple[Material, list[Problem]],
]


@dataclass
class PreparedServer:
    """A MailServer with its own material (``server_host``'s) and the domains it serves, each
    with the material kept in its own namespace."""

    server: MailServer
    material: Material
    domains: list[ServedDomain]


@dataclass
class Prepared:
    services: list[tuple[MailService, Material]]
    problems: list[Problem]
    servers: list[PreparedServer] = field(default_factory=list)


def prepare(
    paths: Iterable[str | Path],
    state: StateDir | None,
    now: datetime | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    networks: ClusterNetworks | None = None,
) -> Prepared:
    """``networks``: the cluster's ranges the render is for (``RenderOptions.cluster_networks``),
    which no ``exemptNetworks`` may overlap. MailDomains naming a MailServer (``serverRef``) are
    rendered with it, as the server's (``render.server``)."""
    inputs = load_documents(paths)
    # The policies in the files are the platform's: given any, grants are required (policy.py).
    grants = Grants(tuple(inputs.policies))
    services, problems = assemble(inputs.domains, inputs.mailboxes, grants, on_servers=True)
    joined = join_servers(services, inputs.servers)
    problems = inputs.problems + _with_sources(
        _unserved_explained(problems + joined.problems, inputs), inputs.sources
    )
    when = now or datetime.now(UTC)

    def material(service: MailService, resolve: Resolve, owner: str = "") -> Material:
        """``owner``: the ref the problems name instead of the service's (a server's)."""
        namespace = service.domain.namespace
        secrets: dict[str, Secret] = state.secrets(namespace) if state else {}
        # Secrets given in the files win over the state directory, as the cluster's would.
        secrets.update(inputs.secrets_in(namespace))
        found, material_problems = resolve(service, secrets, when, random_bytes)
        refused = {name for ns, name in inputs.refused_secrets if ns == namespace}
        material_problems = without_refused_secrets(material_problems, refused)
        problems.extend(_with_sources(_named(material_problems, owner), inputs.sources))
        return found

    def stack(service: MailService, owner: str = "") -> Material:
        overlaps = exempt_cluster_problems(service.domain, networks or ClusterNetworks())
        problems.extend(_with_sources(_named(overlaps, owner), inputs.sources))
        return material(service, resolve_material, owner)

    result = [(service, stack(service)) for service in joined.isolated]
    servers = []
    for server in inputs.servers:
        own = stack(MailService(server_host(server), ()), server.ref)
        domains = [(s, material(s, resolve_domain_material)) for s in joined.joined[server.ref]]
        servers.append(PreparedServer(server, own, domains))
    return Prepared(result, problems, servers)


def without_refused_secrets(problems: list[Problem], refused: set[str]) -> list[Problem]:
    """The problems but those saying that a Secret of ``refused`` (in a file refused for an
    error of its own) is not found: they would point away from the cause. Told by their kind
    (``SECRET_NOT_FOUND``), never by their words."""
    return [p for p in problems if not (p.kind == SECRET_NOT_FOUND and p.subject in refused)]


def _unserved_explained(problems: list[Problem], inputs: Inputs) -> list[Problem]:
    """A Mailbox whose MailDomain was refused for an error of its own (or sat in a file that did
    not parse) adds no error that points away from the cause; while a file could not be read at
    all, each such error says it may be the cause."""
    domain_of = {box.ref: (box.namespace, box.domain) for box in inputs.mailboxes}
    result = []
    for problem in problems:
        if problem.kind == UNSERVED:
            if domain_of.get(problem.document) in inputs.refused_domains:
                continue
            if inputs.unreadable:
                files = ", ".join(inputs.unreadable)
                problem = dataclasses.replace(
                    problem,
                    message=f"{problem.message} (unless it is in {files}, which has an error)",
                )
        result.append(problem)
    return result


def _named(problems: list[Problem], owner: str) -> list[Problem]:
    """A server's problems, found on ``server_host``, named by the server's ref."""
    if not owner:
        return problems
    return [dataclasses.replace(p, document=owner) for p in problems]


def _with_sources(problems: list[Problem], sources: dict[str, str]) -> list[Problem]:
    """Problems found across documents, with the file of the document at fault."""
    return [
        p if p.source else dataclasses.replace(p, source=sources.get(p.document, ""))
        for p in problems
    ]


def render_all(prepared: Prepared, options: RenderOptions | None = None) -> list[Obj]:
    objects: list[Obj] = []
    for service, material in prepared.services:
        objects += render_stack(service, material, options)
    for entry in prepared.servers:
        own, domains = render_prepared_server(entry, options)
        objects += own
        for _, domain_objects in domains:
            objects += domain_objects
    return objects


def render_prepared_server(
    entry: PreparedServer, options: RenderOptions | None = None
) -> tuple[list[Obj], list[tuple[MailService, list[Obj]]]]:
    """A server's objects (its namespace's, the MailServer's) and, by joined domain, what each
    keeps in its own namespace (the MailDomain's): the CLI writes them all, the controller
    owns each set by its own resource (owner references cannot cross namespaces)."""
    own = render_server(entry.server, entry.domains, entry.material, options)
    return own, [(s, render_joined_domain(s, m)) for s, m in entry.domains]


def save_state(state: StateDir, prepared: Prepared, objects: list[Obj]) -> None:
    """Keep the generated Secrets, the CA and the zone so the next run reuses them: a stack's
    and a server's material Secrets, and a joined domain's own (never the server's aggregates
    of them, which are made again from these)."""
    from mailstack.dns.records import desired_records, render_zone

    wanted = set()
    hosts = [(server_host(s.server), s.material) for s in prepared.servers]
    for domain, _ in [(s.domain, m) for s, m in prepared.services] + hosts:
        wanted |= {(domain.namespace, n) for n in material_secret_names(domain.name)}
    joined = [(s, m) for entry in prepared.servers for s, m in entry.domains]
    for service, _ in joined:
        namespace, name = service.domain.namespace, service.domain.name
        wanted |= {(namespace, n) for n in domain_material_secret_names(name)}
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == "Secret" and (meta["namespace"], meta["name"]) in wanted:
            state.save_secret(obj)
    every = [*prepared.services, *[(MailService(d, ()), m) for d, m in hosts], *joined]
    cas = [m.ca.cert_pem for _, m in every if m.ca is not None]
    if cas:
        state.write_file("ca.crt", "".join(dict.fromkeys(cas)))
    # A shared server's records (its host name, the domains' MX and SPF naming it) are not
    # computed yet: the zone holds the stacks' own.
    zone = "".join(
        render_zone(desired_records(service.domain, material.dkim))
        for service, material in prepared.services
    )
    state.write_file("records.zone", zone)
