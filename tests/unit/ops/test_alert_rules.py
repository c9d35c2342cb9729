"""The alert rules (ops/prometheus/rules.yml): valid, unit-tested with promtool, well formed.

``promtool test rules`` feeds each rule synthetic series and states when it fires and when it
does not (ops/prometheus/rules_test.yml); this module runs it and checks that every alert is
covered both ways, carries ``for:``, a severity and a runbook anchor that the operations page
has, and watches only metrics the API or the ops service really export.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.infra_files import ROOT

PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
RULES_TEST = PROMETHEUS_DIR / "rules_test.yml"
CONSOLE_DOC = ROOT / "docs" / "operations" / "console.md"
METRIC_NAME = re.compile(r"\b(fraud_(?:api|ops)_[a-z0-9_]+)")


def _promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not installed (Debian package prometheus)"
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_and_config_are_valid() -> None:
    rules = _promtool("check", "rules", RULES.name)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = _promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_pass() -> None:
    completed = _promtool("test", "rules", RULES_TEST.name)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "SUCCESS" in completed.stdout


def test_promtool_test_fails_when_an_expectation_is_wrong(tmp_path: Path) -> None:
    # The unit tests can fail: a wrong expected annotation is reported as a failure.
    shutil.copy(RULES, tmp_path / RULES.name)
    broken = RULES_TEST.read_text().replace("49.75ms", "12ms")
    (tmp_path / RULES_TEST.name).write_text(broken)
    completed = _promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert completed.returncode != 0
    assert "FraudApiLatencyP99OverSlo" in completed.stdout + completed.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases: dict[str, dict[str, int]] = {}
    for test in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            counts = cases.setdefault(case["alertname"], {"firing": 0, "quiet": 0})
            counts["firing" if case.get("exp_alerts") else "quiet"] += 1
    for alert in _alerts():
        name = alert["alert"]
        assert cases.get(name, {}).get("firing"), f"{name}: no case where it fires"
        assert cases.get(name, {}).get("quiet"), f"{name}: no case where it stays quiet"


@pytest.mark.parametrize("alert", _alerts(), ids=lambda rule: rule["alert"])
def test_alert_is_well_formed(alert: dict[str, Any]) -> None:
    assert alert.get("for"), "no for: window (one bad scrape would page someone)"
    assert alert["labels"]["severity"] in {"warning", "critical"}
    assert alert["annotations"]["summary"]
    runbook = alert["annotations"]["runbook"]
    page, _, anchor = runbook.partition("#")
    assert (ROOT / page) == CONSOLE_DOC
    assert anchor == alert["alert"].lower()
    headings = re.findall(r"^#+ (\S+)", CONSOLE_DOC.read_text(), flags=re.MULTILINE)
    assert alert["alert"] in headings, f"{CONSOLE_DOC.name} has no section {alert['alert']}"


def test_rules_watch_only_exported_metrics() -> None:
    from prometheus_client import generate_latest

    from ops.metrics import OpsMetrics
    from serving.metrics import Metrics

    exported = b"".join(generate_latest(m.registry) for m in (Metrics(), OpsMetrics())).decode()
    suffixes = {"counter": ("", "_total"), "histogram": ("_bucket", "_sum", "_count")}
    names = {
        name + suffix
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)", exported, flags=re.MULTILINE)
        for suffix in suffixes.get(kind, ("",))
    }
    used = set(METRIC_NAME.findall(RULES.read_text()))
    assert used, "no metric found in the rules"
    assert used <= names, f"rules name metrics nobody exports: {sorted(used - names)}"
