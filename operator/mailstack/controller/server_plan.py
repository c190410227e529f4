"""One MailServer's render with the MailDomains that join it, decided purely (#18).

Owns ``render_server_pass``: the controller's side of ``pipeline.prepare``/``render_all`` for one
server, on what the cluster holds. The same steps and functions: the MailDomains naming the
server, with their contenders, are assembled with ``on_servers=True`` (grants, ``ServerNotAllowed``
included), ``join_servers`` keeps those the server may serve, ``resolve_material`` gives the
server's own material (its namespace's Secrets), ``resolve_domain_material`` each domain's (its
own namespace's), ``pipeline.render_prepared_server`` the objects. The server's objects are owned
by the MailServer, each domain's own Secrets by its MailDomain, in its namespace. A domain
refused anywhere on the way is left out with its problems (the others are served); a problem
with the server itself renders nothing. Nothing here performs I/O (``server_pass`` does).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailstack.api.assemble import MailService, assemble
from mailstack.api.errors import Problem, ValidationError
from mailstack.api.models import Mailbox, MailDomain, Secret
from mailstack.api.parse import parse_mailbox
from mailstack.api.parse.server import parse_mailserver
from mailstack.api.policy import Grants
from mailstack.api.server_join import join_servers
from mailstack.api.server_models import MailServer
from mailstack.controller.children import Owner, owned
from mailstack.controller.kinds import MAILSERVER
from mailstack.controller.plan import SOURCE, parsed_contender, status_proofs
from mailstack.kubedoc import Obj, ObjectRef
from mailstack.material.errors import MaterialError
from mailstack.material.resolve import resolve_domain_material, resolve_material
from mailstack.pipeline import PreparedServer, render_prepared_server
from mailstack.render.objects import RenderOptions
from mailstack.render.server import server_host
from mailstack.render.templating import RenderError

DomainKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class ServerInputs:
    """Everything one pass of one MailServer reads."""

    server: Mapping[str, Any]
    # The raw MailDomains whose serverRef names the server, of any namespace.
    domains: Sequence[Mapping[str, Any]]
    # Other MailDomains that contend with them (the same domain or host name): an older claim
    # elsewhere wins, as in a MailDomain's own pass.
    contenders: Sequence[Mapping[str, Any]]
    # The raw Mailboxes of the joined domains (each in its domain's namespace).
    mailboxes: Sequence[Mapping[str, Any]]
    # By namespace: the operator's own material Secrets and the referenced user Secrets.
    secrets: Mapping[str, Mapping[str, Secret]]
    now: datetime
    random_bytes: Callable[[int], bytes] = os.urandom
    options: RenderOptions = field(default_factory=RenderOptions)
    grants: Grants = field(default_factory=Grants)


@dataclass
class ServerRendered:
    """The outcome of ``render_server_pass``."""

    model: MailServer | None = None
    problems: list[Problem] = field(default_factory=list)  # the server's own: nothing rendered
    # By MailDomain (namespace, name): why it is not served.
    domain_problems: dict[DomainKey, list[Problem]] = field(
        default_factory=lambda: defaultdict(list)
    )
    served: list[MailService] = field(default_factory=list)
    # By Mailbox (namespace, name) of the joined domains: why it is not (fully) served.
    mailbox_problems: dict[DomainKey, list[Problem]] = field(
        default_factory=lambda: defaultdict(list)
    )
    server_objects: list[Obj] = field(default_factory=list)  # owned by the MailServer
    # By MailDomain: its own objects, owned by it, in its namespace.
    domain_objects: dict[DomainKey, list[Obj]] = field(default_factory=dict)
    render_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.model is not None and not self.problems and self.render_error is None


def _key(ref: str) -> DomainKey:
    """``MailDomain/<namespace>/<name>`` to (namespace, name)."""
    _, namespace, name = ref.split("/", 2)
    return namespace, name


def _note(out: ServerRendered, problem: Problem, domains: set[DomainKey]) -> None:
    """A problem of a joined MailDomain (of ``domains``) or of a Mailbox, filed by document."""
    kind = problem.document.partition("/")[0]
    if kind == "Mailbox":
        out.mailbox_problems[_key(problem.document)].append(problem)
    elif kind == "MailDomain" and _key(problem.document) in domains:
        out.domain_problems[_key(problem.document)].append(problem)


def render_server_pass(inputs: ServerInputs) -> ServerRendered:
    """Parse, assemble, join, resolve material and render one MailServer with its domains."""
    out = ServerRendered()
    try:
        server = parse_mailserver(inputs.server, SOURCE)
    except ValidationError as err:
        out.problems = err.problems
        return out
    out.model = server
    docs = [*inputs.domains, *inputs.contenders]
    parsed: dict[DomainKey, MailDomain] = {}
    for doc in docs:
        key = ObjectRef.of(doc)[:2]
        model = parsed_contender(doc)  # an invalid one serves nothing (its pass says why)
        if model is not None:
            parsed.setdefault(key, model)
    boxes: list[Mailbox] = []
    for doc in inputs.mailboxes:
        namespace = ObjectRef.of(doc).namespace
        try:
            boxes.append(parse_mailbox(doc, SOURCE, namespace))
        except ValidationError as err:
            out.mailbox_problems[ObjectRef.of(doc)[:2]].extend(err.problems)
    domains = list(parsed.values())
    services, problems = assemble(
        domains, boxes, inputs.grants, status_proofs(domains, docs), on_servers=True
    )
    joined = join_servers(services, [server])
    wanted = {ObjectRef.of(doc)[:2] for doc in inputs.domains}
    for problem in problems + joined.problems:
        _note(out, problem, wanted)

    own, own_problems = resolve_material(
        MailService(server_host(server), ()),
        inputs.secrets.get(server.namespace, {}),
        inputs.now,
        inputs.random_bytes,
    )
    out.problems = [p for p in own_problems if p.document == server_host(server).ref]
    if out.problems:
        return out
    served = []
    for service in joined.joined[server.ref]:
        key = (service.domain.namespace, service.domain.name)
        if key not in wanted:
            continue
        secrets = inputs.secrets.get(service.domain.namespace, {})
        material, found = resolve_domain_material(service, secrets, inputs.now, inputs.random_bytes)
        for problem in found:
            _note(out, problem, wanted)
        if any(p.document == service.domain.ref for p in found):
            continue
        served.append((service, material))
    out.served = [service for service, _ in served]
    try:
        objects, by_domain = render_prepared_server(
            PreparedServer(server, own, served), inputs.options
        )
    except (RenderError, MaterialError) as err:
        out.render_error = str(err)
        return out
    uid = ObjectRef.of(inputs.server).uid
    server_owner = Owner(server.name, server.namespace, uid, MAILSERVER.kind)
    out.server_objects = [owned(obj, server_owner) for obj in objects]
    uids = {ObjectRef.of(doc)[:2]: ObjectRef.of(doc).uid for doc in inputs.domains}
    for service, domain_objects in by_domain:
        key = (service.domain.namespace, service.domain.name)
        owner = Owner(key[1], key[0], uids[key])
        out.domain_objects[key] = [owned(obj, owner) for obj in domain_objects]
    return out
