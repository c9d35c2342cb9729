"""The serving parts that decide fault behaviour, one at a time, with fakes for Redis and MLflow."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from pydantic import ValidationError

from feature_engine.state.fold import Transaction
from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.settings import PROJECT_ROOT, ParamsError, load_params
from serving.ingest import Ingestor, PendingGate
from serving.model import ModelBundle, ModelHolder, bound_registry_requests
from serving.online_store import OnlineStoreGuard
from serving.schemas import TimeGuard, TransactionIn

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GUARD = TimeGuard(datetime(1970, 1, 1, tzinfo=UTC), timedelta(minutes=5))


# ---------------------------------------------------------------------------- time guard


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (NOW, True),
        (NOW + timedelta(minutes=5), True),
        (NOW + timedelta(minutes=5, microseconds=1), False),
        (datetime(2199, 12, 31, tzinfo=UTC), False),
        (datetime(1970, 1, 1, tzinfo=UTC), True),
        (datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), False),
        (datetime(2026, 1, 1), True),  # naive means UTC
    ],
)
def test_time_guard_window(value: datetime, accepted: bool) -> None:
    if accepted:
        assert GUARD.check(value, now=NOW).tzinfo == UTC
    else:
        with pytest.raises(ValueError):
            GUARD.check(value, now=NOW)


def test_time_guard_minimum_is_configurable() -> None:
    guard = TimeGuard(datetime(2020, 1, 1, tzinfo=UTC), timedelta(0))
    with pytest.raises(ValueError, match="2020-01-01"):
        guard.check(datetime(2019, 12, 31, tzinfo=UTC), now=NOW)
    with pytest.raises(ValueError, match="future"):
        guard.check(NOW + timedelta(seconds=1), now=NOW)


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z"]
)
def test_unrepresentable_times_are_a_validation_error_naming_the_field(text: str) -> None:
    body = {"timestamp": text, "customer_id": "c", "merchant_id": "m", "amount": 1.0}
    with pytest.raises(ValidationError) as caught:
        TransactionIn.model_validate(body | {"lat": 0.0, "long": 0.0})
    assert [err["loc"] for err in caught.value.errors()] == [("timestamp",)]


def _params_with(tmp_path: Path, **serve: Any) -> Path:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["serve"].update(serve)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_serve_params_time_settings(tmp_path: Path) -> None:
    serve = load_params(PROJECT_ROOT / "params.yaml").serve
    assert serve.max_future_skew_seconds == 300
    assert serve.min_timestamp == datetime(1970, 1, 1, tzinfo=UTC)
    naive = load_params(_params_with(tmp_path, min_timestamp="2020-01-01T00:00:00")).serve
    assert naive.min_timestamp == datetime(2020, 1, 1, tzinfo=UTC)
    with pytest.raises(ParamsError, match=r"serve\.min_timestamp"):
        load_params(_params_with(tmp_path, min_timestamp="1969-12-31T00:00:00Z"))
    with pytest.raises(ParamsError, match=r"serve\.max_future_skew_seconds"):
        load_params(_params_with(tmp_path, max_future_skew_seconds=-1))


# ---------------------------------------------------------------------------- store guard


class FakeRedis:
    """PING that fails while ``down`` is set."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.pings = 0

    def ping(self) -> bool:
        self.pings += 1
        if self.down.is_set():
            raise redis.exceptions.ConnectionError("Connection refused")
        return True


def _until(predicate: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_guard_goes_down_on_a_failure_and_up_when_the_probe_answers() -> None:
    fake = FakeRedis()
    changes: list[bool] = []
    guard = OnlineStoreGuard(fake.ping, changes.append, probe_down_seconds=0.02)
    guard.start()
    try:
        assert guard.up and guard.reason == ""
        fake.down.set()
        guard.failed(redis.exceptions.ConnectionError("Connection refused"))
        assert not guard.up
        assert "online store unreachable" in guard.reason and "refused" in guard.reason
        assert _until(lambda: fake.pings >= 3)  # probed while down
        assert not guard.up
        fake.down.clear()
        assert _until(lambda: guard.up)
        # The flag flips first, then the callback runs on the probe's thread: wait for it too.
        assert _until(lambda: len(changes) == 2)
        assert changes == [False, True]
    finally:
        guard.stop()


def test_guard_notices_an_outage_without_traffic() -> None:
    fake = FakeRedis()
    guard = OnlineStoreGuard(fake.ping, probe_up_seconds=0.02)
    guard.start()
    try:
        fake.down.set()
        assert _until(lambda: not guard.up)
    finally:
        guard.stop()


# ---------------------------------------------------------------------------- ingestion


def test_gate_waiter_gives_up_when_told_the_store_is_down() -> None:
    gate = PendingGate()
    key = ("customer", "c1")
    gate.add([key])
    down = threading.Event()
    result: list[bool] = []
    waiter = threading.Thread(
        target=lambda: result.append(gate.wait_clear([key], 30.0, give_up=down.is_set))
    )
    started = time.monotonic()
    waiter.start()
    time.sleep(0.05)
    down.set()
    gate.wake()
    waiter.join(timeout=10)
    assert result == [False]  # not clear: the caller answers 503
    assert time.monotonic() - started < 10  # far below the 30 s wait: it did not sit it out


def _txn(i: int) -> Transaction:
    return Transaction(
        transaction_id=f"t{i}", customer_id="c", merchant_id="m", ts_us=i, amount=1.0,
        lat=0.0, long=0.0,
    )  # fmt: skip


def test_queued_writes_caught_by_an_outage_are_applied_after_it_in_order() -> None:
    up = threading.Event()
    up.set()
    written: list[str] = []
    failures: list[int] = []
    failing = threading.Event()

    def write(txn: Transaction) -> None:
        if failing.is_set():
            raise redis.exceptions.ConnectionError("Connection refused")
        written.append(txn.transaction_id)

    def store_failed(exc: BaseException) -> None:
        up.clear()

    ingestor = Ingestor(
        write, "async", queue_size=100, wait_seconds=5, observe_lag=lambda s: None,
        count_failure=lambda: failures.append(1), store_up=up.is_set, store_failed=store_failed,
        retry_seconds=0.01,
    )  # fmt: skip
    ingestor.start()
    try:
        failing.set()
        ingestor.submit([_txn(1), _txn(2)], time.perf_counter())
        ingestor.submit([_txn(3)], time.perf_counter())
        assert _until(lambda: not up.is_set())
        time.sleep(0.05)
        assert written == []
        failing.clear()
        up.set()  # what the guard's probe does when Redis answers again
        assert _until(lambda: written == ["t1", "t2", "t3"])
        assert failures == []
        assert ingestor.gate.wait_clear([("customer", "c")], 5)
    finally:
        ingestor.close()


def test_close_during_an_outage_gives_up_instead_of_hanging() -> None:
    failures: list[int] = []

    def write(txn: Transaction) -> None:
        raise redis.exceptions.ConnectionError("Connection refused")

    ingestor = Ingestor(
        write, "async", queue_size=100, wait_seconds=5, observe_lag=lambda s: None,
        count_failure=lambda: failures.append(1), store_up=lambda: False,
        retry_seconds=0.01,
    )  # fmt: skip
    ingestor.start()
    ingestor.submit([_txn(1), _txn(2)], time.perf_counter())
    closer = threading.Thread(target=ingestor.close)
    closer.start()
    closer.join(timeout=10)
    assert not closer.is_alive()
    assert len(failures) == 2  # both given up, counted


# ---------------------------------------------------------------------------- model loading


def _bundle(version: str) -> ModelBundle:
    from tests.support.models import linear_bundle

    return linear_bundle(version, name="fraud-detector")


def test_model_loads_in_the_background_with_retries() -> None:
    release = threading.Event()
    calls: list[int] = []

    def load() -> ModelBundle:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("registry unreachable")
        release.wait(10)
        return _bundle("1")

    holder = ModelHolder(
        load, lambda: "1", {FEATURE_SERVICE_NAME: ["f"]}, poll_seconds=60, first_retry_seconds=0.01
    )
    holder.start()  # returns at once, whatever the registry does
    try:
        assert _until(lambda: holder.failed_loads == 2)
        assert holder.bundle is None
        assert "2 attempt(s)" in holder.unavailable_reason
        assert "registry unreachable" in holder.unavailable_reason
        release.set()
        assert _until(lambda: holder.bundle is not None)
        assert holder.unavailable_reason == ""
    finally:
        holder.stop()


def test_missing_registry_entry_is_reported_and_the_model_kept() -> None:
    alias: list[str | None] = ["1"]
    holder = ModelHolder(
        lambda: _bundle(str(alias[0])), lambda: alias[0], {FEATURE_SERVICE_NAME: ["f"]}, 60
    )
    assert holder.refresh() and holder.bundle is not None
    alias[0] = None  # version deleted, alias gone
    assert holder.refresh() is False
    assert holder.bundle is not None and holder.bundle.version == "1"
    assert holder.registry_missing and "no longer exists" in holder.registry_missing
    alias[0] = "2"
    assert holder.refresh() is True
    assert holder.bundle.version == "2" and holder.registry_missing is None


def test_registry_bounds_respect_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
    bound_registry_requests(5, 1)
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "4"  # the operator's value wins


def test_the_api_sets_the_gil_switch_interval_from_its_settings() -> None:
    import sys
    from typing import cast

    from fastapi.testclient import TestClient

    from fraud_platform.settings import Settings
    from serving.main import create_app
    from tests.support.fake_service import FakeService

    before = sys.getswitchinterval()
    service = cast("Any", FakeService())
    app = create_app(Settings(serving_switch_interval_ms=0.5), build=lambda _: service)
    try:
        with TestClient(app):
            assert sys.getswitchinterval() == pytest.approx(0.0005)
    finally:
        sys.setswitchinterval(before)
    with pytest.raises(ValidationError, match="serving_switch_interval_ms"):
        Settings(serving_switch_interval_ms=0)


def test_the_api_store_keeps_duckdb_out_and_refuses_offline_reads(tmp_path: Path) -> None:
    """The API opens its store with the online-only offline store: Feast's config validation
    then imports no DuckDB (~45 MiB a worker), and an offline call fails instead of running."""
    import subprocess
    import sys

    script = f"""
import sys
from fraud_platform.settings import Settings
from feature_engine.online.online_only import ONLINE_ONLY
from feature_engine.store import open_store
import serving.main, serving.service  # everything a worker imports
store = open_store(Settings(project_root={str(tmp_path)!r}), offline_store=ONLINE_ONLY)
assert type(store._get_provider().offline_store).__name__ == "OnlineOnlyOfflineStore"
print(sorted(m for m in ("duckdb", "ibis") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        cwd=PROJECT_ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"

    from feature_engine.online.online_only import OnlineOnlyOfflineStore

    offline_call: Any = OnlineOnlyOfflineStore.get_historical_features
    with pytest.raises(NotImplementedError):
        offline_call(None, [], [], None, None, None, False)
