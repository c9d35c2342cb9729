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

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fraud_platform.console import fail, warn
from fraud_platform.contracts import LABEL
from fraud_platform.settings import ParamsError, get_settings, load_params

if TYPE_CHECKING:
    import pandas as pd

    from monitoring.drift import DriftResult
    from monitoring.report import ReportFiles

app = typer.Typer(no_args_is_help=True)

EXIT_NO_DRIFT, EXIT_DRIFT = 0, 1  # verdicts; bad input exits 2 (fraud_platform.console)


class MonitorInputError(Exception):
    """Input the check cannot use; the message is shown as is, the exit code is 2."""


# ------------------------------------------------------------------------------------ loading


def read_reference(path: Path) -> pd.DataFrame:
    """The training reference sample.

    Raises:
        MonitorInputError: If the file is missing or unreadable.
    """
    import pandas as pd

    if not path.is_file():
        raise MonitorInputError(f"reference sample not found: {path} (run the training step)")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise MonitorInputError(f"cannot read reference {path}: {exc}") from exc


def read_current(path: Path) -> pd.DataFrame:
    """The current data: one Parquet file, or a prediction-log folder (the API's journal).

    Raises:
        MonitorInputError: If nothing is there or a file cannot be read.
    """
    import pandas as pd

    from fraud_platform.contracts import read_prediction_log

    try:
        if path.is_file():
            return pd.read_parquet(path)
        if path.is_dir():
            frame = read_prediction_log(path)
            if frame.empty:
                raise MonitorInputError(f"no rows in the prediction log {path}")
            return frame
    except MonitorInputError:
        raise
    except Exception as exc:
        raise MonitorInputError(f"cannot read current data {path}: {exc}") from exc
    raise MonitorInputError(f"current data not found: {path}")


def _parse_since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MonitorInputError(f"--since: not an ISO time: {since!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------ checking


@dataclass(frozen=True)
class CheckOutcome:
    """One finished drift check.

    Attributes:
        result: The statistics and the verdict.
        files: The written reports.
        run_id: The MLflow run, when logged.
    """

    result: DriftResult
    files: ReportFiles
    run_id: str | None

    @property
    def exit_code(self) -> int:
        """1 when the dataset drifted, else 0."""
        return EXIT_DRIFT if self.result.dataset_drift else EXIT_NO_DRIFT


def run_check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    out_dir: Path,
    sources: dict[str, Any],
    log_mlflow: bool = True,
    threshold: float | None = None,
) -> CheckOutcome:
    """Compute drift, print the table, write the reports and log them to MLflow.

    Args:
        reference: Reference sample.
        current: The current window.
        out_dir: Parent of the timestamped report folder.
        sources: Where the data came from, stored with the results.
        log_mlflow: Log the run to MLflow (tracking URI from the settings).
        threshold: Decision threshold for precision/recall; the window's own by default.

    Returns:
        The outcome.

    Raises:
        MonitorInputError: For bad params or frames that cannot be compared.
    """
    from monitoring.drift import DriftInputError, compute_drift, feature_kinds, model_features
    from monitoring.report import log_to_mlflow, write_report

    try:
        params = load_params().monitor
    except ParamsError as exc:
        raise MonitorInputError(str(exc)) from exc
    try:
        result = compute_drift(
            reference,
            current,
            ks_p_value=params.ks_p_value,
            drift_share=params.drift_share,
            min_rows=params.min_rows,
            threshold=threshold,
        )
    except DriftInputError as exc:
        raise MonitorInputError(str(exc)) from exc
    for message in result.warnings:
        warn(message)
    files = write_report(
        result, reference, current, feature_kinds(model_features()), out_dir, sources=sources
    )
    for message in files.warnings:
        warn(message)
    print_summary(result, files)
    run_id = None
    if log_mlflow:
        settings = get_settings()
        try:
            run_id = log_to_mlflow(result, files, settings, params=sources)
            typer.echo(f"MLflow run {run_id} ({settings.tracking_uri})")
        except Exception as exc:  # the reports are on disk; a tracking outage is not drift
            warn(f"could not log to MLflow at {settings.tracking_uri}: {exc}")
    return CheckOutcome(result=result, files=files, run_id=run_id)


def print_summary(result: DriftResult, files: ReportFiles) -> None:
    """Print the per-feature table and the verdicts."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=110)
    table = Table(
        title=f"Drift: {result.current_rows:,} current vs {result.reference_rows:,} reference rows"
    )
    table.add_column("feature", no_wrap=True)
    table.add_column("test")
    table.add_column("statistic", justify="right")
    table.add_column("p-value", justify="right")
    table.add_column("drift", justify="center")
    rows = list(result.features)
    if result.prediction is not None:
        rows.append(result.prediction)
    for item in rows:
        name = item.column if item in result.features else f"{item.column} (prediction)"
        table.add_row(
            name,
            item.test,
            f"{item.statistic:.4f}",
            f"{item.p_value:.3g}",
            "[bold red]DRIFT[/]" if item.drifted else "ok",
        )
    console.print(table)
    verdict = "[bold red]DATASET DRIFT[/]" if result.dataset_drift else "[green]no dataset drift[/]"
    console.print(
        f"{verdict}: {len(result.drifted_features)}/{len(result.features)} features drifted "
        f"(share {result.share_drifted:.2f}, threshold {result.drift_share}; "
        f"p < {result.ks_p_value})"
    )
    if result.prediction is not None:
        state = "drifted" if result.prediction.drifted else "stable"
        console.print(f"prediction drift: {state} (KS p = {result.prediction.p_value:.3g})")
    perf = result.performance
    if perf is not None:

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        console.print(
            f"window performance on {perf.labelled_rows} labelled rows ({perf.positives} fraud): "
            f"PR-AUC {fmt(perf.pr_auc)}, precision {fmt(perf.precision)}, "
            f"recall {fmt(perf.recall)} at threshold {perf.threshold:.3f}"
        )
    console.print(f"report: {files.folder}", soft_wrap=True)


# ------------------------------------------------------------------------------------ commands


@app.command()
def drift(
    reference: Annotated[
        Path | None,
        typer.Option(help="Training reference sample; models/reference_sample.parquet."),
    ] = None,
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
    out: Annotated[
        Path | None, typer.Option(help="Parent folder of the report folders; reports/drift.")
    ] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log to MLflow.")] = True,
) -> None:
    """Compare live traffic with the training reference; exit 0 stable, 1 drift, 2 error."""
    paths = get_settings().paths
    reference = reference or paths.models_dir / "reference_sample.parquet"
    current = current or paths.prediction_log_dir
    out = out or paths.reports_dir / "drift"
    try:
        from monitoring.drift import DriftInputError, join_labels, select_window

        ref_frame = read_reference(reference)
        cur_frame = read_current(current)
        try:
            cur_frame = select_window(cur_frame, last=last, since=_parse_since(since))
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
        outcome = run_check(
            ref_frame,
            cur_frame,
            out_dir=out,
            sources=sources,
            log_mlflow=mlflow,
            threshold=threshold,
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
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log to MLflow.")] = True,
) -> None:
    """Recompute served features offline and compare; exit 0 consistent, 1 skew, 2 error.

    The logged predictions of the window are recomputed as of each transaction's own time
    through get_historical_features on the same feature service, over the raw data plus every
    transaction and label ingested online (a shadow build in a temporary root). A feature whose
    mismatch rate is above monitor.consistency_max_mismatch_rate (params.yaml) fails the check.
    """
    from monitoring.consistency import (
        compare_features,
        log_to_mlflow,
        recompute_offline,
        write_report,
    )

    settings = get_settings()
    paths = settings.paths
    current = current or paths.prediction_log_dir
    out = out or paths.reports_dir / "consistency"
    try:
        from monitoring.drift import DriftInputError, model_features, select_window

        params = load_params()
        logged = read_current(current)
        try:
            logged = select_window(logged, last=last, since=_parse_since(since))
        except DriftInputError as exc:
            raise MonitorInputError(str(exc)) from exc
        from data.schema import TRANSACTIONS  # a logged request carries a transaction's fields

        missing = [c for c in TRANSACTIONS.names if c not in logged.columns]
        if missing:
            raise MonitorInputError(
                f"{current}: logged predictions lack the request fields {missing} "
                "(logged by an older API version?)"
            )
        if logged.empty:
            raise MonitorInputError(f"no logged predictions in the selected window of {current}")
        logged = logged.drop_duplicates(["customer_id", "transaction_id"], keep="first")
        features = model_features()
        typer.echo(f"recomputing {len(logged):,} logged predictions offline ...")
        offline = recompute_offline(settings, logged, progress=typer.echo)
        logged = logged.assign(_key=logged["customer_id"] + "\x1f" + logged["transaction_id"])
        offline = offline.assign(_key=offline["customer_id"] + "\x1f" + offline["transaction_id"])
        result = compare_features(
            logged, offline, features, params.monitor.consistency_max_mismatch_rate, key="_key"
        )
    except (MonitorInputError, ParamsError, ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    window = {
        "current": str(current),
        "last": str(last),
        "since": str(since),
        "from": str(logged["timestamp"].min()),
        "to": str(logged["timestamp"].max()),
    }
    result = type(result)(result.rows, result.features, result.max_mismatch_rate, window)
    from monitoring.report import report_folder

    folder = report_folder(out)
    files = write_report(result, folder)
    typer.echo(f"{'feature':<28} {'compared':>9} {'mismatches':>10} {'rate':>8} {'unknown':>8}")
    for item in result.features:
        typer.echo(
            f"{item.feature:<28} {item.compared:>9,} {item.mismatches:>10,} "
            f"{item.mismatch_rate:>8.3%} {item.unknown:>8,}"
        )
        for example in item.examples[:2]:
            typer.echo(f"    e.g. {example}")
    verdict = "consistent" if not result.failing else f"SKEW in {', '.join(result.failing)}"
    typer.echo(
        f"{result.rows:,} predictions, {result.total_mismatches:,} mismatching values: {verdict} "
        f"(threshold {result.max_mismatch_rate:.3%}); reports in {folder}"
    )
    if mlflow:
        try:
            run_id = log_to_mlflow(result, files, settings)
            typer.echo(f"MLflow run {run_id} ({settings.tracking_uri})")
        except Exception as exc:  # the reports are on disk; a tracking outage is not skew
            warn(f"could not log to MLflow at {settings.tracking_uri}: {exc}")
    raise typer.Exit(EXIT_DRIFT if result.failing else EXIT_NO_DRIFT)
