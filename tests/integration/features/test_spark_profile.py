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
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import FeatureStore

from feature_engine.offline.duckdb_store import STORE_CLASS_PATH
from feature_engine.offline.latest_rows import latest_rows_path, usable_latest_rows
from feature_engine.offline.pipeline import OFFLINE_TABLES, TABLE_JOIN_KEYS, build_features
from feature_engine.spark.asof_store import STORE_CLASS_PATH as SPARK_STORE_CLASS_PATH
from feature_engine.spark.asof_store import AsOfSparkOfflineStore, AsOfSparkRetrievalJob
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


# The as-of join's own edge cases, on the small repository of test_offline_store.py (two join
# keys, ttl, created-timestamp ties, no match, rows before any state, extra entity columns,
# full_feature_names): the Spark as-of store, Feast's Spark store and the DuckDB as-of store
# answer the same entity_df with the same rows.
def _small_objects(folder: Path, spark: bool) -> list[Any]:
    """The small repository's Feast objects; one text, with FileSources or SparkSources."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.on_demand_feature_view import on_demand_feature_view
    from feast.types import Array, Float64, Int64, String

    def source(name: str, timestamp: str, created: str = "") -> FileSource | SparkSource:
        path = f"{folder}/{name}.parquet"
        if spark:
            return SparkSource(
                name=name,
                path=path,
                file_format="parquet",
                timestamp_field=timestamp,
                created_timestamp_column=created,
            )
        return FileSource(
            name=name, path=path, timestamp_field=timestamp, created_timestamp_column=created
        )

    card = Entity(name="card", join_keys=["card"])
    shop = Entity(name="shop", join_keys=["shop"])
    cards = FeatureView(
        name="cards",
        entities=[card],
        ttl=timedelta(0),
        schema=[Field(name="spend", dtype=Float64), Field(name="recent", dtype=Array(Int64))],
        source=source("cards", "ts"),
    )
    visits = FeatureView(
        name="visits",
        entities=[card, shop],
        ttl=timedelta(hours=12),
        schema=[Field(name="visits", dtype=Int64), Field(name="note", dtype=String)],
        source=source("shops", "ts", "created"),
    )

    @on_demand_feature_view(
        sources=[cards, visits],
        schema=[Field(name="spend_x2", dtype=Float64), Field(name="n_recent", dtype=Int64)],
        mode="python",
    )
    def derived(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {
            "spend_x2": [None if s is None else 2 * s for s in inputs["spend"]],
            "n_recent": [0 if r is None else len(r) for r in inputs["recent"]],
        }

    both = FeatureService(name="both", features=[cards, visits, derived])
    return [card, shop, cards, visits, derived, both]


def _small_store(folder: Path, name: str, offline_store: dict[str, object]) -> FeatureStore:
    """A FeatureStore on the small repository, its objects applied in process (no CLI)."""
    from feast.repo_config import RepoConfig

    repo = folder / name
    repo.mkdir()
    config = RepoConfig(
        project="asof_spark_check",
        provider="local",
        registry=str(repo / "registry.db"),
        online_store={"type": "sqlite", "path": str(repo / "online.db")},
        offline_store=offline_store,
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config, repo_path=str(repo))
    store.apply(_small_objects(folder, spark=offline_store["type"] != STORE_CLASS_PATH))
    return store


def _small_rows(store: FeatureStore, entity_df: pd.DataFrame, full_names: bool) -> pd.DataFrame:
    """Retrieved rows, as returned (their ``order`` column numbers the entity rows)."""
    frame = store.get_historical_features(
        entity_df=entity_df.copy(),
        features=store.get_feature_service("both"),
        full_feature_names=full_names,
    ).to_df()
    stamps = frame["event_timestamp"]
    if stamps.dt.tz is None:  # Spark's toPandas gives naive times in the session zone (UTC)
        frame["event_timestamp"] = stamps.dt.tz_localize("UTC")
    return frame.map(lambda v: tuple(v) if isinstance(v, list | np.ndarray) else v).astype(object)


def _by_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("order").reset_index(drop=True)


@pytest.fixture(scope="module")
def small_stores(
    tmp_path_factory: pytest.TempPathFactory, spark: object
) -> dict[str, FeatureStore]:
    from tests.integration.features.test_offline_store import _write_sources

    folder = tmp_path_factory.mktemp("small_asof")
    _write_sources(folder)
    # Full duplicates of (card, ts): Feast's Spark join returns one entity row per duplicate
    # (its final join multiplies them), the as-of stores one row; keep one of each.
    cards = pd.read_parquet(folder / "cards.parquet").drop_duplicates(["card", "ts"], keep="last")
    cards.to_parquet(
        folder / "cards.parquet",
        index=False,
        coerce_timestamps="us",
        allow_truncated_timestamps=True,
    )
    # Spark reads microsecond timestamps only (pandas writes nanoseconds); all stores read these.
    shops = pq.read_table(folder / "shops.parquet")
    pq.write_table(
        shops, folder / "shops.parquet", coerce_timestamps="us", allow_truncated_timestamps=True
    )
    spark_conf = repo_config(Settings(feature_profile="spark", redis_url=NO_REDIS)).offline_store
    conf = dict(spark_conf.spark_conf or {})
    return {
        "asof": _small_store(folder, "asof", {"type": SPARK_STORE_CLASS_PATH, "spark_conf": conf}),
        "stock": _small_store(folder, "stock", {"type": "spark", "spark_conf": conf}),
        "duckdb": _small_store(folder, "duckdb", {"type": STORE_CLASS_PATH}),
    }


@pytest.mark.parametrize("full_names", [False, True])
def test_spark_as_of_store_matches_feasts_spark_store_and_duckdb_on_edge_cases(
    small_stores: dict[str, FeatureStore], full_names: bool
) -> None:
    from tests.integration.features.test_offline_store import T0, _entity_df, _hours

    # Shuffled: the entity rows' order is not the keys' order; the as-of store keeps it.
    entity_df = _entity_df().sample(frac=1.0, random_state=5).reset_index(drop=True)
    entity_df["order"] = range(len(entity_df))
    offline_store = small_stores["asof"]._get_provider().offline_store
    assert isinstance(offline_store, AsOfSparkOfflineStore)
    got = _small_rows(small_stores["asof"], entity_df, full_names)
    assert got["order"].tolist() == list(range(len(entity_df)))
    stock = _by_order(_small_rows(small_stores["stock"], entity_df, full_names))
    duck = _by_order(_small_rows(small_stores["duckdb"], entity_df, full_names))
    assert len(got) == len(entity_df)
    assert list(got.columns) == list(stock.columns) == list(duck.columns)
    pd.testing.assert_frame_equal(got, stock, check_dtype=False)
    pd.testing.assert_frame_equal(got, duck, check_dtype=False)
    # Every case is in the data: no entity, before the first row, ttl expiry, the tie.
    note = "visits__note" if full_names else "note"
    spend = "cards__spend" if full_names else "spend"
    assert got.loc[got["card"] == "nobody", spend].isna().all()
    before = got["event_timestamp"] < T0
    assert before.any() and got.loc[before, spend].isna().all()
    assert (got[spend].notna() & (got["card"] != "nobody") & got[note].isna()).any()
    tie = got[
        (got["card"] == "b") & (got["shop"] == "s1") & (got["event_timestamp"] == _hours(121))
    ]
    assert set(tie[note]) == {"tie1"}  # the latest created timestamp wins


@pytest.mark.parametrize("full_names", [False, True])
def test_the_one_query_spark_frame_equals_the_arrow_result_assembled_on_the_driver(
    small_stores: dict[str, FeatureStore], full_names: bool
) -> None:
    from tests.integration.features.test_offline_store import _entity_df

    # to_spark_df is the join in one Spark query (sorted); to_arrow runs the narrow match and
    # the fetch in Spark and joins them on the driver. Same rows, same order, same values.
    entity_df = _entity_df().sample(frac=1.0, random_state=7).reset_index(drop=True)
    store = small_stores["asof"]
    job = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service("both"),
        full_feature_names=full_names,
    )  # fmt: skip
    assert isinstance(job, AsOfSparkRetrievalJob)
    one_query = job.to_spark_df().toArrow()
    assembled = job.to_arrow()
    assert one_query.num_rows == assembled.num_rows == len(entity_df)
    assert set(one_query.column_names) < set(assembled.column_names)  # + the on-demand outputs
    assembled = assembled.select(one_query.column_names)
    assert [f.type for f in assembled.schema] == [f.type for f in one_query.schema]
    assert assembled.to_pylist() == one_query.to_pylist()
    spend = "cards__spend" if full_names else "spend"
    assert 0 < assembled[spend].null_count < len(entity_df)  # matches and misses both there


def test_a_retrieval_outgrowing_the_drivers_result_size_is_an_error_naming_the_setting(
    spark: Any,
    spark_project: Settings,
    tables: dict[str, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import fraud_cli.main as cli

    # spark.driver.maxResultSize lowered in the running driver (read per job): the real
    # failure, cheaply, on the edge-case rows.
    conf = spark.sparkContext._jsc.sc().conf()
    before = conf.get("spark.driver.maxResultSize", "1g")
    conf.set("spark.driver.maxResultSize", "1k")
    entity_rows = requests_frame(_requests_for(tables["transactions"]))
    try:
        # Raised by whichever job outgrows it first (Feast's schema read of a source re-raises
        # it as "Unable to find table", the Py4J error as its context).
        with pytest.raises(Exception) as raised:  # Py4J's or Feast's
            historical_features(open_store(spark_project), entity_rows, "fraud_scoring_v1", None)
    finally:
        conf.set("spark.driver.maxResultSize", before)
    seen: BaseException | None = raised.value
    texts = []
    while seen is not None:
        texts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    assert any("is bigger than spark.driver.maxResultSize" in text for text in texts)

    # At the CLI's edge (`fraud train run` retrieving): `error: ...`, exit 2, no traceback.
    def retrieve() -> None:
        raise raised.value

    monkeypatch.setattr(cli, "app", retrieve)
    monkeypatch.setattr("sys.argv", ["fraud", "train", "run"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Spark: Total size of serialized results"), err
    assert "raise SPARK_DRIVER_MAX_RESULT_SIZE=" in err and "SPARK_DRIVER_MEMORY=" in err
    assert "Traceback" not in err and "py4j" not in err.lower()


def _table_rows(location: Path) -> dict[str, pd.DataFrame]:
    return {name: _sorted_rows(location / f"{name}.parquet", name) for name in OFFLINE_TABLES}


def test_a_spark_build_that_fails_half_way_leaves_the_previous_tables_readable(
    spark_project: Settings, tmp_path: Path
) -> None:
    from feature_engine.spark.pipeline import build_features_spark

    location = tmp_path / "features"
    shutil.copytree(spark_project.offline_tables_location, location)
    before = _table_rows(location)
    done: list[str] = []

    def fail_on_the_last_table(message: str) -> None:
        done.append(message)
        if len(done) == len(OFFLINE_TABLES):  # every table staged, none switched in yet
            raise RuntimeError("the build stops here")

    with pytest.raises(RuntimeError, match="the build stops here"):
        build_features_spark(
            spark_project,
            FEATURES,
            STATE_VELOCITY,
            progress=fail_on_the_last_table,
            location=str(location),
        )
    assert len(done) == len(OFFLINE_TABLES)
    after = _table_rows(location)
    for name in OFFLINE_TABLES:
        pd.testing.assert_frame_equal(after[name], before[name], check_exact=True)
    assert sorted(p.name for p in location.iterdir()) == sorted(
        [f"{name}.parquet" for name in OFFLINE_TABLES]
        + [f"{name}.latest.parquet" for name in OFFLINE_TABLES]
    )  # the staged tables and their staged sidecars are gone
    for name in OFFLINE_TABLES:  # the previous sidecars still answer for the previous tables
        assert _usable_sidecar(location / f"{name}.parquet", name) is not None


def _usable_sidecar(table: Path, name: str) -> str | None:
    from datetime import UTC, datetime

    columns = [TABLE_JOIN_KEYS[name], EVENT_TIMESTAMP]
    end = datetime(2100, 1, 1, tzinfo=UTC)
    return usable_latest_rows(
        str(table), [TABLE_JOIN_KEYS[name]], EVENT_TIMESTAMP, None, columns, end
    )


@pytest.mark.parametrize("name", OFFLINE_TABLES)
def test_spark_build_writes_the_latest_rows_sidecar_duckdb_writes(
    duckdb_project: Settings, spark_project: Settings, name: str
) -> None:
    # What `feast materialize` reads on the Spark profile: beside the folder of part files,
    # the same latest row per entity as the DuckDB build's sidecar, stamped usable for it.
    duck_table = duckdb_project.paths.feature_table(name)
    spark_table = spark_project.paths.feature_table(name)
    sidecar = _usable_sidecar(spark_table, name)
    assert sidecar == str(latest_rows_path(spark_table))
    assert _usable_sidecar(duck_table, name) is not None
    duck, spark_rows = (
        _sorted_rows(latest_rows_path(table), name) for table in (duck_table, spark_table)
    )
    assert len(spark_rows) == spark_rows[TABLE_JOIN_KEYS[name]].nunique() > 0
    pd.testing.assert_frame_equal(spark_rows, duck, check_exact=True)
    # A part file rewritten: the sidecar no longer matches the folder, materialize scans.
    part = sorted(spark_table.glob("part-*.parquet"))[0]
    copy = spark_table.parent / f"changed-{name}.parquet"
    shutil.copytree(spark_table, copy)
    shutil.copy(latest_rows_path(spark_table), latest_rows_path(copy))
    assert _usable_sidecar(copy, name) is not None  # a copy of the bytes: still usable
    pq.write_table(pq.read_table(part).slice(1), copy / part.name)
    assert _usable_sidecar(copy, name) is None
    shutil.rmtree(copy)
    latest_rows_path(copy).unlink()


def test_switching_a_table_in_replaces_the_previous_one(spark: Any, tmp_path: Path) -> None:
    from feature_engine.spark.pipeline import _switch

    old, new = tmp_path / "t.parquet", tmp_path / "t.parquet.building-x"
    for folder, values in ((old, [1, 2]), (new, [3])):
        folder.mkdir()
        pq.write_table(pa.table({"v": values}), folder / "part-0.parquet")
    _switch(spark, str(new), str(old), str(tmp_path / "t.parquet.previous-x"))
    assert pq.read_table(old).column("v").to_pylist() == [3]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
