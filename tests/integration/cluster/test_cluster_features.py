"""The online parity tests of ``tests/integration/features``, run on a real Redis Cluster.

The same test functions, imported (not copied): here the ``redis_url`` and ``feature_project``
fixtures (``conftest.py``) put the edge-case project on the session's 3-master cluster with
``REDIS_MODE=cluster``. Zero mismatches against the brute-force reference after ``feast
materialize`` (the fast engine's pipelines, split by slot) and after online ingestion (the
compare-and-set script, one slot per call), the label idempotency marker in its
merchant's slot, Feast's own bytes, the consistency monitor, and ``fraud features
rebuild-online`` (which runs the real ``feast materialize`` CLI) on an emptied cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from redis.cluster import RedisCluster

from feature_engine.online.redis_layout import RedisLayout, feast_client
from feature_engine.online.writer import OnlineStateWriter
from feature_engine.store import online_features, open_store, request_row
from feature_repo.services import FEATURE_SERVICE_NAME, STATE_VELOCITY
from tests.integration.features.test_consistency_monitor import (
    test_monitor_finds_no_skew_then_flags_exactly_the_injected_one,
)
from tests.integration.features.test_parity import (
    reference,
    test_default_materialize_serves_requests_at_data_time_exactly,
    test_ingest_labels_command_moves_online_merchant_rates,
    test_ingesting_twice_counts_once,
    test_merchant_counts_a_reused_transaction_id_of_another_card,
    test_online_after_materialize_matches_reference,
    test_replay_through_online_ingestion_matches_reference,
)
from tests.integration.features.test_redis_layout import (
    test_adapter_bytes_equal_feasts_own_write,
    test_adapter_writes_read_back_through_get_online_features,
)
from tests.support.edge_cases import FEATURES, FeatureProject, flush_online
from tests.support.reference import Reference, Request, mismatches

pytestmark = pytest.mark.integration

__all__ = [  # collected by pytest from this module, on the cluster's fixtures
    "reference",
    "test_adapter_bytes_equal_feasts_own_write",
    "test_adapter_writes_read_back_through_get_online_features",
    "test_default_materialize_serves_requests_at_data_time_exactly",
    "test_ingest_labels_command_moves_online_merchant_rates",
    "test_ingesting_twice_counts_once",
    "test_merchant_counts_a_reused_transaction_id_of_another_card",
    "test_monitor_finds_no_skew_then_flags_exactly_the_injected_one",
    "test_online_after_materialize_matches_reference",
    "test_replay_through_online_ingestion_matches_reference",
]


def test_feast_uses_a_cluster_client_and_state_spreads_over_every_master(
    feature_project: FeatureProject,
) -> None:
    """The one setting reaches Feast (``redis_type: redis_cluster``), and keys land on all
    three masters: the tests above really ran against a sharded store."""
    store = open_store(feature_project.settings)
    client = feast_client(store)
    assert isinstance(client, RedisCluster)
    assert store.config.online_store.redis_type.value == "redis_cluster"
    writer = OnlineStateWriter(RedisLayout(store), FEATURES, STATE_VELOCITY)
    for i in range(40):  # enough merchants that every master owns some
        assert writer.ingest_label(f"m_spread_{i}", f"t_spread_{i}", 1_000_000 * i, i % 2 == 0)
        assert not writer.ingest_label(f"m_spread_{i}", f"t_spread_{i}", 1_000_000 * i, True)
    sizes = {node.name: client.dbsize(target_nodes=node) for node in client.get_primaries()}
    assert len(sizes) == 3 and all(size > 0 for size in sizes.values()), sizes


def test_rebuild_online_command_restores_the_cluster(
    feature_project: FeatureProject, reference: Reference, redis_url: str
) -> None:
    """``fraud features rebuild-online`` on an emptied cluster (a new cluster, say) gives every
    card the reference's features at data time."""
    flush_online(feature_project.settings)
    env = {
        **os.environ,
        "PROJECT_ROOT": str(feature_project.root),
        "REDIS_URL": redis_url,
        "REDIS_MODE": "cluster",
    }
    result = subprocess.run(
        [str(Path(sys.executable).with_name("fraud")), "features", "rebuild-online"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    store = open_store(feature_project.settings)
    tx = feature_project.tables["transactions"]
    at = tx["timestamp"].max() + pd.Timedelta(minutes=1)
    pairs = tx.drop_duplicates("customer_id")[["customer_id", "merchant_id"]].itertuples()
    requests = [Request(p.customer_id, p.merchant_id, int(at.value // 1000), 7.5, 40.1, -74.2)
                for p in pairs]  # fmt: skip
    rows = [request_row(q.customer_id, q.merchant_id, at.to_pydatetime(), q.amount, q.lat, q.long)
            for q in requests]  # fmt: skip
    got = online_features(store, rows, FEATURE_SERVICE_NAME)
    problems = [
        (q, bad)
        for q, row in zip(requests, got, strict=True)
        if (bad := mismatches(reference.features(q), row))
    ]
    assert not problems, problems[:5]
    assert sum(row["txn_count_24h"] > 0 for row in got) > 0  # state really came back
