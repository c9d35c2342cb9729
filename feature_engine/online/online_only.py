"""The offline store of a process that reads online only (the API): none.

Feast validates ``feature_store.yaml`` by importing the configured offline store's module, and
the platform's (:mod:`feature_engine.offline.duckdb_store`) brings DuckDB and ibis with it: ~45 MiB
in every API worker, which never reads offline. The API opens its store with this one instead
(``open_store(offline_store=ONLINE_ONLY)``); any offline call then fails with Feast's
``NotImplementedError`` instead of running somewhere it was never meant to.
"""

from __future__ import annotations

from typing import Literal

from feast.infra.offline_stores.offline_store import OfflineStore
from feast.repo_config import FeastConfigBaseModel

CLASS_PATH = "feature_engine.online.online_only.OnlineOnlyOfflineStore"
ONLINE_ONLY = {"type": CLASS_PATH}  # an ``offline_store`` section for open_store


class OnlineOnlyOfflineStoreConfig(FeastConfigBaseModel):
    """``offline_store`` section naming :class:`OnlineOnlyOfflineStore` (Feast appends Config)."""

    type: Literal["feature_engine.online.online_only.OnlineOnlyOfflineStore"] = (
        "feature_engine.online.online_only.OnlineOnlyOfflineStore"
    )


class OnlineOnlyOfflineStore(OfflineStore):
    """Feast's offline store interface with nothing behind it: every method is Feast's base one."""
