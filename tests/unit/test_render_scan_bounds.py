"""The scanner's bounds as rendered: one message's scan is bounded by rspamd's task timeout, and
Postfix waits a little longer than that, never its defaults (30 s a command, 300 s a message);
``spec.spam.onScanFailure`` decides both what Postfix does when the milter fails and what the
"too complex" filter does with a message over the scan limits."""

from __future__ import annotations

import re

import pytest

from mailstack.api.assemble import MailService
from mailstack.api.models import Spam
from mailstack.render.postfix import render_postfix_main_cf
from mailstack.render.rspamd import SCAN_LIMITS, SCAN_TIMEOUT_SECONDS, render_rspamd_config
from tests.parsers import parse_main_cf
from tests.support import example_service

# Any public key fingerprint: these tests read the milter settings, not the LMTP client's.
MDA_FINGERPRINT = ":".join(["AB"] * 32)


def service(on_scan_failure: str) -> MailService:
    return example_service(spam=Spam(on_scan_failure=on_scan_failure))


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return int(match.group(1))


@pytest.mark.parametrize(("policy", "lua_accept"), [("tempfail", "false"), ("accept", "true")])
def test_the_scan_failure_policy_reaches_postfix_and_the_complexity_filter(
    policy: str, lua_accept: str
) -> None:
    params = parse_main_cf(render_postfix_main_cf(service(policy), MDA_FINGERPRINT))
    assert params["milter_default_action"] == policy
    lua = render_rspamd_config(service(policy))["rspamd.lua"]
    assert re.search(rf"^local accept = {lua_accept}$", lua, re.M)
    assert re.search(rf"^local max_parts = {SCAN_LIMITS.max_parts} ", lua, re.M)


def test_postfix_waits_longer_than_rspamd_scans_and_rspamd_scans_with_more_than_one_process() -> (
    None
):
    params = parse_main_cf(render_postfix_main_cf(service("tempfail"), MDA_FINGERPRINT))
    assert seconds(params["milter_content_timeout"]) > SCAN_TIMEOUT_SECONDS
    assert seconds(params["milter_command_timeout"]) < 30
    files = render_rspamd_config(service("tempfail"))
    proxy = files["worker-proxy.inc"]
    assert re.search(rf"^\s+timeout = {SCAN_TIMEOUT_SECONDS}s;$", proxy, re.M)  # the upstream's
    count = re.search(r"^count = (\d+);$", proxy, re.M)
    assert count and int(count.group(1)) > 1
    assert f"task_timeout = {SCAN_TIMEOUT_SECONDS}s;" in files["options.inc"]
