"""Fixtures of the component tests: the API server emulator and the operator against it."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from mailstack.api.secret_access import USABLE_BY_LABEL as USABLE_BY
from tests.component.emulator import ApiServer, wait_for
from tests.component.harness import OperatorThread

NS = "default"
API = "mailstack.dev/v1alpha1"


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    # kopf logs every handled event at INFO; keep failures readable.
    logging.getLogger("kopf").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    options = getattr(request, "param", {})
    with ApiServer(**options) as server:
        yield server


@pytest.fixture
def operator(api: ApiServer) -> Iterator[OperatorThread]:
    # Depends on `api`: pytest tears this down first, so kopf stops before the emulator.
    with OperatorThread(api) as running:
        yield running


def maildomain(name: str, domain: str, **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", None)
    doc: dict[str, Any] = {
        "apiVersion": API,
        "kind": "MailDomain",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"domain": domain, **spec},
    }
    if labels:
        doc["metadata"]["labels"] = labels
    return doc


def mailbox(name: str, address: str, secret: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Mailbox",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"address": address, "passwordSecretRef": {"name": secret or name}, **spec},
    }


def password(name: str, value: str = "correct-horse-battery") -> dict[str, Any]:
    # A pre-hashed value keeps bcrypt (~60 ms per password) out of the timings; one test uses a
    # plain password to cover the hashing path.
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS, "labels": {USABLE_BY: "mailboxes"}},
        "stringData": {"password": value},
    }


def conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not obj:
        return {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def condition(obj: dict[str, Any] | None, type_: str) -> str | None:
    return conditions(obj).get(type_, {}).get("status")


def wait_ready(
    api: ApiServer,
    name: str,
    timeout: float = 30,
    generation: int | None = None,
    namespace: str = NS,
) -> dict[str, Any]:
    """The MailDomain once Ready; with ``generation``, once the status speaks of it (a Ready
    written for the previous spec would otherwise do)."""
    return wait_for(
        lambda: (
            (md := api.get("maildomains", name, namespace)) is not None
            and condition(md, "Ready") == "True"
            and (generation is None or md["status"].get("observedGeneration") == generation)
            and md
        ),
        timeout,
    )


def secret_text(obj: dict[str, Any], key: str) -> str:
    return base64.b64decode(obj["data"][key]).decode()


def settle(api: ApiServer, op: OperatorThread, quiet: float = 1.0, timeout: float = 30) -> int:
    """Wait until no write happened for ``quiet`` seconds; return the write count then."""
    import time

    deadline = time.monotonic() + timeout
    count = api.write_count()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = api.write_count()
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet and not op.busy():
            return count
    raise AssertionError("the operator kept writing")
