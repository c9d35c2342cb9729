"""The Grafana dashboard (ops/grafana): valid JSON, provisioned, every query valid PromQL.

No Grafana binary runs here: the live check (every panel's query returns series from a
Prometheus scraping a live API and ops service) is tests/integration/serving/test_console.py.
Here each query is parsed by promtool, as a recording rule of a throw-away rules file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from ops.console import DASHBOARD, dashboard_queries
from tests.support.infra_files import ROOT

GRAFANA = ROOT / "ops" / "grafana"
# What the issue asks the dashboard to show, by a metric each panel group must query.
REQUIRED = {
    "request rate": "fraud_api_requests_total",
    "latency percentiles": "fraud_api_request_seconds_bucket",
    "decisions": "fraud_api_predictions_total",
    "score distribution": "fraud_api_score_bucket",
    "unknown features": "fraud_api_unknown_features_total",
    "late events": "fraud_api_late_beyond_bound_total",
    "drift share": "fraud_ops_drift_share",
    "consistency": "fraud_ops_consistency_mismatches",
    "job status": "fraud_ops_job_success",
}


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"]


def test_dashboard_shows_what_an_operator_needs() -> None:
    text = " ".join(expr for _, expr in dashboard_queries())
    missing = [what for what, metric in REQUIRED.items() if metric not in text]
    assert not missing, f"no panel for {missing}"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query:{i}", "expr": expr}
                    for i, (_, expr) in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not installed (Debian package prometheus)"
    checked = subprocess.run(
        [promtool, "check", "rules", "queries.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(dashboard_queries())} rules found" in checked.stdout
