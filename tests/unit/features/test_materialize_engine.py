"""The engine's filter and dedup nodes pass Arrow through only when Feast's would not change it.

``feature_engine/materialize.py`` replaces Feast's pandas round trips when there is
nothing to filter and every entity has one row; anything else must still reach Feast's own
node, whose answer is compared here with the replacement's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
from feast.infra.compute_engines.backends.pandas_backend import PandasBackend
from feast.infra.compute_engines.dag.context import ColumnInfo
from feast.infra.compute_engines.local.arrow_table_value import ArrowTableValue
from feast.infra.compute_engines.local.nodes import LocalDedupNode, LocalSourceReadNode

from feature_engine.materialize import ArrowPassDedupNode, ArrowPassFilterNode

T0 = datetime(2026, 3, 1, tzinfo=UTC)
INFO = ColumnInfo(
    join_keys=["customer_id"],
    feature_cols=["score"],
    ts_col="event_timestamp",
    created_ts_col=None,
)


def _run(node_class: Any, table: pa.Table, *args: Any) -> tuple[pa.Table, Any]:
    """Execute one node on ``table`` as its single input; return its output and the context."""
    source = LocalSourceReadNode("source", None, INFO)  # type: ignore[arg-type]
    node = node_class("node", INFO, PandasBackend(), *args, inputs=[source])
    context: Any = SimpleNamespace(node_outputs={"source": ArrowTableValue(data=table)})
    return node.execute(context).data, context


def _table(customers: list[str], scores: list[float]) -> pa.Table:
    times = [T0 + timedelta(hours=i) for i in range(len(customers))]
    return pa.table(
        {
            "customer_id": customers,
            "score": scores,
            "event_timestamp": pa.array(times, type=pa.timestamp("us", tz="UTC")),
        }
    )


def test_unique_entities_pass_through_untouched() -> None:
    table = _table(["c1", "c2", "c3"], [1.0, 2.0, 3.0])
    out, context = _run(ArrowPassDedupNode, table)
    assert out is table  # no pandas round trip
    assert context.node_outputs["node"].data is table


def test_duplicate_entities_are_deduplicated_as_feast_does() -> None:
    table = _table(["c1", "c2", "c1", "c2", "c3"], [1.0, 2.0, 3.0, 4.0, 5.0])
    out, _ = _run(ArrowPassDedupNode, table)
    feasts, _ = _run(LocalDedupNode, table)
    assert out.num_rows == 3
    latest = dict(zip(out["customer_id"].to_pylist(), out["score"].to_pylist(), strict=True))
    assert latest == {"c1": 3.0, "c2": 4.0, "c3": 5.0}  # the latest event time per entity
    assert out.to_pylist() == feasts.to_pylist()


def test_filter_passes_through_without_an_expression_and_filters_with_one() -> None:
    table = _table(["c1", "c2"], [1.0, -2.0])
    out, _ = _run(ArrowPassFilterNode, table)
    assert out is table
    filtered, _ = _run(ArrowPassFilterNode, table, "score > 0")
    assert filtered["customer_id"].to_pylist() == ["c1"]
