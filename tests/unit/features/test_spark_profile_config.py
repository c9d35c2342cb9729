"""FEATURE_PROFILE selects the offline side: Feast's configuration, the source type, the CLI's.

No Spark session here: these check the wiring only (tests/integration/features/
test_spark_profile.py runs the Spark profile end to end).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from feature_engine.store import repo_config
from feature_repo.definitions import batch_source, fraud_definitions
from fraud_platform.settings import PROJECT_ROOT, FeatureProfile, Settings, feast_environment

NO_REDIS = "redis://127.0.0.1:1/0"


def test_the_default_profile_is_duckdb_and_unchanged() -> None:
    settings = Settings(redis_url=NO_REDIS)
    assert settings.feature_profile == "duckdb"
    config = repo_config(settings)
    assert config.offline_store.type == "feature_engine.offline.duckdb_store.AsOfDuckDBOfflineStore"
    assert feast_environment(settings)["FEAST_FS_YAML_FILE_PATH"].endswith(
        "feature_repo/feature_store.yaml"
    )


def test_feature_profile_spark_selects_the_spark_as_of_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEATURE_PROFILE", "spark")
    monkeypatch.setenv("SPARK_MASTER", "spark://head:7077")
    settings = Settings(redis_url=NO_REDIS)
    assert settings.feature_profile == "spark"
    config = repo_config(settings)
    assert config.offline_store.type == "feature_engine.spark.asof_store.AsOfSparkOfflineStore"
    conf = config.offline_store.spark_conf
    assert conf["spark.master"] == "spark://head:7077"
    assert conf["spark.sql.session.timeZone"] == "UTC"  # Feast compares naive UTC strings
    assert conf["spark.sql.shuffle.partitions"] == "2"
    env = feast_environment(settings)
    assert env["FEATURE_PROFILE"] == "spark"  # `feast apply` builds SparkSources
    assert env["FEAST_FS_YAML_FILE_PATH"].endswith("feature_repo/feature_store.spark.yaml")
    assert Settings(redis_url=NO_REDIS, feature_profile="spark").spark_master == "spark://head:7077"


def test_an_unknown_profile_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURE_PROFILE", "polars")
    with pytest.raises(ValueError, match="feature_profile"):
        Settings(redis_url=NO_REDIS)


def test_the_two_feast_files_differ_only_in_the_offline_store() -> None:
    repo = PROJECT_ROOT / "feature_repo"
    duckdb_file = yaml.safe_load((repo / "feature_store.yaml").read_text())
    spark_file = yaml.safe_load((repo / "feature_store.spark.yaml").read_text())
    assert duckdb_file.pop("offline_store") != spark_file.pop("offline_store")
    assert duckdb_file == spark_file


def test_the_source_type_follows_the_profile_and_nothing_else_does(tmp_path: Path) -> None:
    from feast import FileSource
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    duck = fraud_definitions(tmp_path, profile="duckdb")
    spark = fraud_definitions("s3a://bucket/fraud/features", profile="spark")
    for name in ("customer_activity", "merchant_activity", "merchant_label_stats"):
        assert isinstance(getattr(duck, f"{name}_fv").batch_source, FileSource)
        source = getattr(spark, f"{name}_fv").batch_source
        assert isinstance(source, SparkSource)
        assert source.path == f"s3a://bucket/fraud/features/{name}.parquet"
        assert source.file_format == "parquet"
        # Same views: schema, entities, ttl; only the source differs.
        one, two = getattr(duck, f"{name}_fv"), getattr(spark, f"{name}_fv")
        assert one.schema == two.schema and one.entities == two.entities and one.ttl == two.ttl
    assert isinstance(spark.customer_profile_source, SparkSource)
    assert duck.on_demand.keys() == spark.on_demand.keys()
    local = batch_source("s", tmp_path, "customer_profile", "d", "duckdb")
    assert isinstance(local, FileSource)
    assert local.path == str(tmp_path / "customer_profile.parquet")


def test_spark_tables_uri_only_moves_the_spark_profiles_tables(tmp_path: Path) -> None:
    uri = "s3a://bucket/fraud/features/"
    spark = Settings(
        project_root=tmp_path, redis_url=NO_REDIS, feature_profile="spark", spark_tables_uri=uri
    )
    assert spark.offline_tables_location == "s3a://bucket/fraud/features"
    duck = Settings(project_root=tmp_path, redis_url=NO_REDIS, spark_tables_uri=uri)
    assert duck.offline_tables_location == str(tmp_path / "data" / "features")


@pytest.mark.parametrize(
    ("profile", "uri", "expected"),
    [
        ("duckdb", "", "{root}/data/features/customer_activity.parquet"),
        ("duckdb", "s3a://bucket/f", "{root}/data/features/customer_activity.parquet"),
        ("spark", "", "{root}/data/features/customer_activity.parquet"),
        ("spark", "s3a://bucket/f/", "s3a://bucket/f/customer_activity.parquet"),
        ("spark", "file:///mnt/lake/f", "file:///mnt/lake/f/customer_activity.parquet"),
        ("spark", "/mnt/lake/f", "/mnt/lake/f/customer_activity.parquet"),
    ],
)
def test_one_rule_places_a_table_per_profile_for_the_build_the_source_and_materialize(
    tmp_path: Path, profile: FeatureProfile, uri: str, expected: str
) -> None:
    settings = Settings(
        project_root=tmp_path, redis_url=NO_REDIS, feature_profile=profile, spark_tables_uri=uri
    )
    expected = expected.format(root=tmp_path)
    assert settings.offline_table("customer_activity") == expected
    # The views' batch source reads exactly there.
    views = fraud_definitions(settings.offline_tables_location, profile=profile)
    source = views.customer_activity_fv.batch_source
    assert getattr(source, "path", None) == expected
    # What materialize reads on the driver: the local path, none for an object store.
    local = settings.local_offline_table("customer_activity")
    if expected.startswith("s3a://"):
        assert local is None
    else:
        assert local == Path(expected.removeprefix("file://"))
    # The root's own tables (DuckDB's) stay at data/features whatever the profile.
    assert settings.paths.feature_table("customer_activity") == (
        tmp_path / "data" / "features" / "customer_activity.parquet"
    )


def _folder_table(folder: Path, stamps: list[str]) -> None:
    """A table as Spark writes it: a folder of part files."""
    import pandas as pd

    folder.mkdir(parents=True)
    for i, stamp in enumerate(stamps):
        frame = pd.DataFrame({"event_timestamp": [pd.Timestamp(stamp, tz="UTC")]})
        frame.to_parquet(folder / f"part-{i:05d}.parquet", index=False)


def test_materialize_reads_the_spark_profiles_tables_under_its_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from feature_engine.offline.pipeline import OFFLINE_TABLES, latest_state_time
    from fraud_cli.features import app
    from fraud_platform.settings import get_settings, local_path

    lake = tmp_path / "lake"
    for i, name in enumerate(OFFLINE_TABLES):
        _folder_table(lake / f"{name}.parquet", ["2026-01-01", f"2026-02-0{i + 1}T10:00:00"])
    # The end time: the latest row of the tables under the URI (none under data/features).
    settings = Settings(
        project_root=tmp_path, redis_url=NO_REDIS, feature_profile="spark",
        spark_tables_uri=f"file://{lake}",
    )  # fmt: skip
    assert not settings.paths.features_dir.exists()
    last = len(OFFLINE_TABLES)
    tables = local_path(settings.offline_tables_location)
    assert tables == lake
    assert latest_state_time(tables) == datetime(2026, 2, last, 10, tzinfo=UTC)
    # Tables only Spark reaches: no end time guessed, the setting and the way out named.
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("FEATURE_PROFILE", "spark")
    monkeypatch.setenv("REDIS_URL", NO_REDIS)
    monkeypatch.setenv("SPARK_TABLES_URI", "s3a://bucket/fraud/features")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["materialize"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "not checked here" in result.output  # the ingested-since-build check said so
    assert "error: SPARK_TABLES_URI: the offline tables at s3a://bucket/fraud/features" in (
        result.output
    )
    assert "pass --end" in result.output and "Traceback" not in result.output


def test_events_ingested_since_the_build_are_seen_against_the_profiles_table(
    tmp_path: Path,
) -> None:
    import os

    from feature_engine.offline.events import TRANSACTIONS_JOURNAL, journals_newer_than
    from fraud_platform.journal import SEGMENT_SUFFIX, segment_files

    lake = tmp_path / "lake"
    settings = Settings(
        project_root=tmp_path, redis_url=NO_REDIS, feature_profile="spark",
        spark_tables_uri=str(lake),
    )  # fmt: skip
    ingested = settings.paths.ingested_dir
    journal = ingested / f"{TRANSACTIONS_JOURNAL}-1{SEGMENT_SUFFIX}"
    ingested.mkdir(parents=True)
    journal.write_text("{}\n")
    _folder_table(lake / "customer_activity.parquet", ["2026-01-01"])
    built = settings.local_offline_table("customer_activity")
    assert built is not None and built.is_dir()
    os.utime(journal, (built.stat().st_mtime - 60,) * 2)  # written before the build
    assert segment_files(ingested, TRANSACTIONS_JOURNAL)  # the journal is one the check looks at
    assert not journals_newer_than(ingested, built)
    os.utime(journal, (built.stat().st_mtime + 60,) * 2)  # ingested after the build
    assert journals_newer_than(ingested, built)
