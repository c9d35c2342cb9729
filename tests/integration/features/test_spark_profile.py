"""The Spark profile (FEATURE_PROFILE=spark) against the DuckDB profile and the reference.

One edge-case data set (tests/support/edge_cases.py: same-second bursts, events exactly at
t - 1h and t - 24h, first transactions, a 40-day gap, a busy merchant, late labels) is built
twice, into two project roots: once by the DuckDB pipeline and registered with FileSources, once
by the Spark state build (PySpark ``local[2]``) and registered with SparkSources. The state
tables must be equal row for row, and ``get_historical_features`` through Feast's Spark offline
store must equal the DuckDB profile's output and the brute-force reference.

Spark needs Java: without it these tests fail (they do not skip); ``.ci/run`` installs it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import FeatureStore

from feature_engine.offline.duckdb_store import STORE_CLASS_PATH
from feature_engine.offline.pipeline import OFFLINE_TABLES, TABLE_JOIN_KEYS, build_features
from feature_engine.spark.asof_store import STORE_CLASS_PATH as SPARK_STORE_CLASS_PATH
from feature_engine.store import feature_names, historical_features, open_store, repo_config
from feature_repo.services import SERVICE_TABLES, STATE_VELOCITY
from fraud_platform.contracts import EVENT_TIMESTAMP
from fraud_platform.settings import FeatureProfile, Settings
from tests.integration.features.test_parity import _probe_requests, _requests_for
from tests.support.edge_cases import FEATURES, edge_case_tables, feast_cli, write_raw
from tests.support.reference import Reference, mismatches, requests_frame

pytestmark = pytest.mark.integration
# Retrieval never contacts the online store; `feast apply` of a Redis store connects to nothing.
NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    """One SparkSession (local[2], the profile's own configuration) for the module."""
    java = shutil.which("java")
    if java is None:
        pytest.fail(
            "java is not on PATH: the Spark profile needs Java 17 "
            "(Debian: apt-get install openjdk-17-jre-headless; .ci/run installs it)"
        )
    version = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0, version.stderr
    from feature_engine.spark.session import spark_session

    session = spark_session(Settings(feature_profile="spark", redis_url=NO_REDIS))
    assert session.conf.get("spark.master") == "local[2]"
    yield session
    session.stop()


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return edge_case_tables()


def _project(root: Path, profile: FeatureProfile, tables: dict[str, pd.DataFrame]) -> Settings:
    settings = Settings(project_root=root, redis_url=NO_REDIS, feature_profile=profile)
    write_raw(tables, settings.paths.raw_dir)
    return settings


@pytest.fixture(scope="module")
def duckdb_project(
    tmp_path_factory: pytest.TempPathFactory, tables: dict[str, pd.DataFrame]
) -> Settings:
    settings = _project(tmp_path_factory.mktemp("duckdb"), "duckdb", tables)
    build_features(settings.paths, FEATURES, STATE_VELOCITY)
    feast_cli(settings, "apply")
    return settings


@pytest.fixture(scope="module")
def spark_project(
    tmp_path_factory: pytest.TempPathFactory, tables: dict[str, pd.DataFrame], spark: object
) -> Settings:
    from feature_engine.spark.pipeline import build_features_spark

    settings = _project(tmp_path_factory.mktemp("spark"), "spark", tables)
    build_features_spark(settings, FEATURES, STATE_VELOCITY)
    feast_cli(settings, "apply")  # FEATURE_PROFILE=spark reaches the CLI: SparkSources
    return settings


def _stock_spark_store(settings: Settings) -> FeatureStore:
    """The Spark profile's store with Feast's own Spark offline store (``type: spark``)."""
    section = repo_config(settings).offline_store
    return open_store(settings, {"type": "spark", "spark_conf": section.spark_conf})


def _plain(kind: pa.DataType) -> pa.DataType:
    """A type without nullability or child names (Spark marks non-null columns differently)."""
    if pa.types.is_list(kind):
        return pa.list_(_plain(kind.value_type))
    return kind


def _sorted_rows(path: Path, name: str) -> pd.DataFrame:
    frame = pq.read_table(path).to_pandas()
    return frame.sort_values([TABLE_JOIN_KEYS[name], EVENT_TIMESTAMP]).reset_index(drop=True)


@pytest.mark.parametrize("name", OFFLINE_TABLES)
def test_spark_state_tables_equal_duckdb_row_for_row(
    duckdb_project: Settings, spark_project: Settings, name: str
) -> None:
    duck_path = duckdb_project.paths.feature_table(name)
    spark_path = spark_project.paths.feature_table(name)
    assert duck_path.is_file()
    assert spark_path.is_dir()  # Spark's folder of part files, the SparkSource's path
    duck_schema, spark_schema = pq.read_schema(duck_path), pq.read_table(spark_path).schema
    assert [(f.name, _plain(f.type)) for f in spark_schema] == [
        (f.name, _plain(f.type)) for f in duck_schema
    ]
    duck, spark_rows = _sorted_rows(duck_path, name), _sorted_rows(spark_path, name)
    assert len(duck) > 0
    # Exactly equal: the same fold (activity) or the same SQL semantics (labels, homes).
    pd.testing.assert_frame_equal(spark_rows, duck, check_exact=True)
    # Keys and times identify a row: no duplicates hide behind the sorted comparison.
    assert not spark_rows.duplicated([TABLE_JOIN_KEYS[name], EVENT_TIMESTAMP]).any()
    # Each part file is ordered by (entity, time), as the DuckDB table is.
    parts = sorted(spark_path.glob("part-*.parquet"))
    assert parts
    for part in parts:
        frame = pq.read_table(part).to_pandas()
        order = frame.sort_values([TABLE_JOIN_KEYS[name], EVENT_TIMESTAMP], kind="stable")
        assert order.index.tolist() == frame.index.tolist(), part.name


def test_the_edge_cases_reach_the_spark_state(spark_project: Settings) -> None:
    customers = _sorted_rows(
        spark_project.paths.feature_table("customer_activity"), "customer_activity"
    )
    merchants = _sorted_rows(
        spark_project.paths.feature_table("merchant_activity"), "merchant_activity"
    )
    # c_cap's 9 transactions within two minutes share one 5-minute tile: one state row that
    # holds all of them (4 of them in one second).
    cap = customers[customers["customer_id"] == "c_cap"]
    assert max(len(ids) for ids in cap["c_txn_ids"]) >= 9
    # The busy merchant: one row per 5-minute tile with events, each holding later events than
    # its stamp (what the on-demand view's `< t` must filter out).
    busy = merchants[merchants["merchant_id"] == "m_busy"]
    stamps_us = busy[EVENT_TIMESTAMP].dt.as_unit("us").astype("int64")
    assert len(busy) <= 4 * 12 and (busy["m_latest_ts_us"] > stamps_us).sum() > 20


def test_the_profile_picks_the_spark_as_of_store_and_spark_sources(
    duckdb_project: Settings, spark_project: Settings
) -> None:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    spark_store, duck_store = open_store(spark_project), open_store(duckdb_project)
    assert spark_store.config.offline_store.type == SPARK_STORE_CLASS_PATH
    assert duck_store.config.offline_store.type == STORE_CLASS_PATH
    for view in ("customer_activity", "merchant_activity", "merchant_label_stats"):
        assert isinstance(spark_store.get_feature_view(view).batch_source, SparkSource)
        assert not isinstance(duck_store.get_feature_view(view).batch_source, SparkSource)


@pytest.mark.parametrize("service", list(SERVICE_TABLES))
def test_spark_historical_features_equal_duckdb_and_the_reference(
    duckdb_project: Settings,
    spark_project: Settings,
    tables: dict[str, pd.DataFrame],
    service: str,
) -> None:
    tx = tables["transactions"]
    requests = _requests_for(tx) + _probe_requests(tx)
    entity_rows = requests_frame(requests)
    spark_store, duck_store = open_store(spark_project), open_store(duckdb_project)
    stock_store = _stock_spark_store(spark_project)
    names = feature_names(spark_store, service)
    assert names == feature_names(duck_store, service)
    got = historical_features(spark_store, entity_rows, service, progress=None)
    want = historical_features(duck_store, entity_rows, service, progress=None)
    stock = historical_features(stock_store, entity_rows, service, progress=None)
    assert len(got) == len(requests)
    # Row for row and bit for bit: the same state rows reach the same on-demand function,
    # through the Spark as-of join, Feast's own Spark join and the DuckDB as-of join.
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    pd.testing.assert_frame_equal(got, stock, check_exact=True)
    reference = Reference(
        tables["transactions"], tables["labels"], tables["customers"], SERVICE_TABLES[service]
    )
    problems = [
        (q, bad)
        for i, q in enumerate(requests)
        if (bad := mismatches(reference.features(q), got.loc[i, names].to_dict()))
    ]
    assert not problems, problems[:5]
    # The edge cases were really exercised: the whole c_cap burst counted within the hour, and
    # c_burst's event exactly 1 h after its same-second burst counts the whole burst.
    cap = got[got["customer_id"] == "c_cap"]
    assert cap["txn_count_1h"].max() == (tx["customer_id"] == "c_cap").sum()
    burst = tx[tx["customer_id"] == "c_burst"].reset_index(drop=True)
    one_hour_later = got[
        (got["customer_id"] == "c_burst") & (got[EVENT_TIMESTAMP] == burst["timestamp"][3])
    ]
    assert (burst["timestamp"][3] - burst["timestamp"][0]) == pd.Timedelta(hours=1)
    # The transaction and the probes at burst + 1 h: [t - 1h, t) holds the burst at t - 1h.
    assert len(one_hour_later) >= 1 and set(one_hour_later["txn_count_1h"]) == {3}
