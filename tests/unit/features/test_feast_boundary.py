"""Feast's private names live in the adapters that extend Feast, and nowhere else.

Feast's Redis online layout (keys, field hashes, codecs, the client) is used through one
module, feature_engine/online/redis_layout.py. The as-of offline store
(feature_engine/offline/duckdb_store.py) is a subclass of Feast's DuckDB store, the Spark one
(feature_engine/spark/asof_store.py) of Feast's Spark store, and each uses exactly the private
offline helpers listed below; a new private name anywhere fails here, so it is a decision, not an
accident.
"""

from __future__ import annotations

import ast
import tomllib

from fraud_platform.settings import PROJECT_ROOT

PACKAGES = (
    "fraud_platform", "data", "feature_engine", "feature_repo", "training", "serving",
    "monitoring", "simulation", "fraud_cli",
)  # fmt: skip
ADAPTER = PROJECT_ROOT / "feature_engine" / "online" / "redis_layout.py"
OFFLINE_STORE = PROJECT_ROOT / "feature_engine" / "offline" / "duckdb_store.py"
OFFLINE_INTERNALS = {
    "imports feast.infra.offline_stores.duckdb._write_data_source",
    "uses odfv._preprocess_arrow_table",
    "uses odfv._postprocess_arrow_table",
}
SPARK_OFFLINE_STORE = PROJECT_ROOT / "feature_engine" / "spark" / "asof_store.py"
_SPARK = "feast.infra.offline_stores.contrib.spark_offline_store.spark"
SPARK_OFFLINE_INTERNALS = {
    f"imports {_SPARK}._get_entity_df_event_timestamp_range",
    f"imports {_SPARK}._get_entity_schema",
    f"imports {_SPARK}._apply_bfv_transformations",
}
# The online-store internals the layout needs; any of them elsewhere bypasses the adapter.
INTERNAL_ATTRIBUTES = {"_get_provider", "_get_client", "_client", "_mmh3", "_redis_key"}


def _offences(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("feast"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    yield f"imports {node.module}.{alias.name}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = ast.unparse(node.value)
            internal = node.attr in INTERNAL_ATTRIBUTES or node.attr.startswith("_generate_")
            if owner not in {"self", "cls"} and (internal or owner == "odfv"):
                yield f"uses {owner}.{node.attr}"


def test_only_the_layout_adapter_touches_feast_redis_internals() -> None:
    found = {
        f"{path.relative_to(PROJECT_ROOT)}: {offence}"
        for package in PACKAGES
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        if path not in {ADAPTER, OFFLINE_STORE, SPARK_OFFLINE_STORE}
        for offence in _offences(path)
    }
    assert found == set()
    assert list(_offences(ADAPTER))  # the adapter really is where they are
    assert set(_offences(OFFLINE_STORE)) == OFFLINE_INTERNALS
    assert set(_offences(SPARK_OFFLINE_STORE)) == SPARK_OFFLINE_INTERNALS


def test_the_adapter_names_the_pinned_feast_range() -> None:
    from feature_engine.online.redis_layout import FEAST_VERSIONS

    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    feast = [d for d in pyproject["project"]["dependencies"] if d.startswith("feast")]
    assert feast == [f"feast[redis,duckdb,spark]{FEAST_VERSIONS}"]  # spark: FEATURE_PROFILE=spark
    assert FEAST_VERSIONS in ADAPTER.read_text().split('"""')[1]  # and says so in its docstring
