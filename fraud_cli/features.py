"""``fraud features``: build the offline tables, ``feast apply``, materialize to Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from feature_repo.services import STATE_VELOCITY
from fraud_platform.console import fail
from fraud_platform.settings import (
    ParamsError,
    feast_environment,
    get_settings,
    load_params,
    local_path,
)

app = typer.Typer(no_args_is_help=True)


@app.command()
def build() -> None:
    """Build the offline feature tables (state per customer and merchant).

    Reads the raw tables (data/raw) plus every transaction and label the API ingested online
    (data/ingested), so the offline tables, training and a rebuilt Redis all see them. DuckDB
    builds them, or Spark with FEATURE_PROFILE=spark (same tables:
    feature_engine/spark/pipeline.py).
    """
    from data.validate import RawDataError, read_raw_tables
    from feature_engine.build import build_profile_features
    from feature_engine.spark.session import SparkStartError

    settings = get_settings()
    paths = settings.paths
    try:
        params = load_params()
        read_raw_tables(paths.raw_dir)  # validates schema, nulls, amounts, coordinates, order
    except (ParamsError, RawDataError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"building offline tables from {paths.raw_dir} ({settings.feature_profile})")
    try:
        result = build_profile_features(
            settings, params.features, STATE_VELOCITY, progress=typer.echo
        )
    except SparkStartError as exc:
        raise fail(str(exc)) from exc
    for name, (path, rows) in result.tables.items():
        typer.echo(f"  {name:<22} {rows:>10,} rows  {path}")
    typer.echo(f"done in {result.seconds:.1f} s")


def _feast(*args: str) -> None:
    """Run the real ``feast`` CLI in feature_repo/ with the environment it reads."""
    from feature_engine.store import run_feast_cli

    settings = get_settings()
    typer.echo(f"$ (cd {settings.paths.feature_repo} && feast {' '.join(args)})")
    completed = run_feast_cli(settings, *args)
    if completed.returncode != 0:
        raise typer.Exit(completed.returncode)


@app.command()
def apply() -> None:
    """Register entities, views and the feature service (runs `feast apply`).

    On the Spark profile with the tables on a local or mounted path, the tables are checked
    here (each a readable Parquet table) and Feast's own source check is skipped: it starts a
    Spark session only to read the same schemas (about 15 s). Tables elsewhere (HDFS, object
    stores) are checked by Feast, through Spark.
    """
    settings = get_settings()
    if settings.feature_profile == "spark":
        from feature_engine.spark.pipeline import check_local_tables

        try:
            checked = check_local_tables(settings.offline_tables_location)
        except FileNotFoundError as exc:
            raise fail(str(exc)) from exc
        if checked:
            _feast("apply", "--skip-source-validation")
            return
    _feast("apply")


@app.command()
def materialize(
    end: Annotated[
        str | None,
        typer.Option(
            help="Load state with event time up to this ISO time (UTC). Default: the latest "
            "event or label time in the offline tables (data time, not wall-clock now)."
        ),
    ] = None,
) -> None:
    """Load the latest state per entity into Redis (runs `feast materialize`).

    When the API ingested events since the offline tables were built, they are rebuilt first
    (raw data plus the ingestion journals), so materialize never loses what the API took in.
    The tables are the profile's (``Settings.offline_table``): on the Spark profile with
    SPARK_TABLES_URI, those under that URI.
    """
    from feature_engine.offline.events import journals_newer_than

    settings = get_settings()
    built = settings.local_offline_table("customer_activity")
    if built is None:
        typer.echo(
            f"note: the offline tables are at {settings.offline_tables_location}, not on a local "
            "path: events ingested online since their build are not checked here"
        )
    elif journals_newer_than(settings.paths.ingested_dir, built):
        typer.echo("events were ingested online since the last build: rebuilding first")
        build()
    _materialize(end)


@app.command("rebuild-online")
def rebuild_online() -> None:
    """Rebuild the exact online state from durable files: raw data plus the ingestion journals.

    Builds the offline tables from data/raw and data/ingested, materializes them to the latest
    event or label time, and restores the idempotency marks of the labels posted online. Use it
    after Redis lost its data (no persistence, a disk lost, a new cluster).
    """
    build()
    _materialize(None)


def _require_redis() -> None:
    """Raise Redis's ``ConnectionError`` when the online store does not answer a PING.

    Checked before ``feast materialize`` starts: the Feast CLI runs in its own process, whose
    traceback the ``fraud`` entry point could not answer. Raised here, the entry point
    (``fraud_cli.main.main``) answers it as every command's lost Redis: ``error: ...``, exit 2.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError

    from fraud_platform.redis_cluster import client_for

    settings = get_settings()
    try:
        client_for(settings.redis_url, settings.redis_mode).ping()
    except RedisConnectionError:
        raise
    except (RedisError, OSError) as exc:  # a cluster client fails before it connects
        raise RedisConnectionError(str(exc)) from exc


def _materialize(end: str | None) -> None:
    from feature_engine.offline.events import materialized_label_ids
    from feature_engine.offline.pipeline import latest_state_time

    if end is None:
        settings = get_settings()
        tables = local_path(settings.offline_tables_location)
        if tables is None:
            raise fail(
                f"SPARK_TABLES_URI: the offline tables at {settings.offline_tables_location} are "
                "not on a local path, so their latest time is not read here: pass --end"
            )
        try:
            end_time = latest_state_time(tables)
        except FileNotFoundError as exc:
            raise fail(str(exc)) from exc
        source = "the latest event or label time in the offline tables"
    else:
        try:
            end_time = datetime.fromisoformat(end)
        except ValueError as exc:
            raise fail(f"--end: not an ISO 8601 time: {end!r}") from exc
        end_time = end_time.replace(tzinfo=UTC) if end_time.tzinfo is None else end_time
        source = "--end"
    end_utc = end_time.astimezone(UTC).replace(tzinfo=None)
    _require_redis()
    typer.echo(f"materializing state as of {end_utc.isoformat()} UTC ({source})")
    # Microseconds kept: Feast's end bound is inclusive and the last row sits exactly there.
    _feast("materialize", "1970-01-01T00:00:00", end_utc.isoformat())
    # Every label the loaded state counts gets its once-mark, raw or posted online: a label
    # posted again (POST /labels) or folded again (ingest-labels) is then not counted twice.
    paths = get_settings().paths
    end_us = int(end_time.timestamp() * 1_000_000)
    folded = materialized_label_ids(paths.raw_dir, paths.ingested_dir, end_us)
    if folded:
        from feature_engine.online.redis_layout import RedisLayout
        from feature_engine.online.writer import OnlineStateWriter
        from feature_engine.store import open_store

        writer = OnlineStateWriter(
            RedisLayout(open_store()), load_params().features, STATE_VELOCITY
        )
        writer.mark_labels_seen(folded)  # (merchant_id, transaction_id) pairs
        typer.echo(f"marked {len(folded):,} labels the loaded state counts as folded (idempotency)")


@app.command()
def declarations() -> None:
    """Print the declared features (feature_repo/velocity.py, derived.py) as Markdown tables.

    The velocity rows first, then the derived features, each with the services that serve it.
    """
    from feature_engine.declarations import derived_markdown_table, markdown_table
    from feature_repo.services import SERVICE_TABLES

    typer.echo(markdown_table(SERVICE_TABLES))
    typer.echo(derived_markdown_table(SERVICE_TABLES), nl=False)


@app.command()
def env() -> None:
    """Print the variables feature_store.yaml reads, for `eval "$(fraud features env)"`."""
    import shlex

    for key, value in feast_environment().items():  # quoted: SPARK_MASTER=local[2] is a glob
        typer.echo(f"export {key}={shlex.quote(value)}")


def _utc(moment: Any) -> Any:
    """An ISO time as UTC: naive means UTC, an offset is converted."""
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


@app.command("ingest-labels")
def ingest_labels(
    since: Annotated[
        str, typer.Option(help="Fold in labels whose label_timestamp is after this ISO time (UTC).")
    ],
    until: Annotated[
        str | None, typer.Option(help="... and at or before this ISO time; now by default.")
    ] = None,
) -> None:
    """Fold late-arriving labels into the merchants' online label buckets in Redis.

    `fraud ops run` does the same on a schedule (its `labels` job): every label due by now.
    """
    import pandas as pd

    from feature_engine.online.labels import arrived_between, fold, read_label_source
    from feature_engine.online.redis_layout import RedisLayout
    from feature_engine.online.writer import OnlineStateWriter
    from feature_engine.store import open_store

    paths = get_settings().paths
    try:
        params = load_params()
        start = _utc(pd.Timestamp(since))
        end = pd.Timestamp.now(tz="UTC") if until is None else _utc(pd.Timestamp(until))
        labels = read_label_source(paths)
    except (ParamsError, ValueError, OSError) as exc:
        raise fail(str(exc)) from exc
    arrived = arrived_between(labels, start, end)
    writer = OnlineStateWriter(RedisLayout(open_store()), params.features, STATE_VELOCITY)
    applied = fold(writer, arrived)
    typer.echo(
        f"folded {applied:,} labels into the online merchant label buckets "
        f"({len(arrived) - applied:,} already counted)"
    )
