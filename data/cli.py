"""``fraud data``: generate synthetic transactions or import a real CSV into ``data/raw/``.

Bad input (a malformed CSV, a bad ``params.yaml``, a missing file) ends with ``error: ...``
on stderr and exit code 2, never a traceback; nothing already in ``data/raw/`` is touched.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


def _default_raw_dir() -> Path:
    from fraud_platform.settings import get_settings

    return get_settings().paths.raw_dir


@contextmanager
def _user_errors() -> Iterator[None]:
    """The errors a user can fix: ``error: <message>`` and exit code 2 (fraud_platform.console)."""
    from data.validate import RawDataError
    from fraud_platform.console import user_errors
    from fraud_platform.settings import ParamsError

    with user_errors(RawDataError, ParamsError, OSError, ValueError):
        yield


def _progress(started: float) -> Callable[[str], None]:
    def report(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    return report


def _summary(tables: dict[str, pd.DataFrame], out: Path, seconds: float) -> str:
    labels = tables["labels"]
    return (
        f"wrote {len(tables['transactions']):,} transactions "
        f"({labels['is_fraud'].mean():.2%} fraud, {len(tables['customers']):,} customers, "
        f"{len(tables['merchants']):,} merchants) to {out} in {seconds:.1f}s"
    )


@app.command()
def generate(
    n_customers: Annotated[
        int | None,
        typer.Option(min=1, help="Number of customers; overrides generate.n_customers."),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(min=1, help="Length of the period in days; overrides generate.days."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed; overrides the seed of params.yaml.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the raw Parquet tables (default: data/raw).")
    ] = None,
    params_file: Annotated[
        Path | None, typer.Option(help="Parameters file (default: the project params.yaml).")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="Data profile of params.yaml's `profiles` (e.g. long_history: ~1,000 cards "
            "x 18 months, like the public Kaggle sets); the `generate` section by default."
        ),
    ] = None,
) -> None:
    """Generate synthetic transactions, labels, customers and merchants (params.yaml)."""
    from data.generate import generate as generate_tables
    from data.generate import write_tables
    from fraud_platform.settings import load_params

    started = time.perf_counter()
    report = _progress(started)
    with _user_errors():
        params = load_params(params_file)
        out = out or _default_raw_dir()
        tables = generate_tables(
            params.generate_profile(profile),
            params.seed if seed is None else seed,
            n_customers=n_customers,
            days=days,
            progress=report,
        )
        report(f"writing Parquet tables to {out}")
        write_tables(tables, out)
    typer.echo(_summary(tables, out, time.perf_counter() - started))


@app.command("import")
def import_(
    csv_path: Annotated[Path, typer.Argument(help="The CSV to import (Kaggle schema by default).")],
    mapping: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON file: our field name -> the CSV's column name."),
    ] = None,
    chargeback_delay_days: Annotated[
        float | None,
        typer.Option(
            help="Days until a label is known, for data without label times; "
            "overrides import.chargeback_delay_days."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the raw Parquet tables (default: data/raw).")
    ] = None,
) -> None:
    """Import a real transactions CSV into the raw tables; nothing is written if it is bad."""
    from data.generate import write_tables
    from data.importer import import_csv
    from fraud_platform.settings import load_params

    started = time.perf_counter()
    with _user_errors():
        if chargeback_delay_days is None:
            chargeback_delay_days = load_params().import_.chargeback_delay_days
        out = out or _default_raw_dir()
        tables = import_csv(csv_path, mapping, chargeback_delay_days=chargeback_delay_days)
        write_tables(tables, out)
    typer.echo(_summary(tables, out, time.perf_counter() - started))
