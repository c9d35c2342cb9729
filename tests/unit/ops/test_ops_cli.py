"""``fraud ops run``: bad configuration answered before start, retries, the run history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from typer.testing import CliRunner

from fraud_cli.main import app
from ops.metrics import OpsMetrics
from ops.scheduler import Job, Scheduler
from tests.support.stack import free_port

runner = CliRunner()


def _set_ops(root: Path, **values: object) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in values.items():
        node = params.setdefault("ops", {})
        *parents, leaf = dotted.split("__")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(params))


def test_a_schedule_of_zero_is_an_error_naming_the_setting(project: Path) -> None:
    _set_ops(project, every_seconds__labels=0)
    result = runner.invoke(app, ["ops", "run", "--once"])
    assert result.exit_code == 2, result.output
    assert "error: " in result.output
    assert "ops.every_seconds.labels" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_prometheus_is_an_error_naming_the_setting(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraud_platform.settings import get_settings

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("PROMETHEUS_URL", url)
    get_settings.cache_clear()
    result = runner.invoke(app, ["ops", "run", "--once", "--jobs", "freshness"])
    assert result.exit_code == 2, result.output
    assert f"error: cannot reach Prometheus at {url} (PROMETHEUS_URL)" in result.output


def test_an_unknown_job_is_an_error(project: Path) -> None:
    result = runner.invoke(app, ["ops", "run", "--once", "--jobs", "labels,backup"])
    assert result.exit_code == 2, result.output
    assert "--jobs" in result.output and "backup" in result.output


def test_a_failing_probe_is_retried_reported_and_exported(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraud_platform.settings import get_settings

    _set_ops(project, retries=1, retry_backoff_seconds=0)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # no Redis there
    get_settings.cache_clear()
    result = runner.invoke(app, ["ops", "run", "--once", "--jobs", "freshness"])
    assert result.exit_code == 1, result.output
    assert "freshness attempt 1/2 failed" in result.output
    (line,) = (project / "reports" / "ops" / "runs.jsonl").read_text().splitlines()
    run = json.loads(line)
    assert run["job"] == "freshness" and run["result"] == "failure" and run["attempts"] == 2
    assert "REDIS_URL" in run["error"]


def test_retries_until_success_and_metrics_say_so(tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky() -> dict[str, object]:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"attempt {len(calls)} broke")
        return {"done": len(calls)}

    def broken() -> dict[str, object]:
        raise ValueError("always")

    metrics = OpsMetrics()
    lines: list[str] = []
    scheduler = Scheduler(
        [Job("flaky", 30, flaky), Job("broken", 60, broken)],
        metrics,
        retries=2,
        retry_backoff_seconds=0,
        history=tmp_path / "runs.jsonl",
        echo=lines.append,
    )
    ok = scheduler.run_once(scheduler.jobs[0])
    bad = scheduler.run_once(scheduler.jobs[1])
    assert (ok.result, ok.attempts, ok.details) == ("success", 3, {"done": 3})
    assert (bad.result, bad.attempts, bad.error) == ("failure", 3, "ValueError: always")
    text = generate_latest(metrics.registry).decode()
    assert 'fraud_ops_job_success{job_name="flaky"} 1.0' in text
    assert 'fraud_ops_job_success{job_name="broken"} 0.0' in text
    assert 'fraud_ops_job_retries_total{job_name="flaky"} 2.0' in text
    assert 'fraud_ops_job_period_seconds{job_name="broken"} 60.0' in text
    assert 'fraud_ops_job_runs_total{job_name="broken",result="failure"} 1.0' in text
    assert 'last_success_timestamp_seconds{job_name="flaky"}' in text
    assert 'last_success_timestamp_seconds{job_name="broken"}' not in text  # never succeeded
    history = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [h["result"] for h in history] == ["success", "failure"]
    assert any("broken failure" in line for line in lines)


def test_the_local_prometheus_config_points_at_local_targets(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from ops.console import write_local_prometheus_config

    config = write_local_prometheus_config(
        tmp_path, api_target="127.0.0.1:8123", ops_target="127.0.0.1:9123", interval="1s"
    )
    parsed = yaml.safe_load(config.read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in parsed["scrape_configs"]}
    assert targets == {"fraud-api": ["127.0.0.1:8123"], "fraud-ops": ["127.0.0.1:9123"]}
    assert parsed["global"]["scrape_interval"] == "1s"
    promtool = shutil.which("promtool")
    assert promtool, "promtool not installed (Debian package prometheus)"
    checked = subprocess.run(
        [promtool, "check", "config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr  # the rules copied beside it


def test_ui_commands_answer_bad_input_with_exit_2() -> None:
    none = runner.invoke(app, ["ui", "screenshots"])
    assert none.exit_code == 2 and "error: give at least one of" in none.output
    state = runner.invoke(
        app, ["ui", "wait-alert", "FraudRedisDown", "--prometheus", "http://x", "--state", "up"]
    )
    assert state.exit_code == 2 and "--state" in state.output
