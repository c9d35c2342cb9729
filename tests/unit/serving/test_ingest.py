"""The ingestion gate and the writer: read-your-writes, order, backpressure, sync mode."""

from __future__ import annotations

import threading
import time

import pytest

from feature_engine.state.fold import Transaction
from serving.ingest import Ingestor, PendingGate, entity_keys


def _txn(i: int, customer: str = "c", merchant: str = "m", ts: int | None = None) -> Transaction:
    return Transaction(f"t{i}", customer, merchant, i if ts is None else ts, 1.0, 0.0, 0.0)


def test_gate_counts_pending_writes_per_entity() -> None:
    gate = PendingGate()
    key = ("customer", "c")
    gate.add([key, key])
    assert gate.wait_clear([("customer", "other")], 0.01)  # other entities are never held
    assert gate.wait_clear([key], 0.01) is False  # times out while a write is pending
    gate.done([key])
    assert gate.wait_clear([key], 0.01) is False  # one of two still pending
    gate.done([key])
    assert gate.wait_clear([key], 0.01)


def test_a_reader_waits_for_its_entitys_write_then_goes_on() -> None:
    gate = PendingGate()
    key = ("merchant", "m")
    gate.add([key])
    threading.Timer(0.05, gate.done, args=([key],)).start()
    started = time.monotonic()
    assert gate.wait_clear([key], 5.0)
    assert 0.03 < time.monotonic() - started < 4.0


def test_a_transaction_changes_its_customer_and_its_merchant() -> None:
    assert entity_keys(_txn(1, "c1", "m9")) == (("customer", "c1"), ("merchant", "m9"))


def _ingestor(mode: str, write, queue_size: int = 100) -> tuple[Ingestor, list[float], list[int]]:
    lags: list[float] = []
    failures: list[int] = []
    ingestor = Ingestor(
        write, mode, queue_size=queue_size, wait_seconds=5, observe_lag=lags.append,
        count_failure=lambda: failures.append(1),
    )  # fmt: skip
    return ingestor, lags, failures


def test_sync_mode_writes_inside_the_request_in_time_order_and_raises() -> None:
    written: list[str] = []
    ingestor, lags, _ = _ingestor("sync", lambda t: written.append(t.transaction_id))
    ingestor.start()
    ingestor.submit([_txn(3, ts=30), _txn(1, ts=10), _txn(2, ts=20)], time.perf_counter())
    assert written == ["t1", "t2", "t3"] and len(lags) == 1

    def broken(txn: Transaction) -> None:
        raise ConnectionError("redis down")

    failing, _, failures = _ingestor("sync", broken)
    with pytest.raises(ConnectionError):
        failing.submit([_txn(1)], time.perf_counter())
    assert failures == [1]


def test_async_mode_lets_a_reader_of_the_same_customer_wait_for_the_write() -> None:
    release = threading.Event()
    written: list[str] = []

    def slow(txn: Transaction) -> None:
        release.wait(5)
        written.append(txn.transaction_id)

    ingestor, lags, _ = _ingestor("async", slow)
    ingestor.start()
    try:
        ingestor.submit([_txn(1)], time.perf_counter())
        assert ingestor.before_read([_txn(2, customer="someone-else", merchant="elsewhere")])
        waiter = threading.Thread(
            target=lambda: written.append(str(ingestor.before_read([_txn(2)])))
        )
        waiter.start()
        time.sleep(0.05)
        assert written == []  # the reader of the same customer is still waiting
        release.set()
        waiter.join(5)
        assert written == ["t1", "True"]  # the write first, then the read goes on
    finally:
        ingestor.close()
    assert len(lags) == 1 and ingestor.backlog == 0


def test_a_full_queue_makes_the_request_write_inline() -> None:
    release = threading.Event()
    written: list[str] = []

    def write(txn: Transaction) -> None:
        if txn.transaction_id == "t1":
            release.wait(5)  # the background writer is busy with t1
        written.append(txn.transaction_id)

    ingestor, _, _ = _ingestor("async", write, queue_size=1)
    ingestor.start()
    try:
        ingestor.submit([_txn(1)], time.perf_counter())
        time.sleep(0.05)  # t1 taken off the queue, being written
        ingestor.submit([_txn(2)], time.perf_counter())  # fills the queue
        ingestor.submit([_txn(3)], time.perf_counter())  # full: written inline, right now
        assert "t3" in written and "t1" not in written
        release.set()
    finally:
        ingestor.close()
    assert sorted(written) == ["t1", "t2", "t3"]
