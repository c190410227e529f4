"""The MTA's readiness check of its next hops (``agent.next_hops``) and how ``/readyz`` alone
carries it: read from the rendered main.cf, resolved and connected to for real on loopback."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from mailstack.agent import daemons
from mailstack.agent import next_hops as next_hops_module
from mailstack.agent.health import HealthState, serve_health
from mailstack.agent.next_hops import (
    inet_endpoint,
    main_cf_parameters,
    next_hops,
    probe_next_hops,
    reach,
    resolve,
)
from tests.unit.test_agent import _get

GOLDEN_MAIN_CF = (
    Path(__file__).resolve().parents[1] / "golden/files/mail/example-com-postfix/main.cf"
)


def test_the_rendered_main_cf_names_the_lmtp_service() -> None:
    # Postfix takes no logins: no auth service to reach (587 and 465 are Dovecot's).
    assert next_hops(GOLDEN_MAIN_CF.read_text()) == [("LMTP", "example-com-mda", 24)]


def test_main_cf_parameters_skip_comments_and_join_continuations() -> None:
    text = "# virtual_transport = lmtp:inet:x:1\nsmtpd_sasl_path =\n  inet:a:2\nb = c = d\n"
    assert main_cf_parameters(text) == {"smtpd_sasl_path": "inet:a:2", "b": "c = d"}


def test_destinations_in_each_postfix_form() -> None:
    assert inet_endpoint("lmtp:inet:mda:24") == ("mda", 24)
    assert inet_endpoint("lmtp:[10.0.0.2]:24") == ("10.0.0.2", 24)
    assert inet_endpoint("inet:[::1]:12345") == ("::1", 12345)
    assert inet_endpoint("lmtp:unix:private/dovecot-lmtp") is None
    assert inet_endpoint("private/auth") is None
    assert inet_endpoint("virtual") is None
    assert inet_endpoint("inet:mda:port") is None


def test_the_probe_names_what_does_not_resolve_or_answer(tmp_path: Path) -> None:
    main_cf = tmp_path / "main.cf"
    main_cf.write_text(GOLDEN_MAIN_CF.read_text())
    addresses = {"example-com-mda": "10.9.9.9"}
    refused: set[int] = set()
    probe = probe_next_hops(
        str(main_cf),
        resolver=addresses.get,
        connector=lambda address, port: "refused" if port in refused else None,
    )
    assert probe() is None
    refused.add(24)
    assert probe() == "LMTP service example-com-mda:24 (10.9.9.9): refused"
    addresses.clear()
    assert probe() == ("LMTP service example-com-mda does not resolve")
    main_cf.unlink()
    assert "main.cf" in (probe() or "")


def test_resolve_and_reach_for_real_on_loopback() -> None:
    assert resolve("localhost") in ("127.0.0.1", "::1")
    assert resolve("no-such-service.invalid") is None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        assert reach("127.0.0.1", listener.getsockname()[1]) is None
        port = listener.getsockname()[1]
    assert reach("127.0.0.1", port) is not None  # closed: refused


def test_readiness_probes_decide_readyz_but_not_healthz() -> None:
    """Dovecot down must take the MTA out of its Services, never get Postfix restarted."""
    problems: list[str] = []
    state = HealthState([], readiness=[lambda: problems[0] if problems else None])
    state.running = True
    server = serve_health(state, 0, host="127.0.0.1")
    try:
        assert _get(server.port, "/readyz") == (200, "ok\n")
        problems.append("LMTP service mda:24: refused")
        assert _get(server.port, "/readyz") == (503, "LMTP service mda:24: refused\n")
        assert _get(server.port, "/healthz") == (200, "ok\n")
    finally:
        server.shutdown()


def test_postfix_is_ready_only_with_its_next_hops() -> None:
    postfix = daemons.postfix()
    assert len(postfix.readiness) == 1
    assert [d.readiness for d in (daemons.dovecot(), daemons.rspamd())] == [[], []]


def test_a_resolver_that_never_answers_gives_not_resolved_within_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A getent that hangs, as one behind an unanswering DNS server does.
    hanging = tmp_path / "getent"
    hanging.write_text("#!/bin/sh\nexec sleep 30\n")
    hanging.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(next_hops_module, "RESOLVE_TIMEOUT", 1)
    started = time.monotonic()
    assert resolve("example-com-mda") is None
    assert time.monotonic() - started < 10
