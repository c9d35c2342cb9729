"""The as-of offline store against Feast's stock DuckDB store, and the fast materialize write.

A small repository of its own (not the fraud views) holds every case the point-in-time join
has to get right: ttl expiry, several rows at one timestamp broken by created timestamp, an
entity without rows, entity rows before any feature row, extra entity_df columns, two join
keys and ``full_feature_names``. Both stores answer the same entity_df; the rows must match.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from feature_engine.feast_cli import feast_command
from feature_engine.offline.duckdb_store import (
    STORE_CLASS_PATH,
    AsOfDuckDBOfflineStore,
    AsOfRetrievalJob,
    column_to_pylist,
    to_pydict,
)
from feature_repo.services import FEATURE_SERVICE_NAME
from tests.support.edge_cases import FeatureProject, feast_cli

T0 = pd.Timestamp("2026-03-01", tz="UTC")


def _hours(h: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=h)


def _write_sources(folder: Path) -> None:
    """Card states (one key, no ttl), card-at-shop states (two keys, ttl, created ties)."""
    rng = np.random.default_rng(3)
    cards = []
    for card in ("a", "b", "c"):
        for h in sorted(rng.uniform(0, 200, 40)):
            cards.append((card, _hours(round(h, 1)), float(rng.normal()), [int(h), 1]))
    cards.append(("a", _hours(50), 111.0, [5]))  # same timestamp as an earlier "a" row...
    cards.append(("a", _hours(50), 111.0, [5]))  # ...and a full duplicate of it
    card_frame = pd.DataFrame(cards, columns=["card", "ts", "spend", "recent"])
    pq.write_table(pa.Table.from_pandas(card_frame, preserve_index=False), folder / "cards.parquet")

    shops = []
    for card, shop in (("a", "s1"), ("a", "s2"), ("b", "s1")):
        for k, h in enumerate(sorted(rng.uniform(0, 200, 30))):
            at = _hours(round(h))  # whole hours: collisions of event time are common
            shops.append((card, shop, at, at + pd.Timedelta(minutes=k), k, f"v{k}"))
    # Three rows at one event time, told apart by created timestamp only.
    for k, created in enumerate((5, 30, 10)):
        shops.append(("b", "s1", _hours(120), _hours(121 + created), 900 + k, f"tie{k}"))
    shop_frame = pd.DataFrame(shops, columns=["card", "shop", "ts", "created", "visits", "note"])
    pq.write_table(pa.Table.from_pandas(shop_frame, preserve_index=False), folder / "shops.parquet")


def _write_repo(folder: Path, offline_type: str) -> Path:
    repo = folder / f"repo_{offline_type.rsplit('.', 1)[-1].lower()}"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        textwrap.dedent(
            f"""\
            project: asof_check
            provider: local
            registry: {repo / "registry.db"}
            online_store: {{type: sqlite, path: {repo / "online.db"}}}
            offline_store: {{type: {offline_type}}}
            entity_key_serialization_version: 3
            """
        )
    )
    (repo / "views.py").write_text(
        textwrap.dedent(
            f"""\
            from datetime import timedelta
            from feast import Entity, FeatureService, FeatureView, Field, FileSource
            from feast.on_demand_feature_view import on_demand_feature_view
            from feast.types import Array, Float64, Int64, String
            card = Entity(name="card", join_keys=["card"])
            shop = Entity(name="shop", join_keys=["shop"])
            cards = FeatureView(
                name="cards", entities=[card], ttl=timedelta(0),
                schema=[Field(name="spend", dtype=Float64),
                        Field(name="recent", dtype=Array(Int64))],
                source=FileSource(path="{folder / "cards.parquet"}", timestamp_field="ts"),
            )
            visits = FeatureView(
                name="visits", entities=[card, shop], ttl=timedelta(hours=12),
                schema=[Field(name="visits", dtype=Int64), Field(name="note", dtype=String)],
                source=FileSource(path="{folder / "shops.parquet"}", timestamp_field="ts",
                                  created_timestamp_column="created"),
            )
            @on_demand_feature_view(
                sources=[cards, visits],
                schema=[Field(name="spend_x2", dtype=Float64), Field(name="n_recent", dtype=Int64)],
                mode="python",
            )
            def derived(inputs):
                return {{
                    "spend_x2": [None if s is None else 2 * s for s in inputs["spend"]],
                    "n_recent": [0 if r is None else len(r) for r in inputs["recent"]],
                }}
            both = FeatureService(name="both", features=[cards, visits, derived])
            """
        )
    )
    subprocess.run(
        feast_command("apply"),
        cwd=repo,
        check=True,
        capture_output=True,
    )
    return repo


def _entity_df() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    rows = []
    for i in range(300):
        rows.append(
            {
                "card": str(rng.choice(["a", "b", "c", "nobody"])),
                "shop": str(rng.choice(["s1", "s2", "s9"])),
                "event_timestamp": _hours(
                    float(rng.choice([-5.0, 0.0, 50.0, 120.0, 131.0]))
                    if i % 4 == 0
                    else round(float(rng.uniform(-10, 230)), 2)
                ),
                "label": int(rng.integers(0, 2)),  # extra columns pass through
                "weight": float(rng.random()),
            }
        )
    frame = pd.DataFrame(rows)
    frame.loc[len(frame)] = ["b", "s1", _hours(121), 1, 0.5]  # inside the created-tie window
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).dt.round("s")
    return frame


def _retrieve(repo: Path, entity_df: pd.DataFrame, full_names: bool) -> tuple[pd.DataFrame, str]:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    job = store.get_historical_features(
        entity_df=entity_df,
        features=store.get_feature_service("both"),
        full_feature_names=full_names,
    )
    frame = job.to_df()
    frame = frame.sort_values(["card", "shop", "event_timestamp", "weight"]).reset_index(drop=True)
    return frame, type(job).__name__


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.map(lambda v: tuple(v) if isinstance(v, list | np.ndarray) else v)


@pytest.fixture(scope="module")
def two_repos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("asof")
    _write_sources(folder)
    return _write_repo(folder, "duckdb"), _write_repo(folder, STORE_CLASS_PATH)


@pytest.mark.integration
@pytest.mark.parametrize("full_names", [False, True])
def test_as_of_store_matches_feast_stock_store_row_for_row(
    two_repos: tuple[Path, Path], full_names: bool
) -> None:
    stock_repo, asof_repo = two_repos
    entity_df = _entity_df()
    expected, stock_job = _retrieve(stock_repo, entity_df, full_names)
    got, asof_job = _retrieve(asof_repo, entity_df, full_names)
    assert (stock_job, asof_job) == ("IbisRetrievalJob", "AsOfRetrievalJob")
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(entity_df)
    pd.testing.assert_frame_equal(_comparable(got), _comparable(expected), check_dtype=False)

    # The data really holds every case: nulls from no entity and before the first row,
    # ttl expiry on the two-key view, the created-timestamp tie.
    note = "visits__note" if full_names else "note"
    spend = "cards__spend" if full_names else "spend"
    assert got.loc[got["card"] == "nobody", spend].isna().all()
    before = got["event_timestamp"] < T0
    assert before.any() and got.loc[before, spend].isna().all()
    has_card_state = got[spend].notna() & (got["card"] != "nobody")
    assert (has_card_state & got[note].isna()).any()  # card known, shop state expired or absent
    tie = got[
        (got["card"] == "b") & (got["shop"] == "s1") & (got["event_timestamp"] == _hours(121))
    ]
    assert set(tie[note]) == {"tie1"}  # the latest created timestamp wins
    assert {"label", "weight"} <= set(got.columns)
    assert (got["spend_x2" if not full_names else "derived__spend_x2"].dropna() != 0).any()


def test_column_to_pylist_equals_pyarrow() -> None:
    lists = pa.array([[1, 2], None, [], [3]], type=pa.list_(pa.int64()))
    columns = [
        pa.array([1.5, 2.0, float("nan")]),
        pa.array([1, None, 3]),
        pa.array(["x", None, "z"]),
        lists,
        lists.slice(1, 3),
        pa.array([["a", "b"], [], None], type=pa.list_(pa.string())),
        pa.array([[1.0, None], [2.0]], type=pa.list_(pa.float64())),
        pa.array([pd.Timestamp("2026-01-01", tz="UTC")] * 2),
        pa.chunked_array([pa.array([1, 2]), pa.array([3])]),
    ]
    for column in columns:
        got, want = column_to_pylist(column), column.to_pylist()
        assert json.dumps(got, default=str) == json.dumps(want, default=str), column
    table = pa.table({"a": lists}).append_column("a_again", pa.table({"a": lists})["a"])
    assert to_pydict(table) == table.to_pydict()


@pytest.mark.integration
def test_fraud_repo_uses_the_as_of_store(feature_project: FeatureProject) -> None:
    from feature_engine.store import entity_frame, feature_service, open_store

    store = open_store(feature_project.settings)
    assert isinstance(store._get_provider().offline_store, AsOfDuckDBOfflineStore)
    tx = feature_project.tables["transactions"].head(5)
    job = store.get_historical_features(
        entity_df=entity_frame(tx), features=feature_service(store, FEATURE_SERVICE_NAME)
    )
    assert isinstance(job, AsOfRetrievalJob)
    stock = open_store(feature_project.settings, {"type": "duckdb"})
    assert type(stock._get_provider().offline_store).__name__ == "DuckDBOfflineStore"


@pytest.mark.integration
def test_fast_materialize_writes_feast_bytes(
    feature_project: FeatureProject, redis_url: str
) -> None:
    """Redis after `feast materialize` through our engine equals Feast's engine, byte for byte."""
    client = redis.Redis.from_url(redis_url)

    def snapshot() -> dict[bytes, dict[bytes, bytes]]:
        return {key: client.hgetall(key) for key in client.scan_iter(count=1000)}

    window = ("1970-01-01T00:00:00", "2030-01-01T00:00:00")
    client.flushdb()
    feast_cli(feature_project.settings, "materialize", *window)
    ours = snapshot()

    stock_yaml = feature_project.root / "feature_store_stock.yaml"
    repo = feature_project.settings.paths.feature_repo
    text = (repo / "feature_store.yaml").read_text()
    stock_yaml.write_text(text.replace("type: feature_engine.materialize.", "type: local #"))
    client.flushdb()
    env = {**os.environ}
    from fraud_platform.settings import feast_environment

    env.update(feast_environment(feature_project.settings))
    subprocess.run(
        feast_command("-f", str(stock_yaml), "materialize", *window),
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )
    feasts = snapshot()
    assert len(ours) > 20
    assert ours == feasts


def test_materializing_an_older_range_never_replaces_newer_online_state(
    feature_project: FeatureProject, redis_url: str
) -> None:
    """Feast's rule through the fast write: only a newer event time replaces a stored row.

    The older range ends before the tables' last events, so it is read by scanning the tables
    (not from the latest-rows sidecars) and holds older rows for many entities.
    """
    from feature_engine.store import materialize, open_store

    client = redis.Redis.from_url(redis_url)

    def snapshot() -> dict[bytes, dict[bytes, bytes]]:
        return {key: client.hgetall(key) for key in client.scan_iter(count=1000)}

    store = open_store(feature_project.settings)
    whole, older = pd.Timestamp("2030-01-01", tz="UTC"), T0 + pd.Timedelta(days=20)
    client.flushdb()
    materialize(store, end=older.to_pydatetime())
    old_state = snapshot()
    materialize(store, end=whole.to_pydatetime())
    new_state = snapshot()
    assert new_state != old_state  # the later range did move some entities forward
    materialize(store, end=older.to_pydatetime())
    assert snapshot() == new_state  # ... and the older one moved none back

    client.flushdb()
    materialize(store, end=whole.to_pydatetime())
    assert snapshot() == new_state  # the same state, whichever ranges led there


def test_run_commands_raises_error_replies_and_keeps_the_client_usable(redis_url: str) -> None:
    from feature_engine.online.redis_layout import run_commands

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.set(b"plain", b"x")
    replies = run_commands(client, [(b"HSET", b"h", b"f", b"1"), (b"HGET", b"h", b"f")])
    assert replies == [1, b"1"]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        run_commands(client, [(b"HSET", b"plain", b"f", b"1"), (b"HGET", b"h", b"f")])
    # no reply of the failed round trip is left on a pooled connection for the next caller
    assert run_commands(client, [(b"HGET", b"h", b"f"), (b"GET", b"plain")]) == [b"1", b"x"]
    assert client.hget(b"h", b"f") == b"1"
    # a client that is no plain Redis (a cluster) goes through its own pipeline, same replies
    cluster_like = SimpleNamespace(pipeline=client.pipeline)
    assert run_commands(cluster_like, [(b"HSET", b"h", b"g", b"2"), (b"HGET", b"h", b"g")]) == [
        1,
        b"2",
    ]


def _peak_rss_of_retrieval(root: Path, rows_per_card: int) -> int:
    """Peak RSS (bytes) of a child process that joins 2,000 entity rows as of time."""
    script = textwrap.dedent(
        f"""
        import fraud_platform  # first, as in every platform process (faster Feast import)
        import resource, numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
        from pathlib import Path
        from feast import FeatureStore
        root = Path({str(root)!r})
        cards, per_card = 20, {rows_per_card}
        ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
            np.tile(np.arange(per_card) * 60, cards), unit="s")
        states = pa.table({{
            "card": np.repeat([f"c{{i}}" for i in range(cards)], per_card),
            "ts": ts,
            "recent": [list(range(8))] * (cards * per_card),
        }})
        pq.write_table(states, root / "cards.parquet")
        store = FeatureStore(repo_path=str(root / "repo"))
        rng = np.random.default_rng(0)
        entity_df = pd.DataFrame({{
            "card": [f"c{{i}}" for i in rng.integers(0, cards, 2000)],
            "event_timestamp": ts[rng.integers(0, len(ts), 2000)],
        }})
        job = store.get_historical_features(entity_df=entity_df, features=["cards:recent"])
        out = job.to_arrow()
        assert out.num_rows == 2000 and out["recent"].null_count == 0
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    )
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_retrieval_memory_stays_bounded_as_history_grows(tmp_path: Path) -> None:
    """8x the history per card: a pairwise join would need 64x the pairs; memory barely moves."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        f"project: bounded\nprovider: local\nregistry: {repo / 'registry.db'}\n"
        f"online_store: {{type: sqlite, path: {repo / 'online.db'}}}\n"
        f"offline_store: {{type: {STORE_CLASS_PATH}, memory_limit: 256MB}}\n"
        "entity_key_serialization_version: 3\n"
    )
    (repo / "views.py").write_text(
        "from datetime import timedelta\n"
        "from feast import Entity, FeatureView, Field, FileSource\n"
        "from feast.types import Array, Int64\n"
        "card = Entity(name='card', join_keys=['card'])\n"
        "cards = FeatureView(name='cards', entities=[card], ttl=timedelta(0),\n"
        "    schema=[Field(name='recent', dtype=Array(Int64))],\n"
        f"    source=FileSource(path='{tmp_path / 'cards.parquet'}', timestamp_field='ts'))\n"
    )
    pq.write_table(
        pa.table({"card": ["c0"], "ts": [pd.Timestamp("2026-01-01", tz="UTC")], "recent": [[1]]}),
        tmp_path / "cards.parquet",
    )
    subprocess.run(
        feast_command("apply"),
        cwd=repo,
        check=True,
        capture_output=True,
    )
    short = _peak_rss_of_retrieval(tmp_path, 2_000)
    long = _peak_rss_of_retrieval(tmp_path, 16_000)
    # Pairs grow 64x from short to long (2,000 entity rows x rows per card); rows grow 8x.
    assert long < 1.6 * short, (short, long)


def test_ttl_zero_means_no_limit() -> None:
    from feature_engine.offline.duckdb_store import _match_sql, _ViewPlan

    plan = _ViewPlan("x.parquet", (("k", "k"),), "ts", None, (("f", "f"),), None)
    assert "INTERVAL" not in _match_sql([plan], ["k", "event_timestamp"], "event_timestamp")
    with_ttl = _ViewPlan("x.parquet", (("k", "k"),), "ts", None, (("f", "f"),), timedelta(days=1))
    assert "INTERVAL (86400000000) MICROSECOND" in _match_sql(
        [with_ttl], ["k", "event_timestamp"], "event_timestamp"
    )
