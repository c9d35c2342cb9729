"""Drift reports on disk and in MLflow: the I/O around :mod:`monitoring.drift`.

One check writes one folder ``reports/drift/<utc-timestamp>/``:

- ``report.html``: Evidently's data-drift report (KS for numerical features, the same
  chi-square test of homogeneity as :func:`monitoring.drift.chi2_test` for categorical ones,
  plus the drift of the model's ``probability``);
- ``evidently.json``: the same report as JSON (per-column p-values);
- ``summary.json``: our own verdict (:meth:`monitoring.drift.DriftResult.to_dict`) plus where
  the data came from. This is the file to read programmatically; the exit code of
  ``fraud monitor drift`` follows it.

The same check is logged as an MLflow run (:func:`log_to_mlflow`) and printed as a table
(:func:`print_summary`).

Evidently and MLflow are imported inside the functions: they take seconds to import.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import fraud_platform
from fraud_platform import tracking
from fraud_platform.contracts import PROBABILITY
from monitoring.drift import DriftResult, FeatureKind, chi2_test

if TYPE_CHECKING:
    from fraud_platform.settings import Settings

EXPERIMENT = "fraud_monitoring"
CHI2_STATTEST = "fraud_chi2_contingency"  # our chi-square, registered with Evidently once
REPORT_HTML = "report.html"
EVIDENTLY_JSON = "evidently.json"
SUMMARY_JSON = "summary.json"


@dataclass(frozen=True)
class ReportFiles:
    """Where one drift check was written.

    Attributes:
        folder: ``reports/drift/<utc-timestamp>/``.
        html: Evidently's HTML report.
        evidently_json: Evidently's report as JSON.
        summary: Our ``summary.json``.
        warnings: Problems met while writing (e.g. Evidently failed).
        snapshot_id: The snapshot's id in the Evidently workspace, when one was given.
    """

    folder: Path
    html: Path
    evidently_json: Path
    summary: Path
    warnings: tuple[str, ...] = ()
    snapshot_id: str | None = None

    def existing(self) -> list[Path]:
        """The files that were written (the Evidently ones are missing if it failed)."""
        return [p for p in (self.html, self.evidently_json, self.summary) if p.exists()]


def report_folder(out_dir: Path, now: datetime | None = None) -> Path:
    """A new folder ``<out_dir>/<utc-timestamp>/`` (suffixed if it exists already).

    Args:
        out_dir: Parent folder, ``reports/drift`` by default in the CLI.
        now: The time to name it after; the current UTC time by default.

    Returns:
        The created folder.
    """
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = out_dir / stamp
    n = 1
    while folder.exists():
        n += 1
        folder = out_dir / f"{stamp}-{n}"
    folder.mkdir(parents=True)
    return folder


def _register_chi2_stattest() -> None:
    """Make :func:`monitoring.drift.chi2_test` available to Evidently by name (idempotent)."""
    from evidently.legacy.calculations.stattests.registry import (
        StatTest,
        _registered_stat_tests,
        register_stattest,
    )
    from evidently.legacy.core import ColumnType

    if CHI2_STATTEST in _registered_stat_tests:
        return

    def _impl(
        reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float
    ) -> tuple[float, bool]:
        p_value = chi2_test(reference, current)[1]
        return p_value, p_value < threshold

    register_stattest(
        StatTest(
            name=CHI2_STATTEST,
            display_name="chi-square (homogeneity) p_value",
            allowed_feature_types=[ColumnType.Categorical],
            default_threshold=0.05,
        ),
        default_impl=_impl,
    )


def evidently_snapshot(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, FeatureKind],
    *,
    ks_p_value: float,
    drift_share: float,
) -> Any:
    """Run Evidently's data-drift preset with the same tests and thresholds as our check.

    Args:
        reference: Reference sample.
        current: Current window.
        kinds: Feature name to ``numerical``/``categorical``, in order.
        ks_p_value: Per-column p-value threshold.
        drift_share: Dataset-level share threshold.

    Returns:
        The Evidently snapshot (``save_html``, ``dict``, ``json``).
    """
    fraud_platform.quiet_third_party_warnings()  # Evidently's import-time notices (see there)
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    _register_chi2_stattest()
    features = list(kinds)
    numerical = [n for n, k in kinds.items() if k == "numerical"]
    categorical = [n for n, k in kinds.items() if k == "categorical"]
    with_prediction = PROBABILITY in reference and PROBABILITY in current
    columns = features + ([PROBABILITY] if with_prediction else [])
    definition = DataDefinition(
        numerical_columns=numerical + ([PROBABILITY] if with_prediction else []),
        categorical_columns=categorical,
    )
    metrics: list[Any] = [
        DataDriftPreset(
            columns=features,
            num_method="ks",
            cat_method=CHI2_STATTEST,
            threshold=ks_p_value,
            drift_share=drift_share,
        )
    ]
    if with_prediction:  # the model's output, outside the feature share
        metrics.append(ValueDrift(column=PROBABILITY, method="ks", threshold=ks_p_value))
    report = Report(metrics)
    return report.run(
        current_data=Dataset.from_pandas(_numeric(current, columns), data_definition=definition),
        reference_data=Dataset.from_pandas(
            _numeric(reference, columns), data_definition=definition
        ),
    )


def _numeric(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The tested columns as plain floats (nullable ints and bools confuse Evidently)."""
    return frame[list(columns)].astype(float).reset_index(drop=True)


def write_report(
    result: DriftResult,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, FeatureKind],
    out_dir: Path,
    *,
    sources: dict[str, Any] | None = None,
    now: datetime | None = None,
    workspace: Path | None = None,
    service: str | None = None,
) -> ReportFiles:
    """Write the HTML and JSON reports of one check into a new timestamped folder.

    Args:
        result: Our drift result.
        reference: Reference sample.
        current: Current window.
        kinds: Feature kinds, as used for ``result``.
        out_dir: Parent folder of the timestamped report folders.
        sources: Where the data came from (paths, window), stored in ``summary.json``.
        now: Time of the check; the current UTC time by default.
        workspace: An Evidently workspace to add the snapshot to as well (the drift history
            :mod:`monitoring.workspace` keeps), in ``service``'s project.
        service: The feature service the features come from (the project's name).

    Returns:
        The written files. If Evidently fails, ``summary.json`` is still written and says so
        in its ``warnings``.
    """
    now = now or datetime.now(UTC)
    folder = report_folder(out_dir, now)
    files = ReportFiles(
        folder=folder,
        html=folder / REPORT_HTML,
        evidently_json=folder / EVIDENTLY_JSON,
        summary=folder / SUMMARY_JSON,
    )
    extra_warnings: list[str] = []
    try:
        # Evidently's correlation widgets call numpy's corrcoef on every column pair; a column
        # constant over the window (a flag never set in a small window) divides by a zero
        # deviation and numpy warns "invalid value encountered in divide" on stderr. The cell is
        # NaN in the HTML either way; the warning asks the user for nothing, so it is silenced
        # here, for Evidently's work only (our own verdict above is computed outside this).
        with np.errstate(divide="ignore", invalid="ignore"):
            snapshot = evidently_snapshot(
                reference,
                current,
                kinds,
                ks_p_value=result.ks_p_value,
                drift_share=result.drift_share,
            )
            snapshot.save_html(str(files.html))
            files.evidently_json.write_text(snapshot.json())
    except Exception as exc:  # the HTML is a view; our verdict below stands without it
        extra_warnings.append(f"Evidently report failed: {type(exc).__name__}: {exc}")
        snapshot = None
    snapshot_id = None
    if workspace is not None and snapshot is not None:
        from monitoring.workspace import add_snapshot

        try:
            snapshot_id = add_snapshot(
                workspace, service or "features", snapshot, name=f"drift {now:%Y-%m-%d %H:%M:%S}"
            )
        except Exception as exc:  # the history is a view too; the files above stand
            extra_warnings.append(f"Evidently workspace {workspace}: {type(exc).__name__}: {exc}")
    summary = {
        "checked_at": now.astimezone(UTC).isoformat(),
        **result.to_dict(),
        "sources": sources or {},
    }
    summary["warnings"] = [*summary["warnings"], *extra_warnings]
    files.summary.write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    return replace(files, warnings=tuple(extra_warnings), snapshot_id=snapshot_id)


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf by ``None`` so the JSON is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _metric_name(text: str) -> str:
    """MLflow accepts letters, digits, ``_-./`` and spaces in names."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text)


def log_to_mlflow(
    result: DriftResult,
    files: ReportFiles,
    settings: Settings,
    *,
    experiment: str = EXPERIMENT,
    params: dict[str, Any] | None = None,
) -> str:
    """Log one check as an MLflow run: p-values, share drifted, and the reports as artifacts.

    Metrics: ``p_value.<feature>``, ``statistic.<feature>``, ``drifted.<feature>`` (0/1),
    ``share_drifted``, ``n_drifted``, ``dataset_drift`` (0/1), ``current_rows``,
    ``prediction_drift.p_value`` and, with labels, ``window.pr_auc``/``precision``/``recall``.

    Args:
        result: The drift result.
        files: The written reports (uploaded under ``drift_report/``).
        settings: The tracking store (and, for a local store, the project root whose
            ``mlartifacts`` folder a new experiment gets: :mod:`fraud_platform.tracking`).
        experiment: Experiment name (created if missing).
        params: Extra run parameters (data sources, window).

    Returns:
        The MLflow run id.
    """
    import mlflow

    experiment_id = tracking.experiment_id(settings, experiment)
    metrics: dict[str, float] = {
        "share_drifted": result.share_drifted,
        "n_drifted": float(len(result.drifted_features)),
        "dataset_drift": float(result.dataset_drift),
        "current_rows": float(result.current_rows),
        "reference_rows": float(result.reference_rows),
    }
    for item in result.features:
        name = _metric_name(item.column)
        metrics[f"p_value.{name}"] = item.p_value
        metrics[f"statistic.{name}"] = item.statistic
        metrics[f"drifted.{name}"] = float(item.drifted)
    if result.prediction is not None:
        metrics["prediction_drift.p_value"] = result.prediction.p_value
        metrics["prediction_drift.statistic"] = result.prediction.statistic
    if result.performance is not None:
        perf = result.performance
        for key, value in (
            ("pr_auc", perf.pr_auc),
            ("precision", perf.precision),
            ("recall", perf.recall),
        ):
            if value is not None:
                metrics[f"window.{key}"] = value
        metrics["window.labelled_rows"] = float(perf.labelled_rows)
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    run_params = {
        "ks_p_value": result.ks_p_value,
        "drift_share": result.drift_share,
        "min_rows": result.min_rows,
        **(params or {}),
    }
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"drift-{files.folder.name}"
    ) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in run_params.items()})
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {
                "dataset_drift": str(result.dataset_drift).lower(),
                "drifted_features": ",".join(result.drifted_features)[:5000],
                "report_folder": str(files.folder),
            }
        )
        for path in files.existing():
            mlflow.log_artifact(str(path), artifact_path="drift_report")
        return str(run.info.run_id)


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
