"""From files to rendered objects: the sequence shared by the CLI commands (a thin shell).

load documents → parse → assemble → resolve material (state dir, given Secrets, else generate)
→ render. Any problem anywhere stops the pipeline before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailstack.api.assemble import UNSERVED, MailService, assemble
from mailstack.api.documents import Inputs, load_documents
from mailstack.api.errors import Problem
from mailstack.api.models import ClusterNetworks, Secret
from mailstack.api.parse.cluster_networks import exempt_cluster_problems
from mailstack.api.policy import Grants
from mailstack.api.secret_access import SECRET_NOT_FOUND
from mailstack.kubedoc import Obj
from mailstack.material import Material
from mailstack.material.resolve import material_secret_names, resolve_material
from mailstack.render.objects import RenderOptions
from mailstack.render.stack import render_stack
from mailstack.statedir import StateDir


@dataclass
class Prepared:
    services: list[tuple[MailService, Material]]
    problems: list[Problem]


def prepare(
    paths: Iterable[str | Path],
    state: StateDir | None,
    now: datetime | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    networks: ClusterNetworks | None = None,
) -> Prepared:
    """``networks``: the cluster's ranges the render is for (``RenderOptions.cluster_networks``),
    which no ``exemptNetworks`` may overlap."""
    inputs = load_documents(paths)
    # The policies in the files are the platform's: given any, grants are required (policy.py).
    grants = Grants(tuple(inputs.policies))
    services, problems = assemble(inputs.domains, inputs.mailboxes, grants)
    problems = inputs.problems + _with_sources(
        _unserved_explained(problems, inputs), inputs.sources
    )
    result: list[tuple[MailService, Material]] = []
    for service in services:
        overlaps = exempt_cluster_problems(service.domain, networks or ClusterNetworks())
        problems += _with_sources(overlaps, inputs.sources)
        namespace = service.domain.namespace
        secrets: dict[str, Secret] = state.secrets(namespace) if state else {}
        # Secrets given in the files win over the state directory, as the cluster's would.
        secrets.update(inputs.secrets_in(namespace))
        material, material_problems = resolve_material(
            service, secrets, now or datetime.now(UTC), random_bytes
        )
        refused = {name for ns, name in inputs.refused_secrets if ns == namespace}
        material_problems = without_refused_secrets(material_problems, refused)
        problems += _with_sources(material_problems, inputs.sources)
        result.append((service, material))
    return Prepared(result, problems)


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
    return objects


def save_state(state: StateDir, prepared: Prepared, objects: list[Obj]) -> None:
    """Keep the generated Secrets, the CA and the zone so the next run reuses them."""
    from mailstack.dns.records import desired_records, render_zone

    wanted = set()
    for service, _ in prepared.services:
        namespace, name = service.domain.namespace, service.domain.name
        wanted |= {(namespace, n) for n in material_secret_names(name)}
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == "Secret" and (meta["namespace"], meta["name"]) in wanted:
            state.save_secret(obj)
    cas = [m.ca.cert_pem for _, m in prepared.services if m.ca is not None]
    if cas:
        state.write_file("ca.crt", "".join(dict.fromkeys(cas)))
    zone = "".join(
        render_zone(desired_records(service.domain, material.dkim))
        for service, material in prepared.services
    )
    state.write_file("records.zone", zone)
