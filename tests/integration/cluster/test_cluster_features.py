"""The online parity tests of ``tests/integration/features``, run on a real Redis Cluster.

The same test functions, imported (not copied): here the ``redis_url`` and ``feature_project``
fixtures (``conftest.py``) put the edge-case project on the session's 3-master cluster with
``REDIS_MODE=cluster``. Zero mismatches against the brute-force reference after ``feast
materialize`` (the fast engine's pipelines, split by slot) and after online ingestion (the
``WATCH``/``MULTI`` writer, one slot per transaction), the label idempotency marker in its
merchant's slot, Feast's own bytes, and the consistency monitor.
"""

from __future__ import annotations

import pytest
from redis.cluster import RedisCluster

from feature_repo.online_state import OnlineStateWriter
from feature_repo.redis_layout import RedisLayout, feast_client
from feature_repo.store import open_store
from tests.integration.features.test_consistency_monitor import (
    test_monitor_finds_no_skew_then_flags_exactly_the_injected_one,
)
from tests.integration.features.test_parity import (
    reference,
    test_default_materialize_serves_requests_at_data_time_exactly,
    test_feast_cli_materialize_then_incremental,
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
from tests.support.edge_cases import FEATURES, FeatureProject

pytestmark = pytest.mark.integration

__all__ = [  # collected by pytest from this module, on the cluster's fixtures
    "reference",
    "test_adapter_bytes_equal_feasts_own_write",
    "test_adapter_writes_read_back_through_get_online_features",
    "test_default_materialize_serves_requests_at_data_time_exactly",
    "test_feast_cli_materialize_then_incremental",
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
    writer = OnlineStateWriter(RedisLayout(store), FEATURES)
    for i in range(40):  # enough merchants that every master owns some
        assert writer.ingest_label(f"m_spread_{i}", f"t_spread_{i}", 1_000_000 * i, i % 2 == 0)
        assert not writer.ingest_label(f"m_spread_{i}", f"t_spread_{i}", 1_000_000 * i, True)
    sizes = {node.name: client.dbsize(target_nodes=node) for node in client.get_primaries()}
    assert len(sizes) == 3 and all(size > 0 for size in sizes.values()), sizes
