"""Schemathesis against the live API (real uvicorn, Redis, Feast, MLflow): no 5xx, all documented.

Schemathesis reads ``/openapi.json`` and sends generated requests, valid and invalid
(coverage phase: boundary values such as year-1 and year-9999 timestamps with offsets; fuzzing
phase: random ones), to every operation, and checks each answer: ``not_a_server_error`` (no
5xx), ``status_code_conformance`` (every status is in the schema), content type and body
against the documented response schemas, invalid data rejected, missing auth refused, and so
on (``--checks all``). One check is left out: ``positive_data_acceptance`` expects every
schema-valid body to be accepted, but a timestamp more than ``serve.max_future_skew_seconds``
ahead of *now* is refused by design, and no static schema can say "before now + 5 min".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live_api import API_KEY, Live

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The suite's run: ~150 examples per operation (a few hundred cases in all). `make fuzz` runs
# the long one (FUZZ_MAX_EXAMPLES=450 FUZZ_MIN_CASES=1000), the same checks on more cases.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "150"))
MIN_CASES = int(os.environ.get("FUZZ_MIN_CASES", "300"))
SEED = int(os.environ.get("FUZZ_SEED", "20261126"))  # fixed: a red run can be replayed


def test_openapi_documents_every_status_of_the_scoring_routes(live: Live) -> None:
    schema = live.client.get("/openapi.json").json()
    for path in ("/predict", "/predict/batch"):
        documented = set(schema["paths"][path]["post"]["responses"])
        assert documented == {"200", "400", "401", "413", "422", "503"}, path
    assert set(schema["paths"]["/ready"]["get"]["responses"]) == {"200", "503"}


def test_schemathesis_finds_no_server_error_and_no_undocumented_status(
    live: Live, tmp_path: Path
) -> None:
    report = tmp_path / "schemathesis.json"
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")), "run",
            f"{live.base}/openapi.json",
            "--header", f"X-API-Key: {API_KEY}",
            "--checks", "all",
            "--exclude-checks", "positive_data_acceptance",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", str(SEED),
            "--workers", "1",
            "--continue-on-failure",
            "--request-timeout", "10",
            "--report", "json", "--report-json-path", str(report),
        ],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,  # its cache
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    summary = json.loads(report.read_text())
    print(run.stdout[-3000:])
    cases = summary["test_cases"]
    print(f"schemathesis: {cases['generated']} cases, seed {SEED}")
    assert summary["failures"] == [], run.stdout[-6000:]
    assert summary["errors"] == [], run.stdout[-6000:]
    assert run.returncode == 0, run.stdout[-6000:]
    assert cases["generated"] >= MIN_CASES
    assert summary["operations"]["tested"] == summary["operations"]["total"] == 6
    assert live.proc.poll() is None
