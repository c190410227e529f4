"""The operator's metrics (controller/metrics.py, metric_gauges.py) and log lines (log_context.py):
series by outcome and reason, gauges from the statuses, facts of a MailDomain, JSON logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailstack.commands.main import build_parser
from mailstack.controller import log_context, reasons
from mailstack.controller.metric_gauges import ConditionTracker, dkim_secret_key
from mailstack.controller.metrics import OperatorMetrics, observed_pass, split_address
from mailstack.controller.outcome import Outcome, ReconcileError
from mailstack.material import Material
from mailstack.material.dkim import generate_dkim_key
from mailstack.material.pki import ServerCertificate

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(metrics: OperatorMetrics) -> Samples:
    """Every sample of the exposition text, by name and sorted labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(metrics.text()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def status(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {"conditions": [{"type": t, "status": s, "reason": r} for t, s, r in conditions]}


# --- conditions -------------------------------------------------------------------------------


def test_conditions_are_counted_per_label_set_and_follow_each_object() -> None:
    tracker = ConditionTracker()
    ready = status(("Ready", "True", "Ready"), ("Valid", "True", "Valid"))
    tracker.note("Mailbox", "ns", "a", ready)
    tracker.note("Mailbox", "ns", "b", ready)
    tracker.note("Mailbox", "ns", "b", ready)  # the same status again: counted once
    tracker.note("Mailbox", "ns", "c", status(("Ready", "False", "PasswordUnavailable")))
    assert dict(tracker.counts()) == {
        ("Mailbox", "Ready", "False", "PasswordUnavailable"): 1,
        ("Mailbox", "Ready", "True", "Ready"): 2,
        ("Mailbox", "Valid", "True", "Valid"): 2,
    }
    tracker.note("Mailbox", "ns", "c", ready)  # c recovered: its old label set is gone
    tracker.forget("Mailbox", "ns", "a")  # a deleted
    tracker.forget("Mailbox", "ns", "never-seen")
    assert dict(tracker.counts()) == {
        ("Mailbox", "Ready", "True", "Ready"): 2,
        ("Mailbox", "Valid", "True", "Valid"): 2,
    }


def test_per_maildomain_series_exist_for_maildomains_only_and_go_with_them() -> None:
    metrics = OperatorMetrics()
    metrics.note_status("MailDomain", "t1", "shop", status(("Ready", "False", "NotRendered")))
    metrics.note_status("Mailbox", "t1", "alice", status(("Ready", "True", "Ready")))
    found = samples(metrics)
    domain = (
        ("maildomain", "shop"),
        ("namespace", "t1"),
        ("reason", "NotRendered"),
        ("status", "False"),
        ("type", "Ready"),
    )
    assert found[("mailstack_maildomain_condition", domain)] == 1
    assert not [
        k
        for k in found
        if k[0] == "mailstack_maildomain_condition"
        and k
        != (
            "mailstack_maildomain_condition",
            domain,
        )
    ]  # no series names a Mailbox
    by_kind = "mailstack_resources_by_condition"
    labels = (("kind", "Mailbox"), ("reason", "Ready"), ("status", "True"), ("type", "Ready"))
    assert found[(by_kind, labels)] == 1
    metrics.forget("MailDomain", "t1", "shop")
    metrics.forget("Mailbox", "t1", "alice")
    left = samples(metrics)
    assert not [k for k in left if k[0] in ("mailstack_maildomain_condition", by_kind)]


# --- a pass -----------------------------------------------------------------------------------


class FakeReconciler:
    """What ``observed_pass`` wraps: a pass that ends as told, logging on the way."""

    def __init__(self) -> None:
        self.metrics = OperatorMetrics()
        self.logged: list[logging.LogRecord] = []

    @observed_pass
    async def reconcile(self, body: Mapping[str, Any], ending: str) -> Outcome:
        record = logging.LogRecord("mailstack.test", logging.INFO, __file__, 1, "in", (), None)
        log_context.ObjectFilter().filter(record)
        self.logged.append(record)
        if ending == "retry":
            raise ReconcileError("reading children failed", reasons.READ_FAILED)
        if ending == "bug":
            raise KeyError("spec")
        return Outcome(valid=ending == "valid")


BODY = {
    "apiVersion": "mailstack.dev/v1alpha1",
    "kind": "MailDomain",
    "metadata": {"namespace": "t1", "name": "shop", "uid": "u-1"},
}


def test_a_pass_is_counted_and_timed_by_outcome_and_its_errors_by_reason() -> None:
    fake = FakeReconciler()

    async def run() -> None:
        await fake.reconcile(BODY, "valid")
        await fake.reconcile(BODY, "valid")
        await fake.reconcile(BODY, "invalid")
        with pytest.raises(ReconcileError):
            await fake.reconcile(BODY, "retry")
        with pytest.raises(KeyError):
            await fake.reconcile(BODY, "bug")

    asyncio.run(run())
    m = fake.metrics
    kind = "MailDomain"
    assert value(m, "mailstack_reconcile_total", kind=kind, outcome="success") == 2
    assert value(m, "mailstack_reconcile_total", kind=kind, outcome="invalid") == 1
    assert value(m, "mailstack_reconcile_total", kind=kind, outcome="error") == 2
    assert value(m, "mailstack_reconcile_errors_total", kind=kind, reason="ReadFailed") == 1
    assert value(m, "mailstack_reconcile_errors_total", kind=kind, reason="Unexpected") == 1
    count = value(m, "mailstack_reconcile_duration_seconds_count", kind=kind, outcome="success")
    assert count == 2
    inf = value(
        m, "mailstack_reconcile_duration_seconds_bucket", kind=kind, outcome="error", le="+Inf"
    )
    assert inf == 2
    # Every record of the pass is about the MailDomain; none outside it.
    refs = [getattr(r, "k8s_ref", None) for r in fake.logged]
    assert refs == [log_context.reference(BODY)] * 5
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "out", (), None)
    log_context.ObjectFilter().filter(outside)
    assert not hasattr(outside, "k8s_ref")


def test_api_requests_and_dns_publishes_are_counted_by_their_labels() -> None:
    m = OperatorMetrics()
    m.api_request("PATCH", 200)
    m.api_request("PATCH", 200)
    m.api_request("GET", 404)
    m.api_request("GET", None)  # no HTTP answer
    m.dns_published("rfc2136", "Published")
    m.dns_published("rfc2136", "DNSProviderTimeout")
    assert value(m, "mailstack_kube_requests_total", verb="PATCH", code="200") == 2
    assert value(m, "mailstack_kube_requests_total", verb="GET", code="404") == 1
    assert value(m, "mailstack_kube_requests_total", verb="GET", code="error") == 1
    publishes = "mailstack_dns_publishes_total"
    assert value(m, publishes, provider="rfc2136", outcome="DNSProviderTimeout") == 1
    assert value(m, publishes, provider="rfc2136", outcome="Published") == 1
    assert "_created" not in m.text()  # no second series per counter


# --- a MailDomain's certificate and DKIM key --------------------------------------------------


@pytest.fixture(scope="module")
def material() -> Iterator[Material]:
    tls = ServerCertificate("cert", "key", "ca", datetime(2027, 3, 1, tzinfo=UTC))
    yield Material(dkim=generate_dkim_key("s1", "ed25519"), tls=tls, ca=None)


def dkim_secret(created: str) -> dict[str, Any]:
    return {"metadata": {"name": "shop-dkim", "creationTimestamp": created}}


def test_certificate_expiry_and_dkim_key_age_come_from_the_material_and_its_secret(
    material: Material,
) -> None:
    now = [datetime(2026, 12, 7, tzinfo=UTC).timestamp()]
    m = OperatorMetrics(clock=lambda: now[0])
    children: dict[Any, Any] = {dkim_secret_key("shop"): dkim_secret("2026-12-06T00:00:00Z")}
    m.domains.note(
        "t1",
        "shop",
        domain="shop.example",
        material=material,
        children=children,
        certificate=None,
        now=now[0],
    )
    cert = "mailstack_certificate_not_after_timestamp_seconds"
    labels = {"namespace": "t1", "maildomain": "shop"}
    expiry = datetime(2027, 3, 1, tzinfo=UTC).timestamp()
    assert value(m, cert, domain="shop.example", **labels) == expiry
    age = "mailstack_dkim_key_age_seconds"
    assert value(m, age, selector="s1", **labels) == 86400  # the Secret's creation
    now[0] += 3600
    assert value(m, age, selector="s1", **labels) == 86400 + 3600  # computed at the scrape


def test_cert_manager_expiry_is_the_certificate_status_and_a_new_key_restarts_the_age(
    material: Material,
) -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC).timestamp()
    m = OperatorMetrics(clock=lambda: now)
    cert_manager = Material(dkim=material.dkim, tls=None, ca=None)
    certificate = {"status": {"notAfter": "2027-01-10T12:00:00Z"}}
    children: dict[Any, Any] = {dkim_secret_key("shop"): dkim_secret("2025-01-01T00:00:00Z")}
    note = {"domain": "shop.example", "children": children, "certificate": certificate}
    m.domains.note("t1", "shop", material=cert_manager, now=now, **note)
    labels = {"namespace": "t1", "maildomain": "shop"}
    expiry = datetime(2027, 1, 10, 12, tzinfo=UTC).timestamp()
    cert = "mailstack_certificate_not_after_timestamp_seconds"
    assert value(m, cert, domain="shop.example", **labels) == expiry
    # An algorithm change rewrote the key in the same (old) Secret: the age starts again.
    rotated = Material(dkim=generate_dkim_key("s1", "rsa2048"), tls=None, ca=None)
    m.domains.note("t1", "shop", material=rotated, now=now - 60, **note)
    assert value(m, "mailstack_dkim_key_age_seconds", selector="s1", **labels) == 60
    m.forget("MailDomain", "t1", "shop")
    assert not [k for k in samples(m) if k[0].startswith(("mailstack_dkim", "mailstack_cert"))]


# --- the operator's flags and log lines -------------------------------------------------------


def test_metrics_address_is_host_and_port() -> None:
    assert split_address("0.0.0.0:9090") == ("0.0.0.0", 9090)
    assert split_address("[::]:9090") == ("::", 9090)
    assert split_address(":9090") == ("0.0.0.0", 9090)
    for bad in ("9090", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError):
            split_address(bad)
    args = build_parser().parse_args(["operator", "--metrics-address", "127.0.0.1:9100"])
    assert (args.metrics_address, args.log_format) == ("127.0.0.1:9100", "text")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["operator", "--metrics-address", "9100"])


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {n: logging.getLogger(n).level for n in ("kopf", "aiohttp", "asyncio")}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_json_log_lines_name_the_maildomain_of_the_pass(root_logging: None) -> None:
    log_context.configure("json", verbose=False)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[-1]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logger = logging.getLogger("mailstack.controller.reconcile")
    with log_context.about(BODY):
        logger.info("applied %d object(s)", 3)
    logger.info("watching")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "applied 3 object(s)"
    assert first["object"]["namespace"] == "t1" and first["object"]["name"] == "shop"
    assert first["severity"] == "info"
    assert "object" not in second
