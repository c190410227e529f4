"""The MailServer document: a shared server's host name, replicas and the sections it takes over
from the MailDomains that join it.

Owns: ``parse_mailserver`` and ``spec.replicas``. Every other section is parsed by the
MailDomain's own parser of it (``api.parse.maildomain`` and the section modules), at the same
path, so the two kinds accept and refuse the same values and share their defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailstack.api import validate
from mailstack.api.parse.common import (
    check_header,
    creation_timestamp,
    metadata,
    raise_problems,
    reader_for,
)
from mailstack.api.parse.limits import parse_limits
from mailstack.api.parse.maildomain import parse_protocols, parse_spam, parse_storage
from mailstack.api.parse.outbound import parse_outbound
from mailstack.api.parse.pods import parse_pods
from mailstack.api.parse.postscreen import parse_postscreen
from mailstack.api.parse.relay import parse_relay
from mailstack.api.parse.service import parse_service
from mailstack.api.parse.tls import parse_tls
from mailstack.api.reader import Reader, integer
from mailstack.api.server_models import KIND, MAX_REPLICAS, SERVER_FIELDS, MailServer, Replicas

SPEC_FIELDS = frozenset({"hostname", "tls", "replicas", *SERVER_FIELDS})


def parse_mailserver(
    doc: Mapping[str, Any], source: str = "", default_namespace: str = "default"
) -> MailServer:
    """A MailServer document to a ``MailServer``; raises ``ValidationError`` with every problem."""
    r = reader_for(doc, source, default_namespace)
    check_header(r, doc, KIND)
    name, namespace, generation, uid = metadata(r, doc, default_namespace)
    created = creation_timestamp(r, doc)
    spec = r.mapping(doc.get("spec"), "spec", SPEC_FIELDS)
    if doc.get("spec") is None:
        r.fail("spec", "is required")
    hostname = r.field(spec, "hostname", "spec", validate.domain_name)
    relay = parse_relay(r, spec.get("relay"))
    outbound_hostname = hostname if r.present(hostname) else ""
    server = MailServer(
        name=name,
        namespace=namespace,
        hostname=hostname,
        tls=parse_tls(r, spec.get("tls")),
        service=parse_service(r, spec.get("service")),
        storage=parse_storage(r, spec.get("storage")),
        pods=parse_pods(r, spec.get("pods"), "spec.pods"),
        replicas=_replicas(r, spec.get("replicas")),
        spam=parse_spam(r, spec.get("spam")),
        outbound=parse_outbound(
            r, spec.get("outbound"), outbound_hostname, spec.get("relay") is not None
        ),
        limits=parse_limits(r, spec.get("limits")),
        postscreen=parse_postscreen(r, spec.get("postscreen")),
        resolvers=r.items(spec, "resolvers", "spec", validate.any_ip_address),
        protocols=parse_protocols(r, spec.get("protocols")),
        relay=relay,
        generation=generation,
        uid=uid,
        created=created,
    )
    raise_problems(r)
    return server


def _replicas(r: Reader, value: object) -> Replicas:
    path = "spec.replicas"
    replicas = r.mapping(value, path, {"mta", "mda"})
    count = integer(1, MAX_REPLICAS)
    return Replicas(
        mta=r.field(replicas, "mta", path, count, Replicas.mta),
        mda=r.field(replicas, "mda", path, count, Replicas.mda),
    )
