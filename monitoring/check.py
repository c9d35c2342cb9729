"""The drift check, end to end: read the inputs, test them, write and log the reports.

:func:`run_check` is the one way a drift check runs, for ``fraud monitor drift`` and for each
window of the simulation (``simulation/``): the statistics are the pure functions of
:mod:`monitoring.drift`, the files, the MLflow run and the printed table are the thin
:mod:`monitoring.report`. Inputs it cannot use raise :class:`MonitorInputError`, which the
command lines answer with ``error: ...`` and exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fraud_platform.console import warn

if TYPE_CHECKING:
    import pandas as pd

    from fraud_platform.settings import MonitorParams, Settings
    from monitoring.drift import DriftResult
    from monitoring.report import ReportFiles

EXIT_NO_DRIFT, EXIT_DRIFT = 0, 1  # verdicts; bad input exits 2 (fraud_platform.console)

# The options of the commands that run the check (fraud monitor drift, fraud monitor simulate).
ReferenceOption = Annotated[
    Path | None,
    typer.Option(help="Training reference sample; models/reference_sample.parquet."),
]
DriftReportsOption = Annotated[
    Path | None, typer.Option(help="Parent folder of the report folders; reports/drift.")
]
MlflowOption = Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log to MLflow.")]
WorkspaceOption = Annotated[
    bool,
    typer.Option(
        "--workspace/--no-workspace",
        help="Add the snapshot to the Evidently workspace reports/evidently (the history).",
    ),
]


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


def parse_since(since: str | None) -> datetime | None:
    """``--since`` as an aware time (naive means UTC); ``None`` when not given.

    Raises:
        MonitorInputError: If it is not an ISO time.
    """
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
    settings: Settings,
    params: MonitorParams,
    out_dir: Path,
    sources: dict[str, Any],
    log_mlflow: bool = True,
    threshold: float | None = None,
    workspace: Path | None = None,
) -> CheckOutcome:
    """Compute drift, print the table, write the reports and log them to MLflow.

    Args:
        reference: Reference sample.
        current: The current window.
        settings: The tracking store the run is logged to.
        params: ``params.yaml``'s ``monitor`` section (thresholds, minimum window).
        out_dir: Parent of the timestamped report folder.
        sources: Where the data came from, stored with the results.
        log_mlflow: Log the run to MLflow.
        threshold: Decision threshold for precision/recall; the window's own by default.
        workspace: The Evidently workspace the snapshot is added to (the drift history), in
            the project of the served feature service; none by default.

    Returns:
        The outcome.

    Raises:
        MonitorInputError: For frames that cannot be compared.
    """
    from feature_repo.services import FEATURE_SERVICE_NAME
    from monitoring.drift import DriftInputError, compute_drift, feature_kinds
    from monitoring.report import log_to_mlflow, print_summary, write_report

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
        result,
        reference,
        current,
        feature_kinds(f.column for f in result.features),
        out_dir,
        sources=sources,
        workspace=workspace,
        service=FEATURE_SERVICE_NAME,
    )
    for message in files.warnings:
        warn(message)
    print_summary(result, files)
    run_id = None
    if log_mlflow:
        try:
            run_id = log_to_mlflow(result, files, settings, params=sources)
            typer.echo(f"MLflow run {run_id} ({settings.tracking_uri})")
        except Exception as exc:  # the reports are on disk; a tracking outage is not drift
            warn(f"could not log to MLflow at {settings.tracking_uri}: {exc}")
    return CheckOutcome(result=result, files=files, run_id=run_id)
