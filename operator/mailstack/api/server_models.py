"""The typed, fully defaulted model of a MailServer: the shared workloads many MailDomains join.

Owns: ``MailServer``, ``Replicas`` and ``SERVER_FIELDS``, the MailDomain fields that belong to
the server. A MailServer's sections are the MailDomain's own models (``api.models``): the same
parsers produce them (``api.parse.server``), so a field means the same on both kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailstack.api.models import (
    Limits,
    Outbound,
    Protocols,
    Relay,
    ServiceSpec,
    Spam,
    Storage,
    Tls,
)
from mailstack.api.pod_models import MailPods
from mailstack.api.postscreen_models import Postscreen

KIND = "MailServer"

# spec fields of a MailDomain that the MailServer holds when the MailDomain names one in
# spec.serverRef: each is applied by the MTA or the MDA for every connection or every message
# before the recipient's domain is known (the listeners, the SIZE announced after EHLO, the
# per-client counters, the scanner, the sending address), or is the workloads themselves.
SERVER_FIELDS = (
    "service",
    "storage",
    "pods",
    "spam",
    "outbound",
    "limits",
    "postscreen",
    "resolvers",
    "protocols",
    "relay",
)

MAX_REPLICAS = 16


@dataclass(frozen=True)
class Replicas:
    """``spec.replicas``: the pods of each StatefulSet."""

    mta: int = 1
    mda: int = 1


@dataclass(frozen=True)
class MailServer:
    """One shared mail server (a platform's), fully defaulted. ``hostname`` is its MX and HELO
    name, and the name of its default certificate (the one a client without SNI gets)."""

    name: str
    namespace: str
    hostname: str
    tls: Tls = field(default_factory=Tls)
    service: ServiceSpec = field(default_factory=ServiceSpec)
    storage: Storage = field(default_factory=Storage)
    pods: MailPods = field(default_factory=MailPods)
    replicas: Replicas = field(default_factory=Replicas)
    spam: Spam = field(default_factory=Spam)
    outbound: Outbound = field(default_factory=Outbound)
    limits: Limits = field(default_factory=Limits)
    postscreen: Postscreen = field(default_factory=Postscreen)
    resolvers: tuple[str, ...] = ()
    protocols: Protocols = field(default_factory=Protocols)
    relay: Relay | None = None
    generation: int = 0
    uid: str = ""
    created: str = ""

    @property
    def ref(self) -> str:
        return f"{KIND}/{self.namespace}/{self.name}"

    @property
    def helo_name(self) -> str:
        return self.outbound.helo_name or self.hostname
