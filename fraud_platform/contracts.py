"""Contracts between the steps, as code: what one step writes and another reads, defined once.

Why here. A column that serving writes and monitoring tests, or a registry tag that training
writes and serving parses, is an interface. Written as a string literal in each step, a rename
in one place breaks the other silently: the API would refuse a model whose threshold tag it
cannot find, the drift check would test a column the log no longer has. So each such name is
defined once, on the ground floor that every step imports and that imports no step:

* the column names shared across steps (:data:`TIMESTAMP`, :data:`LABEL`,
  :data:`PROBABILITY`, ...);
* the prediction-log record: its columns and their journal types
  (:func:`prediction_log_columns`, :func:`prediction_log_schema`) and its one reader
  (:func:`read_prediction_log`), used by monitoring and simulation; its one writer is
  ``serving/prediction_log.py``;
* the registry tags of a model version (:class:`ModelTags`): written by training, parsed by
  serving, by training's champion/challenger and by ``fraud train evaluate``.

Two more contracts live with the settings, since they are configuration: the model's registry
name and alias (``MODEL_NAME``/``MODEL_ALIAS``, :class:`fraud_platform.settings.Settings`, read
by training and serving alike) and the MLflow artifact location
(:func:`fraud_platform.tracking.artifact_location`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fraud_platform.journal import arrow_schema, read_journal

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# ------------------------------------------------------------------ column names across steps

TRANSACTION_ID = "transaction_id"
CUSTOMER_ID = "customer_id"
MERCHANT_ID = "merchant_id"
TIMESTAMP = "timestamp"  # a transaction's event time (UTC), in raw data, requests and the log
EVENT_TIMESTAMP = "event_timestamp"  # the same time where Feast's point-in-time join reads it
AMOUNT = "amount"
LAT = "lat"  # where the transaction happens
LONG = "long"
LABEL = "is_fraud"  # the target: 1 fraud, 0 legitimate
FRAUD_PATTERN = "fraud_pattern"  # a label's pattern: none, unknown, card_testing, ...
LABEL_TIMESTAMP = "label_timestamp"  # when the label became known (after the transaction)
PROBABILITY = "probability"  # the model's fraud probability: logged, and in the drift reference
PREDICTION = "prediction"  # FRAUD, REVIEW or LEGIT, at the model's two thresholds
THRESHOLD = "threshold"
SCORED_AT = "scored_at"
FRAUD, REVIEW, LEGIT = "FRAUD", "REVIEW", "LEGIT"  # the values of PREDICTION


def prediction_for(probability: float, threshold: float, review_threshold: float) -> str:
    """The decision on one transaction: the one rule training reports and the API serves.

    ``FRAUD`` (block) at or above ``threshold``; ``REVIEW`` (queue for an analyst) at or above
    ``review_threshold`` and below ``threshold``; ``LEGIT`` below both. With
    ``review_threshold == threshold`` there is no REVIEW band.
    """
    if probability >= threshold:
        return FRAUD
    return REVIEW if probability >= review_threshold else LEGIT


def review_lower_end(threshold: float, review_threshold: float | None) -> float:
    """The REVIEW band's lower end: ``threshold`` (no band) for a version registered without one."""
    return threshold if review_threshold is None else review_threshold


# A scoring request carries a raw transaction's fields (data/schema.py: TRANSACTIONS).
REQUEST_FIELDS: tuple[str, ...] = (
    TRANSACTION_ID,
    CUSTOMER_ID,
    MERCHANT_ID,
    TIMESTAMP,
    AMOUNT,
    LAT,
    LONG,
)

# ------------------------------------------------------------------ the prediction log

PREDICTION_LOG = "predictions"  # journal name: files predictions-<utc>-<pid>-<seq>.jsonl/.parquet

# What the request said, and when it was scored (journal column types, fraud_platform.journal).
PREDICTION_LOG_REQUEST: dict[str, str] = {
    TRANSACTION_ID: "string",
    CUSTOMER_ID: "string",
    MERCHANT_ID: "string",
    TIMESTAMP: "timestamp",
    AMOUNT: "float64",
    LAT: "float64",
    LONG: "float64",
    SCORED_AT: "timestamp",
}
# What the model answered.
PREDICTION_LOG_OUTCOME: dict[str, str] = {
    PROBABILITY: "float64",
    PREDICTION: "string",
    THRESHOLD: "float64",
    "model_name": "string",
    "model_version": "string",
    "model_run_id": "string",
    "cold_start": "bool",
}
# Every column of the log that is not a feature (monitoring tells features from the rest).
PREDICTION_LOG_NON_FEATURES: frozenset[str] = frozenset(PREDICTION_LOG_REQUEST) | frozenset(
    PREDICTION_LOG_OUTCOME
)


def prediction_log_columns(feature_types: Mapping[str, str]) -> dict[str, str]:
    """The log's columns in order: the request, one per feature, the outcome.

    Args:
        feature_types: The feature service's features, in order, with their journal types
            (``int64``, ``float64``, ...).

    Returns:
        Column name -> journal type.

    Raises:
        ValueError: If a feature is named like a request or outcome column.
    """
    clash = PREDICTION_LOG_NON_FEATURES & set(feature_types)
    if clash:
        raise ValueError(f"feature names clash with prediction-log columns: {sorted(clash)}")
    return {**PREDICTION_LOG_REQUEST, **feature_types, **PREDICTION_LOG_OUTCOME}


def prediction_log_schema(feature_types: Mapping[str, str]) -> pa.Schema:
    """The log's record as an Arrow schema (what its compacted Parquet segments hold)."""
    return arrow_schema(prediction_log_columns(feature_types))


def read_prediction_log(
    folder: Path, *, columns: Sequence[str] | None = None, modified_since: float | None = None
) -> pd.DataFrame:
    """Every complete row of the prediction log, oldest segment first: the one reader.

    Reads the open (JSON lines) and compacted (Parquet) segments of every API process; a row
    being written at that very moment is either whole or absent, never torn.

    Args:
        folder: The prediction log folder (``data/prediction_log``).
        columns: Read only these columns (those present).
        modified_since: Only segments modified at or after this POSIX time.

    Returns:
        The rows; an empty frame without columns when there are none.
    """
    table = read_journal(folder, PREDICTION_LOG, columns=columns, modified_since=modified_since)
    return table.to_pandas()


# ------------------------------------------------------------------ registry tags of a model


class ModelTagsError(ValueError):
    """A model version's tags are missing or malformed; the message names the tag."""


@dataclass(frozen=True)
class ModelTags:
    """The registry tags of a model version: what a consumer needs to use it, and its lineage.

    Attributes:
        threshold: Decision threshold on the fraud probability (a row is FRAUD at or above).
        review_threshold: The REVIEW band's lower end (at or above it and below ``threshold``:
            REVIEW); ``None`` (versions registered before the band) means ``threshold``.
        features: The model's input columns, in order (names of the feature service).
        feature_service: The Feast feature service the features come from.
        holdout_pr_auc: The version's holdout PR-AUC when it was trained.
        raw_data_md5: The version of the raw data it was trained on.
        promotion_decision: Why the alias moved to it or not (``no_champion``, ``forced``,
            ``challenger_better``, ``champion_kept``, ``champion_unscorable``), or
            ``not_selected`` (another model of the same run had the better holdout PR-AUC).
        model_kind: Its family (``logistic_regression``, ``lightgbm``).
    """

    threshold: float
    features: tuple[str, ...]
    feature_service: str | None = None
    holdout_pr_auc: float | None = None
    raw_data_md5: str | None = None
    promotion_decision: str | None = None
    model_kind: str | None = None
    review_threshold: float | None = None

    @property
    def review_at(self) -> float:
        """The REVIEW band's lower end: ``threshold`` when the version has no band."""
        return review_lower_end(self.threshold, self.review_threshold)

    def to_tags(self) -> dict[str, str]:
        """The tags as MLflow stores them (strings); floats round-trip exactly (``repr``)."""
        tags = {"threshold": repr(float(self.threshold)), "features": ",".join(self.features)}
        if self.feature_service is not None:
            tags["feature_service"] = self.feature_service
        if self.holdout_pr_auc is not None:
            tags["holdout_pr_auc"] = repr(float(self.holdout_pr_auc))
        if self.raw_data_md5 is not None:
            tags["raw_data_md5"] = self.raw_data_md5
        if self.promotion_decision is not None:
            tags["promotion_decision"] = self.promotion_decision
        if self.model_kind is not None:
            tags["model_kind"] = self.model_kind
        if self.review_threshold is not None:
            tags["review_threshold"] = repr(float(self.review_threshold))
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> ModelTags:
        """Parse and check a version's tags.

        Args:
            tags: The version's tags, as the registry returns them.

        Returns:
            The parsed tags.

        Raises:
            ModelTagsError: If ``threshold`` or ``features`` is missing or malformed, the
                threshold is outside [0, 1], there are no features, or ``review_threshold``
                is malformed or not in [0, threshold].
        """
        try:
            threshold = float(tags["threshold"])
            review = tags.get("review_threshold")
            review_threshold = None if review is None else float(review)
            features = tuple(f.strip() for f in tags["features"].split(",") if f.strip())
            holdout = tags.get("holdout_pr_auc")
            holdout_pr_auc = None if holdout is None else float(holdout)
        except (KeyError, ValueError) as exc:
            raise ModelTagsError(f"bad or missing tag: {exc}") from exc
        if not 0.0 <= threshold <= 1.0 or not features:
            raise ModelTagsError(f"threshold {threshold} or features invalid")
        if review_threshold is not None and not 0.0 <= review_threshold <= threshold:
            raise ModelTagsError(
                f"review_threshold {review_threshold} not in [0, threshold {threshold}]"
            )
        return cls(
            threshold=threshold,
            features=features,
            feature_service=tags.get("feature_service"),
            holdout_pr_auc=holdout_pr_auc,
            raw_data_md5=tags.get("raw_data_md5"),
            promotion_decision=tags.get("promotion_decision"),
            model_kind=tags.get("model_kind"),
            review_threshold=review_threshold,
        )
