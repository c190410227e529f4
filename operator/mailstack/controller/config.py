"""How one operator instance runs: its options (``OperatorConfig``) and kopf's settings.

``mailstack operator`` (commands/operator.py) builds the config from its arguments, the
component tests and the benchmark build it directly; ``configure`` turns it into kopf's settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import kopf

from mailstack.controller.dns_runner import DnsTimings
from mailstack.render.objects import RenderOptions

PREFIX = "mailstack.dev"
FINALIZER = f"{PREFIX}/finalizer"


@dataclass(frozen=True)
class OperatorConfig:
    """How one operator instance runs (the ``mailstack operator`` options)."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    peering: str | None = "mailstack"  # None: standalone, no peering object needed
    priority: int = 0
    resync_interval: float = 300.0  # drift correction even without any event
    debounce: float = 1.0  # how long a burst of events may take to settle
    render: RenderOptions = field(default_factory=RenderOptions)
    connection: kopf.ConnectionInfo | None = None  # tests: a fixed API server; else in-cluster
    watch_timeout: float | None = None  # server-side watch timeout (None: the server's)
    concurrency: int = 16  # parallel reads and status writes per reconcile
    identity: str | None = None  # the peering identity (kopf's default: user@host/pid)
    # Without any MailDomainPolicy too, a MailDomain serves only a domain one grants its namespace.
    require_domain_grant: bool = False
    # MailDomains reconciled at the same time: rendering is CPU-bound (more would not finish
    # sooner on a few cores), and each pass holds a domain's parsed and rendered objects.
    parallel_reconciles: int = 4
    # Of which one namespace is sure of this many while others wait: the namespaces take turns
    # (``fairness``), and slots no other namespace wants go to whoever has passes waiting.
    namespace_reconciles: int = 1
    # Where the proofs of control (``api.proof``) and the outbound identity are looked up: an
    # address (default: the system's resolvers), and the first delay between two proof lookups
    # (doubled up to 10 minutes).
    proof_resolver: str = ""
    proof_resolver_port: int = 53
    proof_recheck: float = 30.0
    # How often the outbound identity (PTR, SPF of spec.outbound.addresses) is looked up again.
    outbound_recheck: float = 600.0
    # DNS provider calls: per call and per publication deadlines, threads, back-off.
    dns: DnsTimings = field(default_factory=DnsTimings)
    # Where /metrics is served (HOST:PORT; controller.metrics); empty: nowhere.
    metrics_address: str = ""


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf settings: mailstack.dev annotations, peering, no scanning."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # kopf would post an Event for every handler success; the reconciler posts its own, about
    # transitions. kopf's warnings and errors (failed handlers) still become Events.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "mailstack.dev/operator"
    settings.peering.name = config.peering or "mailstack"
    settings.peering.priority = config.priority
    settings.peering.mandatory = config.peering is not None
    settings.peering.standalone = config.peering is None
    # The kinds are known in advance: no watching of CRDs and namespaces, which would need
    # cluster-wide list/watch on both (see the chart's RBAC).
    settings.scanning.disabled = True
    settings.watching.server_timeout = config.watch_timeout
    settings.networking.request_timeout = 60
