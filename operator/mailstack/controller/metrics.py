"""Owns the operator's Prometheus series: their names, labels and meaning, and ``/metrics``.

One ``OperatorMetrics`` per running operator (its own registry: the component tests run several
operators in one process), fed by thin hooks where things happen:

- ``observed_pass`` wraps ``Reconciler.reconcile``: passes and their duration by kind and
  outcome, errors by reason; it also gives the pass its log context (``log_context``);
- ``StatusWriter`` notes every status it computes, written or found current
  (``metric_gauges.ConditionTracker``); the finalizer and the Mailbox informer forget the
  deleted;
- the reconciler notes each rendered MailDomain's certificate and DKIM key
  (``metric_gauges.DomainFacts``);
- ``DnsPublisher`` counts each publication at a provider by its kind and outcome (DNSReady's
  reason: ``Published``, ``DNSConflict`` or the provider error's reason);
- ``Kube`` counts its requests by verb and HTTP code (kopf's own client, which watches and
  patches the MailDomains, is not counted).

Label values are code's (kinds, reasons, verbs, codes) or a MailDomain's namespace and name:
never a Mailbox's, so the number of series grows with the MailDomains at most. The series and
the alerts built on them are listed in docs/operations.md. ``/metrics`` is served by aiohttp in
the operator's event loop (``serve_metrics``), so a scrape never races a pass.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailstack.controller import log_context, reasons
from mailstack.controller.kinds import CERTIFICATE, ChildKey
from mailstack.controller.metric_gauges import ConditionTracker, DomainFacts
from mailstack.controller.outcome import Outcome, ReconcileError
from mailstack.kubedoc import Obj
from mailstack.render import layout

if TYPE_CHECKING:
    from mailstack.controller.plan import Rendered

# No ``<counter>_created`` series beside each counter and histogram: they would double the
# series for nothing an alert or a dashboard here reads. (A process-wide switch of the client:
# the operator's process is the one exporter in it.)
disable_created_metrics()  # type: ignore[no-untyped-call]  # (the client leaves it unannotated)

MAILDOMAIN_KIND = "MailDomain"
# A pass takes milliseconds when nothing changed, seconds for a first render with keys to make.
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# The outcome label of a pass.
SUCCESS, INVALID, ERROR = "success", "invalid", "error"
CONNECTION_FAILED = "error"  # the code label of a request that got no HTTP answer


class OperatorMetrics:
    """The series of one operator and the state behind its gauges."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        registry = self.registry
        self.passes = Counter(
            "mailstack_reconcile",
            "Reconcile passes, by the kind reconciled and their outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.pass_seconds = Histogram(
            "mailstack_reconcile_duration_seconds",
            "How long reconcile passes took, by kind and outcome",
            ["kind", "outcome"],
            buckets=PASS_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "mailstack_reconcile_errors",
            "Reconcile passes that failed and are retried, by kind and reason",
            ["kind", "reason"],
            registry=registry,
        )
        self.dns_publishes = Counter(
            "mailstack_dns_publishes",
            "Publications of a MailDomain's records at its DNS provider, by provider kind and "
            "outcome (the DNSReady reason)",
            ["provider", "outcome"],
            registry=registry,
        )
        self.api_requests = Counter(
            "mailstack_kube_requests",
            "Requests of the operator's own Kubernetes API client, by verb and HTTP code",
            ["verb", "code"],
            registry=registry,
        )
        self.conditions = ConditionTracker()
        self.domains = DomainFacts()
        registry.register(_GaugeCollector(self))
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(standard)

    # --- hooks ----------------------------------------------------------------------------

    def api_request(self, method: str, code: int | None) -> None:
        """One request of ``Kube``: ``code`` None when no HTTP answer came."""
        self.api_requests.labels(method, CONNECTION_FAILED if code is None else str(code)).inc()

    def dns_published(self, provider: str, outcome: str) -> None:
        self.dns_publishes.labels(provider, outcome).inc()

    def note_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.conditions.note(kind, namespace, name, status)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """A deleted object: its series go."""
        self.conditions.forget(kind, namespace, name)
        if kind == MAILDOMAIN_KIND:
            self.domains.forget(namespace, name)

    def note_domain(
        self,
        namespace: str,
        name: str,
        rendered: Rendered,
        children: Mapping[ChildKey, Obj | None],
    ) -> None:
        """After a pass that rendered: the MailDomain's certificate and DKIM key."""
        if not rendered.ok or rendered.model is None or rendered.material is None:
            return  # an invalid spec keeps serving the last objects: and their facts
        self.domains.note(
            namespace,
            name,
            domain=rendered.model.domain,
            material=rendered.material,
            children=children,
            certificate=children.get(CERTIFICATE.key(layout.object_names(name)["tls"])),
            now=self.clock(),
        )

    def observe_pass(
        self, kind: str, seconds: float, outcome: str, error_reason: str | None = None
    ) -> None:
        self.passes.labels(kind, outcome).inc()
        self.pass_seconds.labels(kind, outcome).observe(seconds)
        if error_reason is not None:
            self.errors.labels(kind, error_reason).inc()

    def text(self) -> str:
        """The exposition text (tests, and anyone without an HTTP port)."""
        return generate_latest(self.registry).decode()


class _GaugeCollector(Collector):
    """The gauges computed at scrape time from ``ConditionTracker`` and ``DomainFacts``."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(gauges(self._metrics))


def gauges(metrics: OperatorMetrics) -> Iterator[Metric]:
    by_condition = GaugeMetricFamily(
        "mailstack_resources_by_condition",
        "MailDomains and Mailboxes by condition type, status and reason, as last computed",
        labels=["kind", "type", "status", "reason"],
    )
    for key, count in metrics.conditions.counts():
        by_condition.add_metric(list(key), count)
    yield by_condition
    domain_condition = GaugeMetricFamily(
        "mailstack_maildomain_condition",
        "1 for each condition of each MailDomain, with its current status and reason",
        labels=["namespace", "maildomain", "type", "status", "reason"],
    )
    for namespace, name, shape in metrics.conditions.of_kind(MAILDOMAIN_KIND):
        for type_, status, reason in shape:
            domain_condition.add_metric([namespace, name, type_, status, reason], 1)
    yield domain_condition
    not_after = GaugeMetricFamily(
        "mailstack_certificate_not_after_timestamp_seconds",
        "When a MailDomain's server certificate expires, in seconds since the epoch",
        labels=["namespace", "maildomain", "domain"],
    )
    dkim_age = GaugeMetricFamily(
        "mailstack_dkim_key_age_seconds",
        "How old the DKIM key a MailDomain signs with is, in seconds",
        labels=["namespace", "maildomain", "selector"],
    )
    now = metrics.clock()
    for namespace, name, fact in metrics.domains.items():
        if fact.certificate_not_after is not None:
            not_after.add_metric([namespace, name, fact.domain], fact.certificate_not_after)
        if fact.dkim_created is not None:
            age = max(0.0, now - fact.dkim_created)
            dkim_age.add_metric([namespace, name, fact.dkim_selector], age)
    yield not_after
    yield dkim_age


# --- the pass ---------------------------------------------------------------------------------


class Observed(Protocol):
    """What ``observed_pass`` needs of the object whose method it wraps."""

    metrics: OperatorMetrics


Self = TypeVar("Self", bound=Observed)
P = ParamSpec("P")
PassMethod = Callable[Concatenate[Self, Mapping[str, Any], P], Awaitable[Outcome]]


def observed_pass(method: PassMethod[Self, P]) -> PassMethod[Self, P]:
    """Wrap a reconcile pass (its first argument is the object's body): the pass logs in the
    object's context, its duration and outcome are observed, a failure counted by its reason.

    ``ReconcileError`` (retried) is an error of its reason; any other exception is
    ``Unexpected``. A cancelled pass (the operator stops) is not observed.
    """

    @functools.wraps(method)
    async def observed(
        self: Self, body: Mapping[str, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> Outcome:
        kind = str(body.get("kind") or MAILDOMAIN_KIND)
        started = time.monotonic()
        with log_context.about(body):
            try:
                outcome = await method(self, body, *args, **kwargs)
            except ReconcileError as err:
                self.metrics.observe_pass(kind, time.monotonic() - started, ERROR, err.reason)
                raise
            except Exception:
                self.metrics.observe_pass(
                    kind, time.monotonic() - started, ERROR, reasons.UNEXPECTED
                )
                raise
        result = SUCCESS if outcome.valid else INVALID
        self.metrics.observe_pass(kind, time.monotonic() - started, result)
        return outcome

    return observed


# --- /metrics ---------------------------------------------------------------------------------


def split_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::]:9090`` for IPv6) → host and port; ValueError when it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve_metrics(metrics: OperatorMetrics, address: str) -> web.AppRunner:
    """Serve ``/metrics`` on ``address`` (``HOST:PORT``) until the runner is cleaned up."""
    host, port = split_address(address)
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
