"""The platform's door to Feast: open the store, build entity rows, fetch features.

Training calls :func:`historical_features`, the API calls :func:`online_features`; both ask
for a feature service by name (the one a model was trained on:
``feature_repo.services.FEATURE_SERVICE_NAME`` by default) and both build their rows with the
same request fields, so a feature means the same number in both places.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from feature_engine.feast_cli import feast_command
from fraud_platform.contracts import EVENT_TIMESTAMP, TIMESTAMP
from fraud_platform.settings import Settings, feast_environment, get_settings

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore
    from feast.repo_config import RepoConfig

ENTITY_COLUMNS = ("customer_id", "merchant_id")
# Entity rows per get_historical_features call. The as-of join costs the same per row at any
# batch size; the batch bounds memory, because Feast's result also carries the state arrays the
# on-demand view read (1.3M long-history rows at 250k per call: peak RSS ~3 GiB).
HISTORICAL_BATCH_ROWS = 250_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)


def to_epoch_us(moment: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MICROSECOND


def from_epoch_us(ts_us: int) -> datetime:
    """The aware UTC datetime of microseconds since the epoch (inverse of :func:`to_epoch_us`)."""
    return _EPOCH + timedelta(microseconds=ts_us)


def series_to_epoch_us(timestamps: pd.Series) -> pd.Series:
    """Exact microseconds since the epoch of a datetime column, whatever its resolution."""
    values = pd.to_datetime(timestamps, utc=True)
    return values.dt.as_unit("us").astype("int64")


def open_store(
    settings: Settings | None = None, offline_store: Mapping[str, Any] | None = None
) -> FeatureStore:
    """A FeatureStore on ``feature_repo/`` with addresses taken from the settings.

    ``feature_store.yaml`` reads its addresses from variables (``${REDIS_CONNECTION_STRING}``,
    ``${FEAST_REGISTRY_PATH}``) so that the Feast CLI and compose share it; here they are filled
    in from these settings (:func:`~fraud_platform.settings.feast_environment`), not from
    ``os.environ``: a process may open stores of several roots, and opening one changes no
    global state.

    Args:
        settings: Root and Redis address; the process settings by default.
        offline_store: Replaces the ``offline_store`` section of ``feature_store.yaml``, e.g.
            ``{"type": "duckdb"}`` for Feast's stock DuckDB store (tests and benchmarks compare
            the two); the file's own section by default.

    Returns:
        The store.
    """
    from feast import FeatureStore

    settings = settings or get_settings()
    config = repo_config(settings, offline_store)
    return FeatureStore(repo_path=str(settings.paths.feature_repo), config=config)


def repo_config(settings: Settings, offline_store: Mapping[str, Any] | None = None) -> RepoConfig:
    """The profile's ``feature_store.yaml`` as Feast's ``load_repo_config`` reads it.

    ``settings.feature_profile`` picks the file (``feature_store.yaml`` for DuckDB,
    ``feature_store.spark.yaml`` for Spark: only the offline store differs); its variables come
    from the settings.

    The ``offline_store`` replacement goes in before Feast validates the config, because the
    validation imports the configured store's module (the API's ``ONLINE_ONLY`` store exists to
    keep DuckDB out of its workers).

    Args:
        settings: The root, registry and Redis address to fill in.
        offline_store: Replaces the file's ``offline_store`` section (see :func:`open_store`).

    Returns:
        The repo config (an unknown ``${VAR}`` is taken from the environment, as Feast does).
    """
    from feast.repo_config import RepoConfig

    repo = settings.paths.feature_repo
    variables = feast_environment(settings)

    def expand(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name) or os.environ.get(name, match.group(0))

    # The profile's file: feature_store.yaml (DuckDB) or feature_store.spark.yaml (Spark).
    text = re.sub(r"\$\{(\w+)\}|\$(\w+)", expand, settings.feature_store_yaml.read_text())
    data = yaml.safe_load(text)
    if offline_store is not None:
        data["offline_store"] = dict(offline_store)
    config = RepoConfig(**data)
    config.repo_path = repo
    return config


def run_feast_cli(
    settings: Settings, *args: str, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the real ``feast`` CLI in ``feature_repo/`` against this settings' root and Redis.

    Args:
        settings: Whose registry, offline tables and Redis the CLI should use.
        *args: The CLI arguments, e.g. ``"apply"``.
        capture: Capture stdout and stderr instead of passing them through.

    Returns:
        The finished process; check ``returncode``.
    """
    env = {**os.environ, **feast_environment(settings)}
    return subprocess.run(
        feast_command(*args),  # the ``feast`` command: see feature_engine.feast_cli
        cwd=settings.paths.feature_repo,
        env=env,
        capture_output=capture,
        text=True,
        check=False,
    )


def feature_service(store: FeatureStore, name: str) -> FeatureService:
    """A registered feature service by name: training's and serving's."""
    return store.get_feature_service(name)


def feature_names(store: FeatureStore, service_name: str) -> list[str]:
    """The service's feature names, in the service's order: the model's column order."""
    service = feature_service(store, service_name)
    return [
        feature.name
        for projection in service.feature_view_projections
        for feature in projection.features
    ]


def entity_frame(transactions: pd.DataFrame) -> pd.DataFrame:
    """Entity rows for ``get_historical_features`` from raw-schema transactions.

    The point-in-time join uses ``event_timestamp``; the on-demand view reads the request
    fields (``txn_timestamp_us``, ``amount``, ``lat``, ``long``) from the same row, exactly as
    the API passes them online.

    Args:
        transactions: Columns ``transaction_id, customer_id, merchant_id, timestamp, amount,
            lat, long`` (the raw schema); extra columns (a label, say) are carried along.

    Returns:
        The entity dataframe.
    """
    frame = transactions.copy()
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    frame["txn_timestamp_us"] = series_to_epoch_us(frame[TIMESTAMP])
    return frame.drop(columns=[TIMESTAMP])


def historical_features(
    store: FeatureStore,
    transactions: pd.DataFrame,
    service: str,
    progress: Callable[[str], None] | None = print,
    batch_rows: int = HISTORICAL_BATCH_ROWS,
) -> pd.DataFrame:
    """Point-in-time features of a service for each transaction (the training set).

    Retrieval runs in batches of ``batch_rows`` entity rows. The point-in-time join of one
    entity row does not depend on the others, so batching changes no value; it bounds memory,
    because Feast returns the joined state arrays beside the features (only the features are
    kept here) and the python-mode on-demand view turns them into Python lists.

    Args:
        store: An open feature store.
        transactions: Raw-schema transactions, plus any columns to carry (e.g. ``is_fraud``).
        service: The feature service's name.
        progress: Where to report progress; ``None`` for silence.
        batch_rows: Entity rows per ``get_historical_features`` call.

    Returns:
        The input columns (``timestamp`` as ``event_timestamp``) plus one column per feature,
        in input order.
    """
    started = time.perf_counter()
    service_name = service
    feature_set, names = feature_service(store, service_name), feature_names(store, service_name)
    entity_df = entity_frame(transactions).reset_index(drop=True)
    starts = range(0, len(entity_df), batch_rows)
    parts = []
    for k, start in enumerate(starts, start=1):
        batch = entity_df.iloc[start : start + batch_rows].copy()
        batch["_row"] = range(len(batch))
        job = store.get_historical_features(entity_df=batch, features=feature_set)
        # Arrow first: only the entity columns and the service's features become pandas, not
        # the state arrays the on-demand view read (Feast returns those too).
        retrieved = job.to_arrow().select([*batch.columns, *names]).to_pandas()
        _restore_utc(retrieved, batch)
        parts.append(retrieved.sort_values("_row").drop(columns="_row"))
        if progress:
            done = min(start + batch_rows, len(entity_df))
            progress(
                f"retrieved {done:,} of {len(entity_df):,} rows of {service_name} "
                f"(batch {k} of {len(starts)}, {time.perf_counter() - started:.1f} s)"
            )
    if not parts:
        return entity_df.reindex(columns=[*entity_df.columns, *names])
    return pd.concat(parts, ignore_index=True)


def _restore_utc(retrieved: pd.DataFrame, entity_df: pd.DataFrame) -> None:
    """Give the entity_df's UTC timestamp columns back their zone, in place.

    Feast passes entity_df columns through unchanged, but its Spark offline store returns them
    through Spark's ``toPandas``, which drops the zone (naive times in the session's zone, UTC
    in the Spark profile). Restored here, a profile's training frame has the same types.
    """
    for name, dtype in entity_df.dtypes.items():
        if isinstance(dtype, pd.DatetimeTZDtype) and name in retrieved.columns:
            column = retrieved[name]
            if pd.api.types.is_datetime64_dtype(column) and column.dt.tz is None:
                retrieved[name] = column.dt.tz_localize("UTC")


def request_row(
    customer_id: str,
    merchant_id: str,
    timestamp: datetime,
    amount: float,
    lat: float,
    long: float,
) -> dict[str, Any]:
    """One online entity row: entity keys plus the request fields the on-demand view reads."""
    return {
        "customer_id": customer_id,
        "merchant_id": merchant_id,
        "txn_timestamp_us": to_epoch_us(timestamp),
        "amount": float(amount),
        "lat": float(lat),
        "long": float(long),
    }


def online_features(
    store: FeatureStore,
    rows: Sequence[Mapping[str, Any]],
    service: str | FeatureService,
    names: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Features of the service for each request row, read from Redis at request time.

    Args:
        store: An open feature store.
        rows: Rows built with :func:`request_row`.
        service: The feature service's name, or the service resolved once by the caller
            (with ``names``) for speed.
        names: Its feature names, resolved once by the caller for speed.

    Returns:
        One dict per row: feature name -> value.
    """
    if isinstance(service, str):
        service = feature_service(store, service)
    names = list(names) if names is not None else feature_names(store, service.name)
    entity_rows = [dict(row) for row in rows]
    response = store.get_online_features(features=service, entity_rows=entity_rows).to_dict()
    return [{name: response[name][i] for name in names} for i in range(len(rows))]


def materialize(store: FeatureStore, end: datetime, start: datetime | None = None) -> None:
    """Load the latest state per entity in ``[start, end]`` into Redis (``feast materialize``).

    Args:
        store: An open feature store.
        end: Upper bound of event times to load (inclusive); usually the data's latest time,
            :func:`feature_engine.offline.pipeline.latest_state_time`.
        start: Lower bound; the epoch by default (state rows never expire).
    """
    store.materialize(start_date=start or _EPOCH, end_date=end)
