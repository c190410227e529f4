"""The operator's /metrics, scraped over HTTP from the running operator (the real port, a free
one), after reconciles of a valid and an invalid MailDomain, and after their deletion."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailstack.material.pki import SERVER_VALIDITY
from tests.component.conftest import condition, mailbox, maildomain, password, wait_ready
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread

HASH = "{BLF-CRYPT}$2b$10$oNX0qrTw9O53hLe7QUwJleCv/SNk366H0AaviuhdUL0m9Ve3uMtW."
Labels = tuple[tuple[str, str], ...]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Scraper:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def scrape(self) -> dict[tuple[str, Labels], float]:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            assert response.status == 200
            text = response.read().decode()
        found = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found

    def value(self, name: str, **labels: str) -> float | None:
        return self.scrape().get((name, tuple(sorted(labels.items()))))

    def names(self, prefix: str, **labels: str) -> list[tuple[str, Labels]]:
        """Series whose name starts with ``prefix`` and that carry all of ``labels``."""
        wanted = set(labels.items())
        return [k for k in self.scrape() if k[0].startswith(prefix) and wanted <= set(k[1])]


@pytest.fixture
def metrics(api: ApiServer) -> Iterator[tuple[OperatorThread, Scraper]]:
    port = free_port()
    with OperatorThread(api, metrics_address=f"127.0.0.1:{port}") as running:
        yield running, Scraper(port)


def test_metrics_after_a_valid_and_an_invalid_maildomain(
    api: ApiServer, metrics: tuple[OperatorThread, Scraper]
) -> None:
    _, scraper = metrics
    api.create(password("alice", HASH))
    api.create(mailbox("alice", "alice@good.example"))
    api.create(maildomain("good", "good.example", postmaster="alice@good.example"))
    api.create(maildomain("bad", "bad.example", catchAll="nobody@bad.example"))
    started = time.time()
    wait_ready(api, "good")
    wait_for(lambda: condition(api.get("maildomains", "bad"), "Valid") == "False")
    domain = {"namespace": "default"}

    def condition_of(name: str, type_: str) -> list[tuple[str, Labels]]:
        series = scraper.names("mailstack_maildomain_condition", maildomain=name, type=type_)
        return [s for s in series if scraper.scrape()[s] == 1]

    # The statuses the operator wrote, per MailDomain (Ready may trail the API by a pass).
    wait_for(lambda: condition_of("good", "Ready") and condition_of("bad", "Valid"))
    good_ready = dict(condition_of("good", "Ready")[0][1])
    assert (good_ready["status"], good_ready["reason"]) == ("True", "Ready")
    bad_valid = dict(condition_of("bad", "Valid")[0][1])
    assert (bad_valid["status"], bad_valid["reason"]) == ("False", "InvalidSpec")
    by_condition = "mailstack_resources_by_condition"
    ready_boxes = {"kind": "Mailbox", "type": "Ready", "status": "True", "reason": "Ready"}
    assert scraper.value(by_condition, **ready_boxes) == 1
    invalid = {"kind": "MailDomain", "type": "Valid", "status": "False", "reason": "InvalidSpec"}
    assert scraper.value(by_condition, **invalid) == 1

    # Passes: the valid one succeeded, the invalid one was refused; each timed.
    passes = "mailstack_reconcile_total"
    assert (scraper.value(passes, kind="MailDomain", outcome="success") or 0) >= 1
    assert (scraper.value(passes, kind="MailDomain", outcome="invalid") or 0) >= 1
    timed = scraper.value(
        "mailstack_reconcile_duration_seconds_count", kind="MailDomain", outcome="success"
    )
    assert timed == scraper.value(passes, kind="MailDomain", outcome="success")
    assert not scraper.names("mailstack_reconcile_errors_total")  # nothing failed

    # The valid MailDomain's certificate (the internal CA's) and its new DKIM key; none for the
    # invalid one, which rendered nothing.
    not_after = scraper.value(
        "mailstack_certificate_not_after_timestamp_seconds",
        domain="good.example",
        maildomain="good",
        **domain,
    )
    assert not_after is not None
    assert abs(not_after - (started + SERVER_VALIDITY.total_seconds())) < 120
    age = scraper.value(
        "mailstack_dkim_key_age_seconds", selector="mailstack", maildomain="good", **domain
    )
    assert age is not None and 0 <= age < time.time() - started + 5
    assert not scraper.names("mailstack_certificate", maildomain="bad")

    # The operator's own API requests: server-side applies and status patches, answered 200.
    assert (scraper.value("mailstack_kube_requests_total", verb="PATCH", code="200") or 0) > 10
    assert (scraper.value("mailstack_kube_requests_total", verb="WATCH", code="200") or 0) >= 1

    # Deleted objects take their series with them.
    api.delete("maildomains", "bad")
    api.delete("mailboxes", "alice")
    wait_for(lambda: not scraper.names("mailstack_maildomain_condition", maildomain="bad"))
    wait_for(lambda: scraper.value(by_condition, **ready_boxes) is None)
    assert scraper.value(by_condition, **invalid) is None
    assert condition_of("good", "Ready")  # the other MailDomain's stay
