"""``fraud serve api --workers 2``: read-your-writes across workers, one ``/metrics`` for all.

A real ``fraud serve api --workers 2`` (uvicorn with two worker processes sharing the port) on a
copy of the serving stack. Every request opens a new connection, so the kernel hands them to
either worker; the test checks that both did answer, then:

* read-your-writes: each transaction of one card sees every earlier one, whichever worker
  scored it (the command turns on synchronous ingestion);
* ``/metrics``, whichever worker answers it, counts every worker's predictions
  (prometheus_client's multiprocess mode, set up by the command).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.support import stack
from tests.support.live_api import API_KEY, Stack, stop

pytestmark = pytest.mark.integration
MIN_TRANSACTIONS, MAX_TRANSACTIONS = 16, 96


@pytest.fixture(scope="module")
def two_workers(
    serving_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A two-worker API on a clone of the stack: its base URL and its project root."""
    root = stack.clone_root(serving_stack.root, tmp_path_factory.mktemp("workers") / "root")
    env = serving_stack.api_env(root)
    env.pop("SERVING_INGEST_MODE", None)  # the command chooses it for several workers
    port = stack.free_port()
    fraud = str(Path(sys.executable).with_name("fraud"))
    log = (root / "api-workers.log").open("ab")
    proc = subprocess.Popen(
        [fraud, "serve", "api", "--port", str(port), "--workers", "2"],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = 0
        while ready < 8 and time.monotonic() < deadline:  # both workers up: several 200s in a row
            assert proc.poll() is None, (root / "api-workers.log").read_text()[-3000:]
            try:
                ready = ready + 1 if httpx.get(f"{base}/ready", timeout=2).status_code == 200 else 0
            except httpx.HTTPError:
                ready = 0
            time.sleep(0.25)
        assert ready >= 8, (root / "api-workers.log").read_text()[-3000:]
        yield base, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        finally:
            stop(proc)


def _predictions_per_worker(folder: Path) -> dict[str, float]:
    """Process id -> predictions counted in that worker's own file."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        counts[path.stem.rsplit("_", 1)[-1]] = sum(
            value for key, value, *_ in values if json.loads(key)[0] == "fraud_api_predictions"
        )
    return counts


def _predictions_total(text: str) -> float:
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return sum(sample.value for sample in families["fraud_api_predictions"].samples)


def test_two_workers_read_their_writes_and_share_metrics(
    two_workers: tuple[str, Path], serving_stack: Stack
) -> None:
    base, root = two_workers
    last = pd.Timestamp(serving_stack.meta["last_timestamp"])
    folder = root / ".run" / "prometheus"
    counts: list[int] = []
    while len(counts) < MAX_TRANSACTIONS:
        i = len(counts)
        body = {
            "transaction_id": f"workers-{i}",
            "timestamp": (last + timedelta(minutes=120, seconds=i)).isoformat(),
            "customer_id": "workers-card",
            "merchant_id": "workers-shop",
            "amount": 20.0 + i,
            "lat": 40.7,
            "long": -73.9,
        }
        # A new connection per request: the kernel spreads them over the workers.
        response = httpx.post(f"{base}/predict", json=body, headers={"X-API-Key": API_KEY})
        assert response.status_code == 200, response.text
        counts.append(response.json()["features"]["txn_count_1h"])
        served_by = [pid for pid, n in _predictions_per_worker(folder).items() if n > 0]
        if len(counts) >= MIN_TRANSACTIONS and len(served_by) >= 2:
            break
    # Both workers scored some of them (each counts in a file of its own process id)...
    assert len([n for n in _predictions_per_worker(folder).values() if n > 0]) >= 2
    # ...and each transaction saw all earlier ones, whichever worker wrote them.
    assert counts == list(range(len(counts)))

    # Whichever worker answers /metrics, it counts every worker's predictions.
    for _ in range(6):
        scrape = httpx.get(f"{base}/metrics")
        assert scrape.status_code == 200
        assert _predictions_total(scrape.text) == len(counts)
