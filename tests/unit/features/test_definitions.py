"""Feast definitions and the store's config come from explicit settings, not the process."""

from __future__ import annotations

import os
from pathlib import Path

from feast import FeatureService, FileSource, OnDemandFeatureView

from feature_repo.definitions import fraud_definitions
from feature_repo.store import FEATURE_SERVICE_NAME, repo_config
from fraud_platform.settings import Settings


def test_definitions_of_two_roots_differ_only_in_where_the_tables_are(tmp_path: Path) -> None:
    before = dict(os.environ)
    one = fraud_definitions(tmp_path / "one" / "data" / "features")
    two = fraud_definitions(tmp_path / "two" / "data" / "features")
    assert dict(os.environ) == before  # nothing read from or written to the environment
    sources = [o for o in one.objects() if isinstance(o, FileSource)]
    assert {Path(s.path).parent for s in sources} == {tmp_path / "one" / "data" / "features"}
    assert {Path(s.path).name for s in sources} == {
        "customer_activity.parquet",
        "merchant_activity.parquet",
        "merchant_label_stats.parquet",
        "customer_profile.parquet",
    }
    names = [getattr(o, "name", None) for o in one.objects()]
    assert names == [getattr(o, "name", None) for o in two.objects()]
    assert len(set(names)) == len(names) == 16
    assert isinstance(one.fraud_scoring_v1, FeatureService)
    assert one.fraud_scoring_v1.name == FEATURE_SERVICE_NAME
    assert isinstance(one.transaction_features, OnDemandFeatureView)


def test_the_feast_cli_objects_are_the_environments_root() -> None:
    from feature_repo import definitions

    expected = Settings().paths.features_dir / "customer_activity.parquet"
    assert definitions.customer_activity_source.path == str(expected)
    assert definitions.fraud_scoring_v1.name == FEATURE_SERVICE_NAME


def test_repo_config_is_filled_from_the_settings_not_the_environment(tmp_path: Path) -> None:
    before = dict(os.environ)
    settings = Settings(project_root=tmp_path, redis_url="redis://:s3cret@cache.example:6380/2")
    config = repo_config(settings)
    assert dict(os.environ) == before
    assert config.registry.path == str(settings.paths.registry)
    assert config.online_store.connection_string == "cache.example:6380,db=2,password=s3cret"
    assert config.repo_path == settings.paths.feature_repo
    assert config.offline_store.type == "feature_repo.offline_store.AsOfDuckDBOfflineStore"
