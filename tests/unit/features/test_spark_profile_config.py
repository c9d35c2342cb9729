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
from fraud_platform.settings import PROJECT_ROOT, Settings, feast_environment

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
