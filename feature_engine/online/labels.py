"""Late-arriving labels from the label source (``data/raw/labels.parquet``) into Redis.

A label counts in ``merchant_fraud_rate_30d`` once its ``label_timestamp`` has passed, so the
online state must take in each label when it arrives, not at the next rebuild. Two callers
share this one path: ``fraud features ingest-labels`` (a time range, by hand) and the ops
service's ``labels`` job (every label due by now that Redis has not counted, on a schedule).
The writer's once-mark per transaction makes both idempotent: a label loaded by materialize,
posted through ``POST /labels`` or folded by an earlier run is never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from feature_engine.online.writer import OnlineStateWriter
    from fraud_platform.settings import Paths


def read_label_source(paths: Paths) -> pd.DataFrame:
    """Every label of the label source with its transaction's merchant, by label time.

    Args:
        paths: The project's paths (``data/raw/labels.parquet``, ``transactions.parquet``).

    Returns:
        ``transaction_id, label_timestamp, is_fraud, merchant_id``, sorted by label time.

    Raises:
        OSError: If a table is missing or unreadable.
    """
    labels = pd.read_parquet(
        paths.raw_table("labels"), columns=["transaction_id", "label_timestamp", "is_fraud"]
    )
    transactions = pd.read_parquet(
        paths.raw_table("transactions"), columns=["transaction_id", "merchant_id"]
    )
    return labels.merge(transactions, on="transaction_id").sort_values(
        "label_timestamp", kind="stable"
    )


def arrived_between(labels: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The labels whose ``label_timestamp`` is in ``(start, end]`` (both aware UTC times)."""
    return labels[(labels["label_timestamp"] > start) & (labels["label_timestamp"] <= end)]


def fold(writer: OnlineStateWriter, labels: pd.DataFrame) -> int:
    """Fold labels into their merchants' online label buckets, each at most once.

    Returns:
        How many were applied (the others were counted before).
    """
    return writer.ingest_labels(
        [
            (
                str(r.merchant_id),
                str(r.transaction_id),
                int(r.label_timestamp.value // 1_000),
                bool(r.is_fraud),
            )
            for r in labels.itertuples()
        ]
    )


@dataclass
class LabelFollower:
    """Follows the label source: each call folds every label due by now not yet counted.

    Attributes:
        done: Transaction ids whose label this process already knows to be counted in Redis
            (folded by it, or found marked), so later calls skip them without a Redis round trip.
    """

    writer: OnlineStateWriter
    paths: Paths
    done: set[str] = field(default_factory=set)

    def run(self, now: pd.Timestamp | None = None) -> dict[str, int]:
        """Fold the labels due by ``now`` (wall-clock now by default) that Redis lacks.

        Returns:
            ``due`` (labels due and not known counted before this call), ``applied`` (folded
            now) and ``source`` (labels in the source).
        """
        now = now if now is not None else pd.Timestamp.now(tz="UTC")
        source = read_label_source(self.paths)
        due = source[(source["label_timestamp"] <= now) & ~source["transaction_id"].isin(self.done)]
        pairs = zip(due["merchant_id"].astype(str), due["transaction_id"].astype(str), strict=True)
        seen = self.writer.labels_seen(list(pairs))
        new = due[[not flag for flag in seen]]
        applied = fold(self.writer, new)
        self.done.update(due["transaction_id"].astype(str))
        return {"source": len(source), "due": len(due), "applied": applied}
