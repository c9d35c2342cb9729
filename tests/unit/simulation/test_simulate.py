"""``fraud monitor simulate``: the shifted windows, and the HTTP round trip against a stub API.

The command is invoked as users type it, through the ``fraud`` command line that mounts it.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fraud_cli.main import app as fraud
from simulation import cli
from simulation.client import to_request
from simulation.traffic import (
    AMOUNT_FACTOR,
    BURST_LENGTH,
    last_day,
    retime,
    sample_customers,
    simulated_window,
)
from tests.support.frames import FEATURES, make_features, write_reference

runner = CliRunner()
API_KEY = "test-key"
REAL_HTTP_CLIENT = cli._http_client


def make_transactions(days: int = 3, customers: int = 300, seed: int = 5) -> pd.DataFrame:
    """Raw transactions (``data/schema.py: TRANSACTIONS``) spread evenly over the day."""
    rng = np.random.default_rng(seed)
    n = int(days * customers * 2)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in rng.integers(0, customers, n)],
            "merchant_id": [f"M{i:04d}" for i in rng.integers(0, 60, n)],
            "timestamp": start + pd.to_timedelta(rng.uniform(0, days * 86_400, n), "s"),
            "amount": rng.lognormal(3.5, 1.0, n).round(2) + 0.01,
            "lat": rng.uniform(40, 41, n),
            "long": rng.uniform(-74, -73, n),
        }
    )
    frame["timestamp"] = frame["timestamp"].dt.floor("us")
    frame = frame.sort_values("timestamp").reset_index(drop=True)
    frame.insert(0, "transaction_id", [f"T{i:07d}" for i in range(n)])
    return frame


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    return make_transactions()


# ------------------------------------------------------------------------------ the windows


def test_last_day_and_customer_sample(transactions: pd.DataFrame) -> None:
    day = last_day(transactions)
    end = transactions["timestamp"].max()
    assert day["timestamp"].min() >= end - pd.Timedelta(days=1)
    assert len(day) == (transactions["timestamp"] >= end - pd.Timedelta(days=1)).sum()

    sample = sample_customers(day, 150, seed=3)
    assert len(sample) >= 150
    # Whole customers: every chosen customer's day is there, in order.
    for customer, rows in sample.groupby("customer_id"):
        assert len(rows) == (day["customer_id"] == customer).sum()
    assert sample["timestamp"].is_monotonic_increasing
    again = sample_customers(day, 150, seed=3)
    assert set(again["customer_id"]) == set(sample["customer_id"])
    assert set(sample_customers(day, 150, seed=4)["customer_id"]) != set(sample["customer_id"])


def test_retime_moves_whole_days_past_the_anchor(transactions: pd.DataFrame) -> None:
    day = last_day(transactions)
    anchor = pd.Timestamp("2026-01-09T10:00", tz="UTC")
    moved = retime(day, anchor)
    assert moved["timestamp"].min() > anchor
    shift = moved["timestamp"] - day["timestamp"]
    assert shift.nunique() == 1 and shift.iloc[0] % pd.Timedelta(days=1) == pd.Timedelta(0)
    assert (moved["timestamp"].dt.hour == day["timestamp"].dt.hour).all()


def test_control_window_keeps_the_data_shape(transactions: pd.DataFrame) -> None:
    window = simulated_window(transactions, rows=200, shift="none", run_tag="R1", seed=3)
    base = sample_customers(last_day(transactions), 200, seed=3)

    assert window["timestamp"].min() > transactions["timestamp"].max()
    assert window["timestamp"].is_monotonic_increasing
    assert sorted(window["amount"]) == sorted(base["amount"])
    assert sorted(window["timestamp"].dt.hour) == sorted(base["timestamp"].dt.hour)
    assert window["transaction_id"].is_unique
    assert window["transaction_id"].str.fullmatch(r"sim-none-R1-\d{6}").all()


def test_amount_and_night_shifts(transactions: pd.DataFrame) -> None:
    control = simulated_window(transactions, rows=200, shift="none", run_tag="R", seed=3)
    amount = simulated_window(transactions, rows=200, shift="amount", run_tag="R", seed=3)
    np.testing.assert_allclose(
        amount["amount"], (control["amount"] * AMOUNT_FACTOR).round(2), rtol=0, atol=0.006
    )
    assert (amount["timestamp"] == control["timestamp"]).all()

    night = simulated_window(transactions, rows=200, shift="night", run_tag="R", seed=3)
    assert night["timestamp"].dt.hour.max() < 6
    assert control["timestamp"].dt.hour.max() >= 18  # the control covers the whole day
    assert night["timestamp"].min() > transactions["timestamp"].max()
    assert sorted(night["amount"]) == sorted(control["amount"])


def test_burst_shift_adds_card_testing_runs(transactions: pd.DataFrame) -> None:
    control = simulated_window(transactions, rows=400, shift="none", run_tag="R", seed=3)
    burst = simulated_window(transactions, rows=400, shift="burst", run_tag="R", seed=3)

    assert len(burst) == len(control)
    small = burst[burst["amount"] <= 3.0]
    assert len(small) >= len(burst) // 2
    # Some customer makes a run of BURST_LENGTH attempts within 15 minutes.
    per_run = small.set_index("timestamp").groupby("customer_id")["amount"].rolling("15min").count()
    assert per_run.max() >= BURST_LENGTH
    assert burst["timestamp"].min() > transactions["timestamp"].max()


def test_requests_match_the_api_schema(transactions: pd.DataFrame) -> None:
    schemas = pytest.importorskip("serving.schemas")
    window = simulated_window(transactions, rows=50, shift="burst", run_tag="R", seed=1)
    for row in window.to_dict("records"):
        body = to_request(row)
        parsed = schemas.TransactionIn.model_validate(body)
        assert parsed.transaction_id == row["transaction_id"]
        assert parsed.timestamp == row["timestamp"].to_pydatetime()


# ------------------------------------------------------------------------ against a stub API


def stub_features(body: dict[str, Any]) -> dict[str, float]:
    """What the stub 'computes' from a request: the amount- and time-driven features."""
    ts = pd.Timestamp(body["timestamp"])
    amount = float(body["amount"])
    log_amount = math.log1p(amount)
    return {
        "log_amount": log_amount,
        "amount_sum_24h": 3 * amount,
        "amount_max_24h": amount,
        "amount_to_avg_30d": amount / 40,
        "hour_of_day": ts.hour,
        "is_night": int(ts.hour < 6),
        "probability": 1 / (1 + math.exp(-(0.8 * (log_amount - 4.5) - 3))),
    }


def stub_reference(transactions: pd.DataFrame) -> pd.DataFrame:
    """Training reference: random features, request-driven ones from the real transactions."""
    sample = transactions.sample(1500, random_state=0).assign(transaction_id="x")
    pool = make_features(len(sample), seed=1)
    computed = pd.DataFrame([stub_features(to_request(r)) for r in sample.to_dict("records")])
    reference = pool.assign(**{c: computed[c].to_numpy() for c in computed})
    reference["is_fraud"] = 0
    return reference


class StubApi:
    """A tiny stand-in for the scoring API.

    It checks the key, 'scores' from the request and, like the real API, buffers the log and
    writes a Parquet file per flush from a background thread.
    """

    def __init__(self, log_dir: Path, *, write_log: bool = True, flush_seconds: float = 0.2):
        self.log_dir = log_dir
        self.write_log = write_log
        self.received: list[dict[str, Any]] = []
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._files = itertools.count()
        self._pool = make_features(5000, seed=2)
        self._flusher = threading.Thread(target=self._run, args=(flush_seconds,), daemon=True)
        self.app = FastAPI()
        self.app.post("/predict")(self.predict)

    def predict(self, body: dict[str, Any], x_api_key: str | None = Header(None)) -> dict:
        if x_api_key != API_KEY:
            raise HTTPException(401, "bad key")
        row = {**self._pool.iloc[len(self.received) % 5000].to_dict(), **stub_features(body)}
        row.update(
            transaction_id=body["transaction_id"],
            customer_id=body["customer_id"],
            merchant_id=body["merchant_id"],
            timestamp=pd.Timestamp(body["timestamp"]),
            scored_at=pd.Timestamp.now(tz="UTC"),
            prediction="LEGIT",
            threshold=0.5,
            model_name="fraud-detector",
            model_version="1",
            cold_start=False,
        )
        self.received.append(body)
        with self._lock:
            self._buffer.append(row)
        return {"probability": row["probability"]}

    def _run(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._buffer = self._buffer, []
        if rows and self.write_log:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            name = f"predictions-{next(self._files):06d}.parquet"
            pd.DataFrame(rows).to_parquet(self.log_dir / f".{name}.tmp")
            (self.log_dir / f".{name}.tmp").rename(self.log_dir / name)

    def __enter__(self) -> StubApi:
        self._flusher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._flusher.join()


@pytest.fixture
def simulation(project: Path, transactions: pd.DataFrame, monkeypatch: pytest.MonkeyPatch):
    """Raw transactions and a reference in the project; the CLI's HTTP client is the stub's."""
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    transactions.to_parquet(raw / "transactions.parquet")
    write_reference(project, stub_reference(transactions))
    stubs: list[StubApi] = []

    def install(*, write_log: bool = True) -> StubApi:
        stub = StubApi(project / "data" / "prediction_log", write_log=write_log).__enter__()
        stubs.append(stub)
        monkeypatch.setattr(
            cli, "_http_client", lambda url: TestClient(stub.app, base_url="http://stub")
        )
        return stub

    yield install
    for stub in stubs:
        stub.__exit__()


@pytest.mark.slow  # Evidently/MLflow/HTTP round trip: seconds
@pytest.mark.usefixtures("fake_evidently")
def test_simulate_control_then_amount_shift(project: Path, simulation) -> None:
    received = simulation().received
    # The stub moves 4 of 18 features (and the output) with the amount: under the dataset
    # threshold, and still a pass, since the verdict is per feature against EXPECTED_DRIFT.

    result = runner.invoke(
        fraud,
        [
            "monitor",
            "simulate",
            *("--shift", "amount", "--control", "--rows", "200"),
            *("--api-key", API_KEY, "--no-mlflow", "--wait", "5"),
        ],
    )

    assert result.exit_code == 0, result.output
    # Not the generator's output: the old replay, with a warning.
    assert "not what `fraud data generate` makes" in result.output
    assert "PASS 'none' window: no dataset drift" in result.output
    assert "PASS 'amount' window: no dataset drift" in result.output
    assert "MISSED" not in result.output
    ids = [body["transaction_id"] for body in received]
    n_control = sum(i.startswith("sim-none-") for i in ids)
    n_amount = sum(i.startswith("sim-amount-") for i in ids)
    assert n_control >= 200 and n_amount == n_control
    # The shifted window comes after the control window in event time.
    times = pd.to_datetime([body["timestamp"] for body in received])
    assert times.is_monotonic_increasing

    control_dir, shifted_dir = sorted((project / "reports" / "drift").iterdir())
    control = json.loads((control_dir / "summary.json").read_text())
    shifted = json.loads((shifted_dir / "summary.json").read_text())
    assert control["sources"]["simulated_shift"] == "none"
    assert control["rows"]["current"] == n_control
    assert control["dataset_drift"] is False
    assert control["prediction_drift"]["drifted"] is False
    assert not control["features"]["hour_of_day"]["drifted"]
    assert shifted["sources"]["simulated_shift"] == "amount"
    assert set(shifted["drifted_features"]) >= {
        "log_amount",
        "amount_sum_24h",
        "amount_max_24h",
        "amount_to_avg_30d",
    }
    assert shifted["dataset_drift"] is False  # 4/17 < 0.3: the dataset verdict misses it
    assert not shifted["features"]["hour_of_day"]["drifted"]
    assert shifted["prediction_drift"]["drifted"] is True
    assert set(shifted["features"]) == set(FEATURES)


def test_simulate_reports_api_problems(project: Path, simulation, monkeypatch) -> None:
    simulation()
    wrong_key = runner.invoke(fraud, ["monitor", "simulate", "--rows", "20", "--api-key", "nope"])
    assert wrong_key.exit_code == 2
    assert "rejected the key" in wrong_key.output

    simulation(write_log=False)
    unlogged = runner.invoke(
        fraud,
        ["monitor", "simulate", "--rows", "20", "--api-key", API_KEY, "--wait", "0", "--no-mlflow"],
    )
    assert unlogged.exit_code == 2
    assert "nothing reached the prediction log" in unlogged.output

    bad_shift = runner.invoke(fraud, ["monitor", "simulate", "--shift", "sideways"])
    assert bad_shift.exit_code == 2
    assert "sideways" in bad_shift.output

    # The real httpx client, against a port nothing listens on.
    monkeypatch.setattr(cli, "_http_client", REAL_HTTP_CLIENT)
    unreachable = runner.invoke(
        fraud, ["monitor", "simulate", "--rows", "20", "--api-url", "http://127.0.0.1:9"]
    )
    assert unreachable.exit_code == 2
    assert "cannot reach the API" in unreachable.output


def test_simulate_without_data_sends_nothing(project: Path, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(cli, "_http_client", lambda url: calls.append(url))
    result = runner.invoke(fraud, ["monitor", "simulate"])
    assert result.exit_code == 2
    assert "reference sample not found" in result.output
    assert calls == []
