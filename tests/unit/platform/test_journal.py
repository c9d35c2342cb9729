"""The durable journal: appends survive the death of the writer, readers see whole records only."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraud_platform import journal
from fraud_platform.journal import (
    Journal,
    JournalError,
    JournalRecordError,
    read_journal,
    recover,
    segment_files,
)

COLUMNS = {"id": "string", "ts": "timestamp", "x": "float64", "n": "int64", "ok": "bool"}
T0 = datetime(2026, 1, 30, 23, 58, 50, 123456, tzinfo=UTC)


def record(i: int) -> dict:
    return {"id": f"r{i}", "ts": T0 + timedelta(seconds=i), "x": i / 4, "n": i, "ok": i % 2 == 0}


def jsonl(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jsonl"))


def parquet(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet"))


def test_appended_records_are_readable_at_once_and_typed(tmp_path: Path) -> None:
    log = Journal(tmp_path, "events", COLUMNS).open()
    try:
        log.append(record(0))
        log.append_many([record(1), record(2)])
        table = read_journal(tmp_path, "events")  # no flush, no close: already in the file
        before_close = table.to_pylist()
        assert table.num_rows == 3
        assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
        assert table.schema.field("n").type == pa.int64()
        assert table.column("ts").to_pylist()[0] == T0
        assert table.to_pylist()[1] == {**record(1), "ts": T0 + timedelta(seconds=1)}
    finally:
        log.close()
    assert jsonl(tmp_path) == []
    assert len(parquet(tmp_path)) == 1
    assert read_journal(tmp_path, "events").to_pylist() == before_close  # Parquet: same rows
    assert log.stats.records == 3 and log.stats.segments_compacted == 1


def test_segment_is_one_header_then_one_json_line_per_record(tmp_path: Path) -> None:
    log = Journal(tmp_path, "events", COLUMNS, compact=False).open()
    log.append(record(7) | {"ts": datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))})
    log.close()
    (segment,) = jsonl(tmp_path)
    head, line = segment.read_text().splitlines()
    assert json.loads(head) == {"journal": "events", "version": 1, "columns": COLUMNS}
    assert json.loads(line)["ts"] == "2026-01-01T00:00:00.000000+00:00"  # stored as UTC
    assert segment.name.startswith("events-") and f"-{os.getpid()}-" in segment.name


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    log = Journal(tmp_path, "events", COLUMNS, compact=False).open()
    log.append_many([record(0), record(1)])
    log.close()
    (segment,) = jsonl(tmp_path)
    whole = log.encode(record(2))
    with segment.open("ab") as handle:
        handle.write(whole[: len(whole) // 2])  # a writer died in the middle of a record
    assert read_journal(tmp_path, "events")["id"].to_pylist() == ["r0", "r1"]


def test_a_damaged_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    log = Journal(tmp_path, "events", COLUMNS, compact=False).open()
    log.append(record(0))
    assert log._segment is not None
    os.write(log._segment.fd, b"\x00\x00\x00 not json\n")  # what a machine crash can leave
    log.append(record(1))
    log.close()
    assert read_journal(tmp_path, "events")["id"].to_pylist() == ["r0", "r1"]


def _kill_script(folder: Path, n: int) -> str:
    return (
        "import os, signal, sys\n"
        "from datetime import datetime, UTC\n"
        "from fraud_platform.journal import Journal\n"
        f"log = Journal({str(folder)!r}, 'events', {COLUMNS!r}, fsync_seconds=60).open()\n"
        f"for i in range({n}):\n"
        "    log.append({'id': f'r{i}', 'ts': datetime.now(UTC), 'x': 1.0, 'n': i, 'ok': True})\n"
        "print('appended', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )


def test_sigkill_loses_no_appended_record_and_open_recovers_it(tmp_path: Path) -> None:
    # fsync every 60 s: nothing was fsync'ed, yet the page cache outlives the process.
    done = subprocess.run(
        [sys.executable, "-c", _kill_script(tmp_path, 500)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "appended" in done.stdout
    assert len(jsonl(tmp_path)) == 1 and parquet(tmp_path) == []
    assert read_journal(tmp_path, "events")["n"].to_pylist() == list(range(500))

    log = Journal(tmp_path, "events", COLUMNS).open()  # the next start compacts the orphan
    try:
        assert log.stats.recovered == 1
        assert len(parquet(tmp_path)) == 1
        assert read_journal(tmp_path, "events")["n"].to_pylist() == list(range(500))
    finally:
        log.close()


def test_recovery_leaves_a_live_writers_segment_alone(tmp_path: Path) -> None:
    first = Journal(tmp_path, "events", COLUMNS).open()
    try:
        first.append(record(0))
        assert recover(tmp_path, "events") == 0  # its lock is held: not an orphan
        second = Journal(tmp_path, "events", COLUMNS).open()
        second.append(record(1))
        assert second.stats.recovered == 0
        assert len(jsonl(tmp_path)) == 2
        assert sorted(read_journal(tmp_path, "events")["id"].to_pylist()) == ["r0", "r1"]
        second.close()
        first.append(record(2))  # still writable after the other one came and went
    finally:
        first.close()
    assert sorted(read_journal(tmp_path, "events")["id"].to_pylist()) == ["r0", "r1", "r2"]


def test_an_empty_orphan_is_removed_without_a_parquet_file(tmp_path: Path) -> None:
    (tmp_path / "events-20260101T000000000000Z-1-000001.jsonl").write_bytes(
        journal._header("events", COLUMNS)
    )
    assert recover(tmp_path, "events") == 1
    assert list(tmp_path.iterdir()) == []


def test_rotation_by_records_and_by_age(tmp_path: Path) -> None:
    log = Journal(tmp_path, "events", COLUMNS, rotate_records=3, fsync_seconds=0.05).open()
    try:
        for i in range(7):
            log.append(record(i))
        deadline = time.monotonic() + 10
        while log.stats.segments_compacted < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.stats.segments_compacted == 2
        assert len(parquet(tmp_path)) == 2 and len(jsonl(tmp_path)) == 1
        assert read_journal(tmp_path, "events")["n"].to_pylist() == list(range(7))
    finally:
        log.close()

    aged = Journal(tmp_path / "aged", "events", COLUMNS, rotate_seconds=0.1, fsync_seconds=0.02)
    with aged.open():
        aged.append(record(0))
        deadline = time.monotonic() + 10
        while aged.stats.segments_sealed < 1 and time.monotonic() < deadline:
            time.sleep(0.02)  # no append needed: the background thread seals an old segment
        assert aged.stats.segments_sealed == 1
    assert read_journal(tmp_path / "aged", "events")["n"].to_pylist() == [0]


def test_background_fsync_within_the_interval(tmp_path: Path) -> None:
    with Journal(tmp_path, "events", COLUMNS, fsync_seconds=0.05).open() as log:
        log.append(record(0))
        deadline = time.monotonic() + 10
        while log.stats.fsyncs == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.stats.fsyncs >= 1
        before = log.stats.fsyncs
        time.sleep(0.3)
        assert log.stats.fsyncs == before  # nothing new written: no fsync


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: {k: v for k, v in r.items() if k != "x"}, "missing columns ['x']"),
        (lambda r: r | {"extra": 1}, "unexpected ['extra']"),
        (lambda r: r | {"id": 5}, "events.id"),
        (lambda r: r | {"n": 2.5}, "events.n"),
        (lambda r: r | {"ts": "2026-01-01"}, "events.ts"),
        (lambda r: r | {"ok": "yes"}, "events.ok"),
        (lambda r: r | {"id": "\ud800"}, "not valid Unicode"),
    ],
)
def test_a_bad_record_is_refused_and_nothing_is_written(
    tmp_path: Path, change, message: str
) -> None:
    log = Journal(tmp_path, "events", COLUMNS).open()
    try:
        with pytest.raises(JournalRecordError, match=message.replace("[", r"\[")):
            log.append_many([record(0), change(record(1))])
    finally:
        log.close()
    assert read_journal(tmp_path, "events").num_rows == 0


def test_nulls_and_non_finite_numbers(tmp_path: Path) -> None:
    with Journal(tmp_path, "events", COLUMNS).open() as log:
        log.append({"id": None, "ts": None, "x": math.nan, "n": None, "ok": None})
        log.append(record(1) | {"x": math.inf})
    rows = read_journal(tmp_path, "events").to_pylist()
    assert rows[0] == {"id": None, "ts": None, "x": None, "n": None, "ok": None}
    assert rows[1]["x"] is None  # JSON has no infinity: logged as "no number"


def test_closed_journal_refuses_appends(tmp_path: Path) -> None:
    log = Journal(tmp_path, "events", COLUMNS).open()
    log.close()
    with pytest.raises(JournalError, match="closed"):
        log.append(record(0))


def test_a_failed_write_seals_the_segment_and_the_next_append_starts_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Journal(tmp_path, "events", COLUMNS, compact=False).open()
    log.append(record(0))
    real = journal._write_all

    def half_then_full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal, "_write_all", half_then_full)
    with pytest.raises(JournalError, match="No space left"):
        log.append(record(1))
    monkeypatch.setattr(journal, "_write_all", real)
    log.append(record(2))
    log.close()
    assert len(jsonl(tmp_path)) == 2
    assert read_journal(tmp_path, "events")["id"].to_pylist() == ["r0", "r2"]


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    log = Journal(tmp_path, "events", COLUMNS, rotate_records=700, fsync_seconds=0.01).open()

    def writer(k: int) -> None:
        for i in range(400):
            log.append(record(k * 1000 + i))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    ids = read_journal(tmp_path, "events")["n"].to_pylist()
    assert sorted(ids) == sorted(k * 1000 + i for k in range(6) for i in range(400))
    assert jsonl(tmp_path) == []  # every rotated segment compacted


def test_segments_with_other_columns_are_merged(tmp_path: Path) -> None:
    old = pa.table({"id": ["old"], "x": pa.array([1], pa.int64())})
    pq.write_table(old, tmp_path / "events-20200101T000000000000Z-1-000001.parquet")
    with Journal(tmp_path, "events", COLUMNS).open() as log:
        log.append(record(3))
    table = read_journal(tmp_path, "events")
    assert table["id"].to_pylist() == ["old", "r3"]
    assert table["x"].to_pylist() == [1.0, 0.75]  # int64 promoted to float64
    assert table["n"].to_pylist() == [None, 3]
    assert read_journal(tmp_path, "events", columns=["id"]).column_names == ["id"]


def test_jsonl_twin_of_a_compacted_segment_is_read_once(tmp_path: Path) -> None:
    log = Journal(tmp_path, "events", COLUMNS, compact=False).open()
    log.append(record(0))
    log.close()
    (segment,) = jsonl(tmp_path)
    table = journal.read_segment(segment)
    pq.write_table(table, segment.with_suffix(".parquet"))  # compaction before the unlink
    assert segment_files(tmp_path, "events") == [segment.with_suffix(".parquet")]
    assert read_journal(tmp_path, "events").num_rows == 1


def test_modified_since_and_other_journals_are_ignored(tmp_path: Path) -> None:
    with Journal(tmp_path, "events", COLUMNS).open() as log:
        log.append(record(0))
    with Journal(tmp_path, "other", {"id": "string"}).open() as other:
        other.append({"id": "o"})
    assert read_journal(tmp_path, "events")["id"].to_pylist() == ["r0"]
    assert read_journal(tmp_path, "events", modified_since=time.time() + 60).num_rows == 0
    assert read_journal(tmp_path / "missing", "events").num_rows == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"name": "Bad Name"}, {"columns": {"x": "decimal"}}, {"columns": {}}, {"fsync_seconds": 0}],
)
def test_bad_configuration_is_refused(tmp_path: Path, kwargs: dict) -> None:
    args = {"name": "events", "columns": COLUMNS} | kwargs
    with pytest.raises(ValueError):
        Journal(tmp_path, args.pop("name"), args.pop("columns"), **args)
