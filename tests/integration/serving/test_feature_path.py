"""The default feature path follows a ``feast apply`` as ``get_online_features`` does.

:class:`serving.features.FeastReader` resolves the feature service once per Feast registry
load. Here, in process, on a copy of the stack's root (its own registry; the one Redis), a
second store applies a changed on-demand view, as ``feast apply`` from another process would.
The reader keeps its resolution while Feast's registry cache is valid, and once the cache
expires it gives the changed values, the same as ``get_online_features`` on the same store.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from feast import FeatureService
from feast.transformation.python_transformation import PythonTransformation

from feature_engine.online.redis_layout import RedisLayout
from feature_engine.store import feature_names, open_store, request_row
from feature_repo.definitions import on_demand_view_name
from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.settings import Settings
from serving.features import FeastReader, OnlineFeaturesReader
from tests.support import stack
from tests.support.live_api import Stack

SHIFT = 100.0
# Appended to the registered function's source: the same function, log_amount moved by SHIFT.
_SHIFTED = f"""

_registered = transaction_features


def transaction_features(inputs):
    out = _registered(inputs)
    out["log_amount"] = [v + {SHIFT} for v in out["log_amount"]]
    return out
"""


@pytest.fixture
def clone_settings(serving_stack: Stack, tmp_path: Path) -> Settings:
    root = stack.clone_root(serving_stack.root, tmp_path / "root")
    return Settings(project_root=root, redis_url=serving_stack.redis_url)


def _rows(serving_stack: Stack) -> list[dict]:
    held_out = pd.read_parquet(serving_stack.root / "slice.parquet").head(20)
    return [
        request_row(r.customer_id, r.merchant_id, r.timestamp.to_pydatetime(), r.amount, r.lat,
                    r.long)
        for r in held_out.itertuples()
    ]  # fmt: skip


def test_feast_reader_picks_up_an_apply_when_the_registry_cache_expires(
    serving_stack: Stack, clone_settings: Settings
) -> None:
    store = open_store(clone_settings)
    reader, stock = FeastReader(store, RedisLayout(store)), OnlineFeaturesReader(store)
    rows = _rows(serving_stack)
    before = reader.read(rows)
    assert before == stock.read(rows)

    applier = open_store(clone_settings)  # another process's `feast apply`
    odfv = applier.get_on_demand_feature_view(on_demand_view_name(FEATURE_SERVICE_NAME))
    registered: Any = odfv.feature_transformation
    source = registered.udf_string + _SHIFTED
    namespace: dict = {}
    exec(source, namespace)
    odfv.feature_transformation = PythonTransformation(
        udf=namespace["transaction_features"], udf_string=source
    )
    applier.apply([odfv])

    # Feast's registry cache is still valid: the resolution in use stays.
    assert reader.read(rows) == before
    # The cache expires (cache_ttl_seconds later): both paths now serve the applied view.
    registry: Any = store.registry
    registry.cached_registry_proto_created -= registry.cached_registry_proto_ttl + timedelta(
        seconds=1
    )
    after = reader.read(rows)
    assert after == stock.read(rows)
    assert [row["log_amount"] for row in after] == pytest.approx(
        [row["log_amount"] + SHIFT for row in before], rel=1e-12
    )
    assert [{k: v for k, v in row.items() if k != "log_amount"} for row in after] == [
        {k: v for k, v in row.items() if k != "log_amount"} for row in before
    ]


def test_a_changed_feature_list_keeps_the_features_the_model_was_built_on(
    serving_stack: Stack, clone_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # A new feature list needs a new service version (and a model trained on it): until the
    # API restarts, it keeps serving the features its model asks for, and says so.
    store = open_store(clone_settings)
    reader = FeastReader(store, RedisLayout(store))
    rows = _rows(serving_stack)
    before = reader.read(rows)
    applier = open_store(clone_settings)
    odfv = applier.get_on_demand_feature_view(on_demand_view_name(FEATURE_SERVICE_NAME))
    applier.apply([FeatureService(name=FEATURE_SERVICE_NAME, features=[odfv[["log_amount"]]])])
    store.refresh_registry()
    assert feature_names(store, FEATURE_SERVICE_NAME) == [
        "log_amount"
    ]  # the registry really changed
    assert reader.read(rows) == before
    assert f"{FEATURE_SERVICE_NAME} changed its features" in caplog.text
