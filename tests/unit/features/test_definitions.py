"""Feast definitions and the store's config come from explicit settings, not the process."""

from __future__ import annotations

import os
from pathlib import Path

from feast import FeatureService, FileSource, OnDemandFeatureView

from feature_engine.store import repo_config
from feature_repo.definitions import fraud_definitions, on_demand_view_name
from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES
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
    # 3 entities and the request source, 7 sources, 4 views, then per service (v1 and v2) its
    # on-demand view and the service itself.
    assert len(set(names)) == len(names) == 18
    assert set(one.services) == set(SERVICE_TABLES) and FEATURE_SERVICE_NAME in one.services
    for service, view in one.on_demand.items():
        assert isinstance(view, OnDemandFeatureView)
        assert isinstance(one.services[service], FeatureService)
        assert one.services[service].name == service
        # Each service reads its own on-demand view, named after its version.
        projections = one.services[service].feature_view_projections
        assert [p.name for p in projections] == [view.name] == [on_demand_view_name(service)]
    assert on_demand_view_name("fraud_scoring_v2") == "transaction_features_v2"


def test_the_feast_cli_objects_are_the_environments_root() -> None:
    from feature_repo import definitions

    expected = Settings().paths.features_dir / "customer_activity.parquet"
    assert definitions.customer_activity_source.path == str(expected)
    # The services and their views are module attributes, by their Feast names (set from the
    # definitions object, so read them by name).
    assert getattr(definitions, FEATURE_SERVICE_NAME).name == FEATURE_SERVICE_NAME
    assert vars(definitions)["transaction_features_v2"].name == "transaction_features_v2"


def test_repo_config_is_filled_from_the_settings_not_the_environment(tmp_path: Path) -> None:
    before = dict(os.environ)
    settings = Settings(project_root=tmp_path, redis_url="redis://:s3cret@cache.example:6380/2")
    config = repo_config(settings)
    assert dict(os.environ) == before
    assert config.registry.path == str(settings.paths.registry)
    assert config.online_store.connection_string == "cache.example:6380,db=2,password=s3cret"
    assert config.repo_path == settings.paths.feature_repo
    assert config.offline_store.type == "feature_engine.offline.duckdb_store.AsOfDuckDBOfflineStore"
