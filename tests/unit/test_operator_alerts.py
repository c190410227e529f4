"""The operator's alerts (charts/mailstack/files/prometheus/operator-alerts.yaml) under promtool:
the rules check, their test cases pass, every alert has a case that fires and one that stays
silent, asks only for series the operator serves, and has its runbook in docs/operations.md.

promtool comes from Debian's prometheus package (scripts/setup.sh; no server is started): these
tests fail, rather than skip, when it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.controller.metrics import OperatorMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "mailstack" / "files" / "prometheus" / "operator-alerts.yaml"
RULE_TESTS = Path(__file__).parent / "prometheus" / "operator-alerts.test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: run scripts/setup.sh (Debian's prometheus package)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_the_alert_test_cases_pass() -> None:
    # rule_files is relative to the test file: the chart's own file, not a copy.
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert [(RULE_TESTS.parent / f).resolve() for f in tests["rule_files"]] == [RULES]
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_stays_silent() -> None:
    groups = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    for alert in alerts():
        name = alert["alert"]
        cases = [[c for c in g["alert_rule_test"] if c["alertname"] == name] for g in groups]
        firing = [g for g in cases if any(c["exp_alerts"] for c in g)]
        silent = [g for g in cases if g and not any(c["exp_alerts"] for c in g)]
        assert firing and silent, f"{name}: a test that fires and one that stays silent"


def served_series() -> set[str]:
    """Every series name the operator's registry can expose (counters with _total, ...)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    names = set()
    for family in OperatorMetrics().registry.collect():
        for suffix in suffixes.get(family.type, [""]):
            names.add(family.name + suffix)
    return names


def test_the_alerts_ask_only_for_series_the_operator_serves() -> None:
    served = served_series()
    for alert in alerts():
        wanted = set(re.findall(r"\bmailstack_\w+", alert["expr"]))
        assert wanted and wanted <= served, f"{alert['alert']}: {wanted - served}"


def test_every_alert_and_every_series_is_documented() -> None:
    text = OPERATIONS.read_text()
    headings = {h.strip() for h in re.findall(r"^### (.+)$", text, re.MULTILINE)}
    for alert in alerts():
        name = alert["alert"]
        assert name in headings, f"docs/operations.md: no runbook section for {name}"
        assert alert["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}"
    for series in served_series():
        family = re.sub(r"_(total|bucket|count|sum)$", "", series)
        if family.startswith("mailstack_"):
            assert f"`{family}" in text, f"docs/operations.md does not list {family}"
