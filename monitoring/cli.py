"""``fraud monitor``: drift of live traffic against the training reference, and consistency.

``fraud monitor drift`` compares a window of the prediction log with
``models/reference_sample.parquet``, prints a per-feature table, writes
``reports/drift/<utc-timestamp>/`` (Evidently HTML and JSON, our ``summary.json``), logs the run
to MLflow and exits 0 (no dataset drift), 1 (dataset drift) or 2 (bad input).

``fraud monitor consistency`` recomputes the served features offline and compares them.

``fraud monitor simulate`` (simulated traffic through the live API) lives in
:mod:`simulation.cli`; ``fraud_cli`` mounts it beside these two commands.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from fraud_platform.console import fail, warn
from fraud_platform.contracts import LABEL
from fraud_platform.settings import ParamsError, get_settings, load_params
from monitoring.check import (
    EXIT_DRIFT,
    EXIT_NO_DRIFT,
    DriftReportsOption,
    MlflowOption,
    MonitorInputError,
    ReferenceOption,
    WorkspaceOption,
    parse_since,
    read_current,
    read_reference,
    run_check,
)

app = typer.Typer(no_args_is_help=True)


# ------------------------------------------------------------------------------------ commands


@app.command()
def drift(
    reference: ReferenceOption = None,
    current: Annotated[
        Path | None,
        typer.Option(help="Parquet file or prediction-log folder; data/prediction_log."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option("--last", "--window", help="Only the latest N rows (by event time)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only rows with event time at or after this ISO time (UTC).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Labels to join for PR-AUC/precision/recall; data/raw/labels.parquet."),
    ] = None,
    use_labels: Annotated[
        bool, typer.Option("--use-labels/--no-labels", help="Join known labels.")
    ] = True,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Decision threshold for precision/recall; the logged one by default.",
        ),
    ] = None,
    out: DriftReportsOption = None,
    mlflow: MlflowOption = True,
    workspace: WorkspaceOption = True,
) -> None:
    """Compare live traffic with the training reference; exit 0 stable, 1 drift, 2 error."""
    settings = get_settings()
    paths = settings.paths
    reference = reference or paths.models_dir / "reference_sample.parquet"
    current = current or paths.prediction_log_dir
    out = out or paths.reports_dir / "drift"
    try:
        from monitoring.drift import DriftInputError, join_labels, select_window

        ref_frame = read_reference(reference)
        cur_frame = read_current(current)
        try:
            cur_frame = select_window(cur_frame, last=last, since=parse_since(since))
        except DriftInputError as exc:
            raise MonitorInputError(str(exc)) from exc
        if cur_frame.empty:
            raise MonitorInputError(f"current: no rows in the selected window of {current}")
        labels_path = labels or paths.raw_table("labels")
        joined = False
        if use_labels and labels_path.is_file() and "transaction_id" in cur_frame:
            import pandas as pd

            try:
                label_frame = pd.read_parquet(labels_path)
            except Exception as exc:
                raise MonitorInputError(f"cannot read labels {labels_path}: {exc}") from exc
            # Only labels already known now: a chargeback may still be on its way.
            cur_frame = join_labels(cur_frame, label_frame, as_of=datetime.now(UTC))
            joined = LABEL in cur_frame
        elif labels is not None and not labels.is_file():
            raise MonitorInputError(f"labels not found: {labels}")
        sources = {
            "reference": str(reference),
            "current": str(current),
            "last": last,
            "since": since,
            "labels": str(labels_path) if joined else None,
        }
        try:
            monitor = load_params().monitor
        except ParamsError as exc:
            raise MonitorInputError(str(exc)) from exc
        outcome = run_check(
            ref_frame,
            cur_frame,
            settings=settings,
            params=monitor,
            out_dir=out,
            sources=sources,
            log_mlflow=mlflow,
            threshold=threshold,
            workspace=paths.evidently_workspace if workspace else None,
        )
    except MonitorInputError as exc:
        raise fail(str(exc)) from exc
    raise typer.Exit(outcome.exit_code)


@app.command()
def consistency(
    current: Annotated[
        Path | None,
        typer.Option(help="Prediction-log folder (or Parquet file); data/prediction_log."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option("--last", "--window", help="Only the latest N logged predictions."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only predictions with event time at or after this time.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Parent folder of the report folders; reports/consistency.")
    ] = None,
    mlflow: MlflowOption = True,
    workspace: WorkspaceOption = True,
) -> None:
    """Recompute served features offline and compare; exit 0 consistent, 1 skew, 2 error.

    The logged predictions of the window are recomputed as of each transaction's own time
    through get_historical_features on the same feature service, over the raw data plus every
    transaction and label ingested online (a shadow build in a temporary root). A feature whose
    mismatch rate is above monitor.consistency_max_mismatch_rate (params.yaml) fails the check.
    """
    from monitoring.consistency import (
        check_logged,
        log_to_mlflow,
        print_table,
        record_in_workspace,
        write_report,
    )
    from monitoring.drift import DriftInputError, select_window
    from monitoring.report import report_folder

    settings = get_settings()
    paths = settings.paths
    current = current or paths.prediction_log_dir
    out = out or paths.reports_dir / "consistency"
    try:
        params = load_params()
        logged = read_current(current)
        try:
            logged = select_window(logged, last=last, since=parse_since(since))
        except DriftInputError as exc:
            raise MonitorInputError(str(exc)) from exc
        window = {"current": str(current), "last": str(last), "since": str(since)}
        result = check_logged(
            settings,
            logged,
            params.monitor.consistency_max_mismatch_rate,
            window=window,
            progress=typer.echo,
        )
    except (MonitorInputError, ParamsError, ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    folder = report_folder(out)
    files = write_report(result, folder)
    print_table(result, folder, echo=typer.echo)
    if workspace:
        record_in_workspace(result, paths.evidently_workspace)
    if mlflow:
        try:
            run_id = log_to_mlflow(result, files, settings)
            typer.echo(f"MLflow run {run_id} ({settings.tracking_uri})")
        except Exception as exc:  # the reports are on disk; a tracking outage is not skew
            warn(f"could not log to MLflow at {settings.tracking_uri}: {exc}")
    raise typer.Exit(EXIT_DRIFT if result.failing else EXIT_NO_DRIFT)
