"""The operator's console, live: the ops service, Prometheus and its alerts, the dashboard's
queries, the Evidently and Feast UIs seen in headless Chromium.

One module-scoped console on a clone of the serving stack, with a redis-server of its own (the
test kills it, and the labels job writes label state: neither may touch the shared Redis):
the API, ``fraud ops run`` (labels every 2 s, freshness every second, drift and consistency
once at start), Debian's ``prometheus`` scraping both every second with the repository's rules,
``evidently ui`` on the clone's workspace and ``feast ui`` on its registry. Transactions are
posted for cards and merchants of their own, later than all the data, so the consistency
check's offline recomputation must agree with what was served.

Screenshots go to ``reports/screenshots/`` of the checkout (the demo names the same files).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from fraud_platform import redis_server
from ops.console import (
    alert_state,
    alerts_page,
    dashboard_queries,
    evidently_command,
    feast_ui_command,
    prometheus_command,
    render,
    write_local_prometheus_config,
)
from tests.support import stack
from tests.support.frames import write_reference
from tests.support.live_api import API_KEY, Stack, start_live
from tests.support.live_api import stop as stop_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCREENSHOTS = stack.MAIN / "reports" / "screenshots"
LABELS_PERIOD = 2.0
LABEL_MERCHANT, LABEL_CUSTOMER = "console-m0", "console-c0"
TRAFFIC_ROWS = 40


@dataclass
class Console:
    root: Path
    env: dict[str, str]
    api: str
    ops: str
    prometheus: str
    evidently: str
    feast: str
    redis_port: int
    meta: dict[str, Any]
    procs: dict[str, subprocess.Popen[bytes]]

    def runs(self) -> list[dict[str, Any]]:
        path = self.root / "reports" / "ops" / "runs.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def firing(self, alert: str) -> bool:
        return alert_state(self.prometheus, alert) == "firing"


def _wait(what: str, check: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} ({last_error})")


def _answers(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


def _spawn(name: str, command: list[str], root: Path, env: dict[str, str], cwd: Path) -> Any:
    log = (root / f"{name}.log").open("ab")
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def _add_label_source_rows(root: Path, at: pd.Timestamp) -> None:
    """A transaction of the label merchant at ``at`` in the raw table (atomically replaced)."""
    raw = root / "data" / "raw"
    txns = pd.read_parquet(raw / "transactions.parquet")
    row = txns.iloc[[0]].copy()
    row["transaction_id"] = "console-t0"
    row["customer_id"], row["merchant_id"], row["timestamp"] = LABEL_CUSTOMER, LABEL_MERCHANT, at
    tmp = raw / "transactions.parquet.tmp"
    pd.concat([txns, row], ignore_index=True).to_parquet(tmp, index=False)
    os.replace(tmp, raw / "transactions.parquet")


def _write_label(root: Path, at: pd.Timestamp) -> None:
    """The label of that transaction (a fraud) appended to the label source, atomically."""
    raw = root / "data" / "raw"
    labels = pd.read_parquet(raw / "labels.parquet")
    row = labels.iloc[[0]].copy()
    row["transaction_id"], row["label_timestamp"], row["is_fraud"] = "console-t0", at, True
    tmp = raw / "labels.parquet.tmp"
    pd.concat([labels, row], ignore_index=True).to_parquet(tmp, index=False)
    os.replace(tmp, raw / "labels.parquet")


def _body(customer: str, merchant: str, at: pd.Timestamp, amount: float) -> dict[str, Any]:
    return {
        "timestamp": at.isoformat(),
        "customer_id": customer,
        "merchant_id": merchant,
        "amount": amount,
        "lat": 40.7,
        "long": -73.9,
    }


def _page(url: str, screenshot: Path, budget_ms: int = 8000) -> str:
    """The rendered DOM of ``url``; its screenshot must be a real picture, not a blank page."""
    dom = render(url, screenshot, budget_ms)
    assert screenshot.stat().st_size > 10_000, f"{screenshot} looks blank"
    return dom


@pytest.fixture(scope="module")
def console(serving_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = stack.clone_root(serving_stack.root, tmp_path_factory.mktemp("console") / "root")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    redis_port = stack.free_port()
    server = redis_server.start(root=root, port=redis_port)  # the console's own Redis
    meta = serving_stack.meta
    last = pd.Timestamp(meta["last_timestamp"])
    _add_label_source_rows(root, last + timedelta(hours=1))
    write_reference(root)  # the drift reference training would have written
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ops"] = {
        "every_seconds": {
            "labels": LABELS_PERIOD, "freshness": 1, "drift": 3600, "consistency": 3600,
        },
        "drift_window_rows": 500, "consistency_window_rows": 40,
        "retries": 1, "retry_backoff_seconds": 0.5,
    }  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        env = serving_stack.api_env(root, REDIS_URL=server.url)
        fraud = str(Path(sys.executable).with_name("fraud"))
        loaded = subprocess.run(
            [fraud, "features", "materialize", "--end", meta["slice_start"]],
            env=env, cwd=root, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert loaded.returncode == 0, loaded.stdout[-2000:] + loaded.stderr[-3000:]
        # In-process ingestion: this clone's Redis has no stream worker, and ingestion is not
        # what the console test is about.
        api_proc, api, env = start_live(
            serving_stack, root, REDIS_URL=server.url, SERVING_INGEST_MODE="async"
        )
        procs["api"] = api_proc
        # The held-out slice, in order: what drift and consistency will check. Served from the
        # console's Redis, loaded (above) to the slice's start like the shared one.
        held_out = pd.read_parquet(root / "slice.parquet").head(TRAFFIC_ROWS)
        with httpx.Client(base_url=api, timeout=30) as client:
            for row in held_out.itertuples():
                body = _body(row.customer_id, row.merchant_id, row.timestamp, row.amount)
                body.update(transaction_id=row.transaction_id, lat=row.lat, long=row.long)
                answer = client.post("/predict", json=body, headers={"X-API-Key": API_KEY})
                assert answer.status_code == 200, answer.text
        time.sleep(1.5)  # the prediction log's fsync interval (1 s)
        ports = {name: stack.free_port() for name in ("ops", "prometheus", "evidently", "feast")}
        procs["ops"] = _spawn(
            "ops", [fraud, "ops", "run", "--port", str(ports["ops"])], root, env, root
        )
        config = write_local_prometheus_config(
            root / "prometheus",
            api_target=api.removeprefix("http://"),
            ops_target=f"127.0.0.1:{ports['ops']}",
            interval="1s",
        )
        procs["prometheus"] = _spawn(
            "prometheus",
            prometheus_command(config, root / "prometheus" / "data", ports["prometheus"]),
            root, env, root,
        )  # fmt: skip
        procs["evidently"] = _spawn(
            "evidently",
            evidently_command(root / "reports" / "evidently", ports["evidently"]),
            root, env, root,
        )  # fmt: skip
        feast_env = {**env, **_feast_environment(root, server.url)}
        procs["feast"] = _spawn(
            "feast", feast_ui_command(ports["feast"]), root, feast_env, stack.MAIN / "feature_repo"
        )
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        console = Console(
            root, env, api, urls["ops"], urls["prometheus"], urls["evidently"], urls["feast"],
            redis_port, meta, procs,
        )  # fmt: skip
        _wait("ops /metrics", lambda: _answers(f"{console.ops}/metrics"), 60)
        _wait("prometheus", lambda: _answers(f"{console.prometheus}/-/ready"), 60)
        yield console
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                stop_process(proc)
        redis_server.stop(root)


def _feast_environment(root: Path, redis_url: str) -> dict[str, str]:
    from fraud_platform.settings import Settings, feast_environment

    return feast_environment(Settings(project_root=root, redis_url=redis_url))


def _first_runs(console: Console, jobs: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    def done() -> dict[str, dict[str, Any]] | None:
        runs: dict[str, dict[str, Any]] = {}
        for run in console.runs():
            runs.setdefault(run["job"], run)
        return runs if jobs <= set(runs) else None

    found: dict[str, dict[str, Any]] = _wait(f"first runs of {sorted(jobs)}", done, timeout)
    return found


def test_drift_and_consistency_run_on_schedule_and_agree_with_serving(console: Console) -> None:
    runs = _first_runs(console, {"labels", "drift", "consistency", "freshness"}, 240)
    for job, run in runs.items():
        assert run["result"] == "success", (job, run)
        assert run["seconds"] >= 0
    assert runs["drift"]["details"]["checked"] is True
    assert runs["drift"]["details"]["rows"] == TRAFFIC_ROWS
    consistency = runs["consistency"]["details"]
    assert consistency["checked"] and consistency["rows"] == TRAFFIC_ROWS
    assert consistency["mismatches"] == 0 and consistency["failing"] == []
    metrics = httpx.get(f"{console.ops}/metrics", timeout=5).text
    assert 'fraud_ops_job_success{job_name="consistency"} 1.0' in metrics
    assert 'fraud_ops_consistency_failing{service="fraud_scoring_v1"} 0.0' in metrics


def test_labels_written_to_the_source_reach_the_online_state_within_one_period(
    console: Console,
) -> None:
    _first_runs(console, {"labels", "drift", "consistency"}, 240)
    last = pd.Timestamp(console.meta["last_timestamp"])
    probe_at = last + timedelta(days=3)  # a later UTC day: the label's day is complete

    def rate(i: int) -> Any:
        body = _body(f"console-probe{i}", LABEL_MERCHANT, probe_at + timedelta(seconds=i), 10.0)
        answer = httpx.post(
            f"{console.api}/predict", json=body, headers={"X-API-Key": API_KEY}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["features"]["merchant_fraud_rate_30d"]

    before = rate(0)
    assert before != 1.0
    written = time.time()
    _write_label(console.root, last + timedelta(hours=1, minutes=1))

    def folded() -> dict[str, Any] | None:
        for run in console.runs():
            started = pd.Timestamp(run["started_at"]).timestamp()
            if run["job"] == "labels" and started >= written and run["details"]["applied"]:
                return run
        return None

    run = _wait("a labels run that folds the new label", folded, 4 * LABELS_PERIOD + 30)
    # No manual command: the first labels run after the write folded it, within one period.
    delay = pd.Timestamp(run["started_at"]).timestamp() - written
    assert delay <= LABELS_PERIOD + 0.5, delay
    assert run["details"]["applied"] == 1
    assert rate(1) == 1.0  # the merchant's one label, a fraud: online at once


def test_every_dashboard_query_returns_series(console: Console) -> None:
    _first_runs(console, {"labels", "drift", "consistency", "freshness"}, 240)
    queries = dashboard_queries()
    assert len(queries) >= 10

    def all_answer() -> list[str] | None:
        empty = [f"{title}: {expr}" for title, expr in queries if not console.query(expr)]
        return None if empty else ["ok"]

    try:
        _wait("every dashboard query to return series", all_answer, 60, every=1)
    except AssertionError:
        empty = [f"{title}: {expr}" for title, expr in queries if not console.query(expr)]
        raise AssertionError(f"queries without series: {empty}") from None
    drift_share = console.query("fraud_ops_drift_share")
    assert drift_share[0]["metric"]["service"] == "fraud_scoring_v1"


def test_redis_down_alert_fires_within_its_window_and_resolves(console: Console) -> None:
    _first_runs(console, {"freshness"}, 60)
    _wait("Redis up seen by Prometheus", lambda: console.query("fraud_ops_redis_up == 1"), 30)
    assert not console.firing("FraudRedisDown")
    pid = int((console.root / ".run" / "redis" / "redis.pid").read_text())
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)  # our own redis-server, by its pid
    _wait("FraudRedisDown firing", lambda: console.firing("FraudRedisDown"), 60)
    fired_after = time.monotonic() - killed
    # `for: 15s`, plus detection (probe, scrape and evaluation every second).
    assert 15 <= fired_after <= 15 + 10, fired_after
    print(f"FraudRedisDown fired {fired_after:.1f} s after Redis was killed (for: 15s)")
    dom = _page(alerts_page(console.prometheus), SCREENSHOTS / "prometheus-alerts.png")
    assert "FraudRedisDown" in dom and "firing" in dom.lower()

    (console.root / ".run" / "redis" / "redis.pid").unlink(missing_ok=True)
    restarted = time.monotonic()
    redis_server.start(root=console.root, port=console.redis_port)
    _wait("FraudRedisDown resolved", lambda: not console.firing("FraudRedisDown"), 60)
    print(f"FraudRedisDown resolved {time.monotonic() - restarted:.1f} s after the restart")


def test_evidently_ui_shows_the_project_and_its_snapshots(console: Console) -> None:
    _first_runs(console, {"drift", "consistency"}, 240)
    projects = httpx.get(f"{console.evidently}/api/projects", timeout=10)
    _wait("evidently ui", lambda: _answers(f"{console.evidently}/api/projects"), 60)
    projects = httpx.get(f"{console.evidently}/api/projects", timeout=10).json()
    (project,) = [p for p in projects if p["name"] == "fraud_scoring_v1"]
    home = _page(console.evidently, SCREENSHOTS / "evidently-projects.png")
    assert "fraud_scoring_v1" in home
    page = _page(
        f"{console.evidently}/projects/{project['id']}/reports",
        SCREENSHOTS / "evidently-snapshots.png",
    )
    assert "drift " in page and "consistency " in page  # the two snapshots, by name


def test_feast_ui_shows_the_registry(console: Console) -> None:
    _wait("feast ui", lambda: _answers(console.feast), 90)
    home = _page(f"{console.feast}/p/fraud_platform", SCREENSHOTS / "feast-ui.png", 12000)
    assert "fraud_platform" in home and "Feature Services" in home
    services = _page(
        f"{console.feast}/p/fraud_platform/feature-service",
        SCREENSHOTS / "feast-ui-services.png",
        12000,
    )
    assert "fraud_scoring_v1" in services and "fraud_scoring_v2" in services
