"""``fraud features``: build the offline tables, ``feast apply``, materialize to Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from fraud_platform.settings import ParamsError, feast_environment, get_settings, load_params

app = typer.Typer(no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@app.command()
def build(
    raw_dir: Annotated[
        Path | None, typer.Option(help="Folder of raw Parquet tables; data/raw by default.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Where to write the offline tables; data/features.")
    ] = None,
) -> None:
    """Build the offline feature tables (state per customer and merchant) with DuckDB."""
    from data.validate import RawDataError, read_raw_tables
    from feature_repo.pipeline import build_offline_tables

    paths = get_settings().paths
    raw_dir = raw_dir or paths.raw_dir
    out_dir = out_dir or paths.features_dir
    try:
        params = load_params()
        read_raw_tables(raw_dir)  # validates schema, nulls, amounts, coordinates, order
    except (ParamsError, RawDataError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"building offline tables from {raw_dir}")
    result = build_offline_tables(
        raw_dir,
        out_dir,
        state_cap=params.features.state_cap,
        merchant_state_cap=params.features.merchant_state_cap,
    )
    for name, (path, rows) in result.tables.items():
        typer.echo(f"  {name:<22} {rows:>10,} rows  {path}")
    typer.echo(f"done in {result.seconds:.1f} s")


def _feast(*args: str) -> None:
    """Run the real ``feast`` CLI in feature_repo/ with the environment it reads."""
    settings = get_settings()
    env = {**os.environ, **feast_environment(settings)}
    feast_bin = Path(sys.executable).with_name("feast")
    command = [str(feast_bin), *args]
    typer.echo(f"$ (cd {settings.paths.feature_repo} && feast {' '.join(args)})")
    completed = subprocess.run(command, cwd=settings.paths.feature_repo, env=env, check=False)
    if completed.returncode != 0:
        raise typer.Exit(completed.returncode)


@app.command()
def apply() -> None:
    """Register entities, views and the feature service (runs `feast apply`)."""
    _feast("apply")


@app.command()
def materialize(
    end: Annotated[
        str | None,
        typer.Option(help="Load state with event time up to this ISO time (UTC); now by default."),
    ] = None,
) -> None:
    """Load the latest state per entity into Redis (runs `feast materialize`)."""
    end_time = datetime.now(UTC) if end is None else datetime.fromisoformat(end)
    if end_time.tzinfo is None:
        end_time = end_time.replace(tzinfo=UTC)
    _feast("materialize", "1970-01-01T00:00:00", end_time.strftime("%Y-%m-%dT%H:%M:%S"))


@app.command()
def env() -> None:
    """Print the variables feature_store.yaml reads, for `eval "$(fraud features env)"`."""
    for key, value in feast_environment().items():
        typer.echo(f"export {key}={value}")


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
    """Fold late-arriving labels into the merchants' online label buckets in Redis."""
    import pandas as pd

    from feature_repo.online_state import OnlineStateWriter
    from feature_repo.store import open_store

    paths = get_settings().paths
    try:
        params = load_params()
        start = _utc(pd.Timestamp(since))
        end = pd.Timestamp.now(tz="UTC") if until is None else _utc(pd.Timestamp(until))
        labels = pd.read_parquet(paths.raw_table("labels"))
        transactions = pd.read_parquet(
            paths.raw_table("transactions"), columns=["transaction_id", "merchant_id"]
        )
    except (ParamsError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    arrived = labels[(labels["label_timestamp"] > start) & (labels["label_timestamp"] <= end)]
    arrived = arrived.merge(transactions, on="transaction_id").sort_values("label_timestamp")
    writer = OnlineStateWriter(
        open_store(), params.features.state_cap, params.features.merchant_state_cap
    )
    applied = writer.ingest_labels(
        [
            (str(r.merchant_id), int(r.label_timestamp.value // 1_000), bool(r.is_fraud))
            for r in arrived.itertuples()
        ]
    )
    typer.echo(f"folded {applied:,} labels into the online merchant label buckets")
