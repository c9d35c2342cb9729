"""Feast's Redis layout, as feature_engine/online/redis_layout.py writes it, against Feast's own
writes.

The adapter writes Feast's internal layout directly (freshness writer, direct reader, fast
materialize). If a Feast upgrade changes that layout, these tests fail loudly: for one entity of
every state view, Feast's public ``write_to_online_store`` and the adapter's encoding must give
the same Redis key and the same bytes in every field, and the adapter's writes must read back
through Feast's public ``get_online_features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from feast import FeatureStore

from feature_engine.online.redis_layout import RedisLayout, ViewLayout
from feature_engine.store import open_store
from fraud_platform.contracts import EVENT_TIMESTAMP
from fraud_platform.redis_cluster import client_for
from tests.support.edge_cases import FeatureProject

VIEWS = {  # view -> join key
    "customer_activity": "customer_id",
    "merchant_activity": "merchant_id",
    "merchant_label_stats": "merchant_id",
    "customer_profile": "customer_id",
}


def _latest_row(project: FeatureProject, view: str, key: str) -> dict[str, Any]:
    """The pipeline's latest state row of the entity with the most rows (long arrays)."""
    table = pd.read_parquet(project.settings.paths.feature_table(view))
    busiest = table[key].value_counts().index[0]
    row = table[table[key] == busiest].sort_values(EVENT_TIMESTAMP).iloc[-1]
    return {
        name: (list(value) if hasattr(value, "__len__") and not isinstance(value, str) else value)
        for name, value in row.items()
    }


@dataclass(frozen=True)
class _Case:
    """One view, an empty Redis, the store, the adapter and one real state row to write."""

    client: Any  # redis.Redis or redis.RedisCluster (REDIS_MODE)
    store: FeatureStore
    layout: RedisLayout
    shape: ViewLayout
    key_column: str
    row: dict[str, Any]
    event_us: int

    @classmethod
    def of(cls, project: FeatureProject, redis_url: str, view: str) -> _Case:
        client = client_for(redis_url, project.settings.redis_mode)
        client.flushdb()
        store = open_store(project.settings)
        layout = RedisLayout(store)
        row = _latest_row(project, view, VIEWS[view])
        event_us = pd.Timestamp(row[EVENT_TIMESTAMP]).value // 1_000
        return cls(client, store, layout, layout.view(view), VIEWS[view], row, event_us)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value Feast returns."""
    return value.item() if hasattr(value, "item") else value


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_adapter_bytes_equal_feasts_own_write(
    feature_project: FeatureProject, redis_url: str, view: str
) -> None:
    case = _Case.of(feature_project, redis_url, view)
    row, shape, layout = case.row, case.shape, case.layout
    case.store.write_to_online_store(view, pd.DataFrame([row]))  # Feast's public write path
    keys = list(case.client.scan_iter(count=100))
    assert len(keys) == 1
    feasts = case.client.hgetall(keys[0])

    assert layout.key(shape, row[case.key_column]) == keys[0]
    ours = shape.encode(row, case.event_us)
    assert ours == feasts  # every field hash, every ValueProto, the _ts field: byte for byte
    assert layout.read(shape, row[case.key_column]) == {f: _plain(row[f]) for f in shape.fields}


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_adapter_writes_read_back_through_get_online_features(
    feature_project: FeatureProject, redis_url: str, view: str
) -> None:
    case = _Case.of(feature_project, redis_url, view)
    row, shape, layout = case.row, case.shape, case.layout
    with layout.client.pipeline(transaction=True) as pipe:
        layout.write(
            pipe, layout.key(shape, row[case.key_column]), shape.encode(row, case.event_us)
        )
        pipe.execute()

    answer = case.store.get_online_features(
        features=[f"{view}:{field}" for field in shape.fields],
        entity_rows=[{case.key_column: row[case.key_column]}],
    ).to_dict()
    for field in shape.fields:
        assert answer[field] == [_plain(row[field])], field
