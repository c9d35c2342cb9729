"""Real-shaped data through the live API, as a new user would run it, then the consistency check.

The test writes a Kaggle-schema CSV itself (a few hundred cards, merchant names with spaces,
commas, apostrophes and accents, labels), imports the first 90 % by time with `fraud data
import`, then `fraud features build`, `apply`, `materialize` (default end: data time) and
`fraud train run`, starts the API (uvicorn) and replays the remaining 10 % through
`POST /predict` in time order, one at a time. Every request must be accepted, and `fraud
monitor consistency` must find 0 mismatches on every feature, `merchant_fraud_rate_30d`
included.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from data.generate import generate
from data.importer import to_kaggle_frame
from fraud_platform import redis_server
from fraud_platform.contracts import read_prediction_log
from fraud_platform.settings import load_params
from tests.support.stack import free_port, prepare_root, stack_env, start_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CARDS = 150
DAYS = 45
REPLAY_SHARE = 0.10
_SURNAMES = ("Kirlin", "Bins", "O'Keefe", "Schmitt", "Müller", "Howell", "Zieme", "Lind")
_SUFFIXES = ("and Sons", "Ltd.", "Group", "Inc", "LLC", "& Söhne", "PLC", "Co")


def _real_looking(tables: dict[str, pd.DataFrame], seed: int) -> dict[str, pd.DataFrame]:
    """Merchant names like Sparkov's (`fraud_Kirlin and Sons`), card numbers as customer ids."""
    rng = np.random.default_rng(seed)
    merchants = tables["merchants"]["merchant_id"]
    names = {
        m: f"fraud_{_SURNAMES[i % 8]}-{_SURNAMES[(i // 8) % 8]}, {_SUFFIXES[i % 7]} #{i}"
        for i, m in enumerate(merchants)
    }
    customers = tables["customers"]["customer_id"]
    cards = {c: str(4_000_000_000_000 + int(rng.integers(10**12))) for c in customers}
    out = {name: frame.copy() for name, frame in tables.items()}
    for frame in (out["transactions"], out["merchants"]):
        frame["merchant_id"] = frame["merchant_id"].map(names)
    for frame in (out["transactions"], out["customers"]):
        frame["customer_id"] = frame["customer_id"].map(cards)
    return out


def _fraud(env: dict[str, str], root: Path, *args: str, timeout: float = 600) -> str:
    fraud = str(Path(sys.executable).with_name("fraud"))
    done = subprocess.run(
        [fraud, *args], env=env, cwd=root, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"fraud {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def test_imported_data_replayed_through_the_api_is_consistent(tmp_path: Path) -> None:
    root = tmp_path / "project"
    prepare_root(root)
    # Chargebacks a week after the transaction (the import's delay): the replay's 30-day label
    # windows then hold most of the imported labels, frauds included.
    params_file = root / "params.yaml"
    # The model only has to serve: the pre-grouped-folds operating point (folds over rows, at
    # least half of the alerts fraud), whose threshold flags holdout rows on this small import.
    # The default one (folds by card, 80 % recall) finds no holdout alert here and fails
    # training with exit 2, as designed for a rule its data cannot meet.
    text = params_file.read_text().replace("chargeback_delay_days: 30", "chargeback_delay_days: 7")
    text = text.replace("folds: by_card ", "folds: by_transaction ")
    text = text.replace("threshold_rule: target_recall ", "threshold_rule: min_precision ")
    assert "folds: by_transaction" in text and "threshold_rule: min_precision" in text
    params_file.write_text(text)
    params = load_params(root / "params.yaml")
    tables = _real_looking(generate(params.generate, 11, n_customers=CARDS, days=DAYS), seed=11)
    kaggle = to_kaggle_frame(tables)
    cut = int(len(kaggle) * (1 - REPLAY_SHARE))
    kaggle.iloc[:cut].to_csv(tmp_path / "first.csv")
    replay = kaggle.iloc[cut:]
    assert replay["merchant"].str.contains(" ").mean() > 0.5  # real-looking names dominate

    server = redis_server.start(root=root)
    env = stack_env(root, server.url, API_KEYS="", SERVING_INGEST_MODE="sync")
    api = None
    try:
        _fraud(env, root, "data", "import", str(tmp_path / "first.csv"))
        _fraud(env, root, "features", "build")
        _fraud(env, root, "features", "apply")
        out = _fraud(env, root, "features", "materialize")
        assert "materializing state as of" in out
        _fraud(env, root, "train", "run")
        api = start_api(root, env, port := free_port())
        statuses: dict[int, int] = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for row in replay.itertuples():
                body = {
                    "transaction_id": row.trans_num,
                    "timestamp": row.trans_date_trans_time.replace(" ", "T") + "Z",
                    "customer_id": str(row.cc_num),
                    "merchant_id": row.merchant,
                    "amount": float(row.amt),
                    "lat": float(row.merch_lat),
                    "long": float(row.merch_long),
                }
                response = client.post("/predict", json=body)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                assert response.status_code == 200, response.text
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=60)
        out = _fraud(env, root, "monitor", "consistency", "--no-mlflow")
        summary = json.loads(
            max((root / "reports" / "consistency").glob("*/summary.json")).read_text()
        )
        served = read_prediction_log(root / "data" / "prediction_log")
    finally:
        if api is not None and api.poll() is None:
            api.kill()
        redis_server.stop(root)
    assert statuses == {200: len(replay)}
    assert summary["rows"] == len(replay)
    assert summary["total_mismatches"] == 0, out
    by_feature = {f["feature"]: f for f in summary["features"]}
    rate = by_feature["merchant_fraud_rate_30d"]
    assert rate["compared"] == len(replay) and rate["unknown"] == 0
    # Not vacuous: the label feature was really non-zero online, and state was really used.
    assert (served["merchant_fraud_rate_30d"] > 0).sum() >= 5
    assert (served["txn_count_24h"] > 0).mean() > 0.5
    print(
        f"replay: {len(replay):,} requests, statuses {statuses}; consistency: "
        f"{summary['total_mismatches']} mismatches over {len(by_feature)} features; "
        f"merchant_fraud_rate_30d > 0 on {(served['merchant_fraud_rate_30d'] > 0).mean():.0%}"
    )
