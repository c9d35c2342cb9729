"""The latest-rows sidecar answers `feast materialize`'s question exactly as the table scan does.

``feature_engine/offline/latest_rows.py``: the pipeline writes each table's latest row per entity
beside it, and the offline store reads that instead of the whole history only when the range reaches
the table's last event and the sidecar still matches the table. Every case here compares with a
pandas reference written from Feast's rule (latest event time in ``[start, end]``, then latest
created timestamp, then the row written last) and checks which file the query read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast.infra.offline_stores.file_source import FileSource

from feature_engine.offline.duckdb_store import AsOfDuckDBOfflineStore
from feature_engine.offline.latest_rows import (
    latest_rows_path,
    usable_latest_rows,
    write_latest_rows,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FEATURES = ["amounts", "ids", "score"]
CONFIG: Any = SimpleNamespace(offline_store=SimpleNamespace())  # the store reads limits only


def _history(with_created: bool) -> pd.DataFrame:
    """State rows of 40 entities, several per entity, with same-time ties and null times."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(400):
        entity = f"e{rng.integers(0, 40):02d}"
        ts = T0 + timedelta(hours=int(rng.integers(0, 30 * 24)))
        created = T0 + timedelta(seconds=int(rng.integers(0, 3)))
        rows.append(
            {
                "entity_id": entity,
                "event_timestamp": ts,
                "created": created if rng.random() < 0.8 else None,
                "amounts": [float(x) for x in rng.normal(size=rng.integers(0, 4))],
                "ids": [f"t{i}-{k}" for k in range(rng.integers(0, 3))],
                "score": float(i),
            }
        )
    frame = pd.DataFrame(rows)
    # Exact ties of (entity, time): only the created timestamp or the file order decides.
    frame.loc[10:12, ["entity_id", "event_timestamp"]] = ["e99", T0 + timedelta(days=3)]
    frame.loc[20, "event_timestamp"] = None  # never qualifies
    if not with_created:
        frame = frame.drop(columns="created")
    return frame


def _write(frame: pd.DataFrame, path: Path) -> None:
    schema = pa.schema(
        [
            ("entity_id", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            *([("created", pa.timestamp("us", tz="UTC"))] if "created" in frame else []),
            ("amounts", pa.list_(pa.float64())),
            ("ids", pa.list_(pa.string())),
            ("score", pa.float64()),
        ]
    )
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


def _reference(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """Feast's rule, straight: in range, then latest time, latest created, last written."""
    rows = frame.assign(_file_row=np.arange(len(frame)))
    rows = rows[rows["event_timestamp"].notna()]
    rows = rows[(rows["event_timestamp"] >= start) & (rows["event_timestamp"] <= end)]
    order = ["event_timestamp", *(["created"] if "created" in rows else []), "_file_row"]
    if "created" in rows:  # DESC NULLS LAST: a missing created timestamp loses a tie
        rows = rows.assign(created=rows["created"].fillna(pd.Timestamp.min.tz_localize(UTC)))
    latest = rows.sort_values(order).groupby("entity_id").tail(1)
    return _canonical(frame.loc[latest.index])


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[["entity_id", "event_timestamp", *FEATURES]].copy()
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).dt.as_unit("us")
    for column in ("amounts", "ids"):
        out[column] = out[column].map(list)
    return out.sort_values("entity_id").reset_index(drop=True)


def _pull(path: Path, created: str | None, start: datetime, end: datetime) -> tuple[str, Any]:
    """The store's answer to materialize: (the SQL it ran, its rows)."""
    source = FileSource(path=str(path), timestamp_field="event_timestamp")
    job = AsOfDuckDBOfflineStore.pull_latest_from_table_or_query(
        config=CONFIG,
        data_source=source,
        join_key_columns=["entity_id"],
        feature_name_columns=FEATURES,
        timestamp_field="event_timestamp",
        created_timestamp_column=created or "",  # Feast passes "" for none
        start_date=start,
        end_date=end,
    )
    return job.to_sql(), job.to_arrow().to_pandas()


@pytest.fixture(params=[False, True], ids=["no-created", "created"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, pd.DataFrame, str | None]:
    """A state table with its sidecar, as the pipeline leaves them."""
    frame = _history(with_created=request.param)
    path = tmp_path / "state.parquet"
    _write(frame, path)
    created = "created" if request.param else None
    write_latest_rows(path, ["entity_id"], "event_timestamp", created)
    return path, frame, created


LAST = T0 + timedelta(days=30)
RANGES = {
    "whole history": (datetime(1970, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)),
    "incremental: from day 20 to past the end": (T0 + timedelta(days=20), LAST),
    "naive end (UTC) past the end": (T0 + timedelta(days=5), datetime(2026, 4, 1)),
}


@pytest.mark.parametrize("window", sorted(RANGES))
def test_sidecar_answers_ranges_that_reach_the_last_event(
    table: tuple[Path, pd.DataFrame, str | None], window: str
) -> None:
    path, frame, created = table
    start, end = RANGES[window]
    sql, rows = _pull(path, created, start, end)
    assert str(latest_rows_path(path)) in sql and "state.parquet'" not in sql
    expected = _reference(frame, start, end.replace(tzinfo=end.tzinfo or UTC))
    assert 0 < len(expected) <= 41
    pd.testing.assert_frame_equal(_canonical(rows), expected)


def test_sidecar_holds_exactly_the_scan_of_the_whole_table(
    table: tuple[Path, pd.DataFrame, str | None],
) -> None:
    path, frame, _ = table
    sidecar = pd.read_parquet(latest_rows_path(path))
    whole = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    pd.testing.assert_frame_equal(_canonical(sidecar), _reference(frame, *whole))
    assert sidecar["entity_id"].is_unique
    assert "e99" in set(sidecar["entity_id"])  # the tie, decided as Feast decides it


def test_range_ending_before_the_last_event_scans_the_table(
    table: tuple[Path, pd.DataFrame, str | None],
) -> None:
    path, frame, created = table
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=12)
    sql, rows = _pull(path, created, start, end)
    assert str(latest_rows_path(path)) not in sql  # the sidecar would hold later rows
    expected = _reference(frame, start, end)
    assert len(expected) > 0
    pd.testing.assert_frame_equal(_canonical(rows), expected)
    # and the later rows it would have held really differ for some entity
    later = _reference(frame, start, datetime(2100, 1, 1, tzinfo=UTC))
    assert not expected.equals(later)


def test_a_rewritten_table_is_scanned_not_answered_from_a_stale_sidecar(
    table: tuple[Path, pd.DataFrame, str | None],
) -> None:
    path, frame, created = table
    changed = frame.copy()
    changed.loc[changed["entity_id"] == "e01", "score"] = -1.0  # same shape, other values
    _write(changed, path)
    whole = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    sql, rows = _pull(path, created, *whole)
    assert str(latest_rows_path(path)) not in sql
    pd.testing.assert_frame_equal(_canonical(rows), _reference(changed, *whole))


def test_sidecar_is_refused_for_other_keys_columns_or_a_missing_file(
    table: tuple[Path, pd.DataFrame, str | None],
) -> None:
    path, frame, created = table
    end = datetime(2100, 1, 1, tzinfo=UTC)
    last_event = frame["event_timestamp"].max().to_pydatetime()
    for reach in (end, last_event):  # the range must reach the last event, at least exactly
        ok = usable_latest_rows(str(path), ["entity_id"], "event_timestamp", created, [], reach)
        assert ok == str(latest_rows_path(path))
    just_before = last_event - timedelta(microseconds=1)
    other_created = None if created else "created"
    refused = [
        usable_latest_rows(str(path), ["score"], "event_timestamp", created, FEATURES, end),
        usable_latest_rows(str(path), ["entity_id"], "event_timestamp", other_created, [], end),
        usable_latest_rows(str(path), ["entity_id"], "event_timestamp", created, ["nope"], end),
        usable_latest_rows(str(path), ["entity_id"], "event_timestamp", created, [], just_before),
    ]
    assert refused == [None, None, None, None]
    latest_rows_path(path).unlink()
    assert usable_latest_rows(str(path), ["entity_id"], "event_timestamp", created, [], end) is None
