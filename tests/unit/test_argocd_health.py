"""docs/argocd-health.lua under Lua 5.1 (lupa), as Argo CD runs it, against operator statuses.

The statuses are built with the operator's own status functions (``controller.status``), so the
script is tested against exactly what the operator writes, plus hand-made edge cases (no status,
a stale generation, a stale condition).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.controller import plan
from mailstack.controller import status as status_documents
from mailstack.controller.conditions import Condition, orphan_verdict
from mailstack.controller.status import DOMAIN_CONDITIONS, condition_list, summarise

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "argocd-health.lua"
DOC = ROOT / "docs" / "argocd.md"
NOW = datetime(2026, 11, 1, tzinfo=UTC)

try:
    from lupa import lua51
except ImportError:  # pragma: no cover - lupa is a test dependency
    pytest.fail("lupa with Lua 5.1 is required (pip install lupa)", pytrace=False)


def to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:  # JSON null is absent in Lua
                table[key] = to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = to_lua(runtime, item)
        return table
    return value


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    assert runtime.eval("_VERSION") == "Lua 5.1"
    runtime.globals().obj = to_lua(runtime, obj)
    result = runtime.execute(SCRIPT.read_text())
    return str(result["status"]), str(result["message"] or "")


def domain(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "MailDomain",
        "metadata": {"name": "example-org", "namespace": "mail", "generation": generation},
        "spec": {"domain": "example.org"},
    }
    if status is not None:
        doc["status"] = status
    return doc


def domain_status(generation: int, **overrides: Condition) -> dict[str, Any]:
    """A status as the operator writes it, every condition True unless overridden."""
    conditions = [
        overrides.get("Valid", Condition("Valid", "True", "Valid", "the spec is valid")),
        overrides.get("Rendered", Condition("Rendered", "True", "Applied", "16 objects applied")),
        overrides.get(
            "WorkloadsReady", Condition("WorkloadsReady", "True", "Ready", "mta: 1/1 ready")
        ),
        overrides.get(
            "CertificateReady", Condition("CertificateReady", "True", "Issued", "internal CA")
        ),
        overrides.get(
            "DNSReady", Condition("DNSReady", "Unknown", "NotConfigured", "publish the records")
        ),
    ]
    ready = summarise(conditions, "the mail service")
    # Informative, not summarised into Ready: Argo CD's health follows Ready alone.
    identity = overrides.get(
        "OutboundIdentityVerified",
        Condition("OutboundIdentityVerified", "Unknown", "NotConfigured", "no addresses"),
    )
    # A warning, outside the Ready summary (controller.masked_clients).
    masked = overrides.get(
        "ClientAddressesMasked",
        Condition("ClientAddressesMasked", "False", "NoMaskedClients", "none seen"),
    )
    return {
        "observedGeneration": generation,
        "conditions": condition_list(
            [ready, *conditions, identity, masked], DOMAIN_CONDITIONS, None, generation, NOW
        ),
    }


def test_a_failed_outbound_identity_keeps_the_domain_healthy() -> None:
    failed = Condition("OutboundIdentityVerified", "False", "PTRMismatch", "81.2.69.142: ...")
    assert health(domain(3, domain_status(3, OutboundIdentityVerified=failed)))[0] == "Healthy"


def test_masked_client_addresses_leave_a_ready_domain_healthy() -> None:
    masked = Condition("ClientAddressesMasked", "True", "MaskedClientsSeen", "10.244.0.7 on 25")
    status, message = health(domain(3, domain_status(3, ClientAddressesMasked=masked)))
    assert status == "Healthy" and message == "the mail service is ready"


def test_no_status_yet_is_progressing() -> None:
    assert health(domain(1, None))[0] == "Progressing"
    assert health(domain(1, {"observedGeneration": 1}))[0] == "Progressing"


def test_ready_current_generation_is_healthy() -> None:
    status, message = health(domain(3, domain_status(3)))
    assert status == "Healthy" and message == "the mail service is ready"


def test_verdicts_about_an_older_generation_are_not_trusted() -> None:
    assert health(domain(4, domain_status(3)))[0] == "Progressing"
    bad = domain_status(3, Valid=Condition("Valid", "False", "InvalidSpec", "spec.x: no"))
    assert health(domain(4, bad))[0] == "Progressing"
    # status.observedGeneration current, but the Ready condition still from before.
    stale = domain_status(4)
    stale["conditions"][0]["observedGeneration"] = 3
    assert health(domain(4, stale))[0] == "Progressing"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (Condition("Valid", "False", "InvalidSpec", "spec.catchAll: not a Mailbox"), "Degraded"),
        (Condition("Rendered", "False", "ApplyFailed", "apply StatefulSet: 422"), "Degraded"),
        (
            Condition("CertificateReady", "False", "ACMENotAvailable", "internal CA meanwhile"),
            "Degraded",
        ),
        (
            Condition("WorkloadsReady", "False", "PodRejected", "mta: violates PodSecurity"),
            "Degraded",
        ),
        (Condition("WorkloadsReady", "False", "NotReady", "mda: 0/1 ready"), "Progressing"),
        (Condition("WorkloadsReady", "False", "RollingOut", "mta: rolling out"), "Progressing"),
        (Condition("WorkloadsReady", "Unknown", "Pending", "waiting"), "Progressing"),
        (Condition("DNSReady", "Unknown", "WaitingForExternalDNS", "x"), "Progressing"),
    ],
)
def test_not_ready_is_degraded_only_for_what_needs_a_fix(
    override: Condition, expected: str
) -> None:
    status, message = health(domain(2, domain_status(2, **{override.type: override})))
    assert status == expected
    assert override.message in message


def test_real_operator_status_of_an_invalid_domain() -> None:
    rendered = plan.render_domain(
        plan.DomainInputs(
            domain={
                **domain(5, None),
                "spec": {"domain": "example.org", "catchAll": "x@example.org"},
            },
            siblings=(),
            mailboxes=(),
            secrets={},
            now=NOW,
        )
    )
    status = status_documents.domain_status(rendered, generation=5, previous=None, now=NOW)
    verdict, message = health(domain(5, status))
    assert verdict == "Degraded" and message.startswith("Valid: spec.catchAll")


def mailbox(generation: int, valid: Condition, ready: Condition, **spec: Any) -> dict[str, Any]:
    status = status_documents.mailbox_status(
        valid, ready, generation=generation, previous=None, now=NOW, domain_name="example-org"
    )
    return {
        "apiVersion": "mailstack.dev/v1alpha1",
        "kind": "Mailbox",
        "metadata": {"name": "alice", "generation": generation},
        "spec": {"address": "alice@example.org", **spec},
        "status": status,
    }


def test_mailbox_health() -> None:
    valid = Condition("Valid", "True", "Valid", "the spec is valid")
    ready = Condition("Ready", "True", "Ready", "served by MailDomain example-org")
    assert health(mailbox(1, valid, ready)) == ("Healthy", "served by MailDomain example-org")
    assert health(mailbox(2, valid, ready, suspended=True))[0] == "Suspended"
    missing = Condition("Valid", "False", "PasswordUnavailable", "Secret alice not found")
    not_ready = Condition("Ready", "False", "PasswordUnavailable", "no login: Secret alice ...")
    assert health(mailbox(1, missing, not_ready))[0] == "Degraded"
    orphan_valid, orphan_ready = orphan_verdict(
        {"metadata": {"namespace": "mail"}, "spec": {"address": "a@nowhere.example"}}
    )
    status, message = health(mailbox(1, orphan_valid, orphan_ready))
    assert status == "Degraded" and "nowhere.example" in message
    stale = mailbox(3, valid, ready)
    stale["status"]["observedGeneration"] = 2
    assert health(stale)[0] == "Progressing"


def test_the_argocd_cm_snippet_holds_the_script_for_both_kinds() -> None:
    text = DOC.read_text()
    (block,) = re.findall(r"```yaml\n(apiVersion: v1\nkind: ConfigMap\n.*?)```", text, re.S)
    config = yaml.safe_load(block)
    assert config["metadata"]["name"] == "argocd-cm"
    script = SCRIPT.read_text()
    for kind in ("MailDomain", "Mailbox"):
        assert config["data"][f"resource.customizations.health.mailstack.dev_{kind}"] == script
