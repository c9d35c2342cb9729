"""Online/offline consistency: were the features the API served the features training sees?

Like Chronon's consistency job: take the logged predictions of a window, recompute each
transaction's features *offline*, as of its own time, through ``get_historical_features`` on
the same feature service, and compare feature by feature with what was served. Training/serving
skew (a stale or wrongly materialized online state, a reader bug, an ingestion that never
happened) shows up as a mismatch rate on exactly the feature it touches.

The offline side is a *shadow build*: the raw tables plus every transaction and label ingested
online since the last build (so the state the API folded in is there too), built into a
temporary project root with its own Feast registry. Nothing of the real offline tables, registry
or Redis is touched.

Pure comparison (:func:`compare_features`) and I/O (:func:`recompute_offline`, the report
writers) are apart, so the comparison is unit-tested without a stack; :func:`check_logged` is
the whole check of a window (``fraud monitor consistency``).
"""

from __future__ import annotations

import html
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from feature_engine.state.request import is_unknown
from feature_repo.services import FEATURE_SERVICE_NAME, STATE_VELOCITY
from fraud_platform.contracts import (
    CUSTOMER_ID,
    REQUEST_FIELDS,
    TIMESTAMP,
    TRANSACTION_ID,
)

if TYPE_CHECKING:
    from fraud_platform.settings import Settings

# Counts must agree exactly and sums to the last few bits: the contract of DESIGN.md.
REL_TOLERANCE = 1e-9
ABS_TOLERANCE = 1e-12
EXAMPLES_PER_FEATURE = 5
SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"
PROMETHEUS_FILE = "consistency.prom"
MISMATCH_GAUGE = "fraud_feature_consistency_mismatch_rate"


def values_match(served: Any, offline: Any) -> bool:
    """Whether a served and a recomputed value are the same number under the contract."""
    if is_unknown(served) or is_unknown(offline):
        return is_unknown(served) and is_unknown(offline)
    return math.isclose(float(served), float(offline), rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)


@dataclass(frozen=True)
class FeatureConsistency:
    """One feature's verdict over the window.

    Attributes:
        feature: The feature name.
        compared: Rows where the API served a value.
        mismatches: Of those, rows whose offline value differs.
        unknown: Rows the API served as unknown (null): not compared, counted apart.
        examples: The first few mismatches: transaction id, time, served, offline.
    """

    feature: str
    compared: int
    mismatches: int
    unknown: int
    examples: tuple[dict[str, Any], ...] = ()

    @property
    def mismatch_rate(self) -> float:
        """Mismatches / compared rows (0 when nothing was compared)."""
        return self.mismatches / self.compared if self.compared else 0.0


@dataclass(frozen=True)
class ConsistencyResult:
    """Every feature's verdict, and whether the window passes the threshold."""

    rows: int
    features: tuple[FeatureConsistency, ...]
    max_mismatch_rate: float
    window: dict[str, str] = field(default_factory=dict)

    @property
    def failing(self) -> list[str]:
        """Features whose mismatch rate is above the threshold."""
        return [f.feature for f in self.features if f.mismatch_rate > self.max_mismatch_rate]

    @property
    def total_mismatches(self) -> int:
        """Mismatching values over all features."""
        return sum(f.mismatches for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``summary.json`` of the report)."""
        return {
            "rows": self.rows,
            "max_mismatch_rate": self.max_mismatch_rate,
            "passed": not self.failing,
            "failing_features": self.failing,
            "total_mismatches": self.total_mismatches,
            "window": self.window,
            "features": [
                {
                    "feature": f.feature,
                    "compared": f.compared,
                    "mismatches": f.mismatches,
                    "mismatch_rate": f.mismatch_rate,
                    "unknown": f.unknown,
                    "examples": list(f.examples),
                }
                for f in self.features
            ],
        }


def compare_features(
    served: pd.DataFrame,
    offline: pd.DataFrame,
    features: Sequence[str],
    max_mismatch_rate: float,
    key: str = "transaction_id",
) -> ConsistencyResult:
    """Compare served feature values with their offline recomputation, row by row.

    Args:
        served: Logged predictions: ``key``, ``timestamp`` and one column per feature.
        offline: The recomputed features: ``key`` and one column per feature.
        features: The feature service's features.
        max_mismatch_rate: A feature fails above this rate.
        key: The column joining both frames (unique per row).

    Returns:
        One verdict per feature, in the order given.

    Raises:
        ValueError: If a feature column is missing or rows of ``served`` have no offline row.
    """
    for name, frame in (("served", served), ("offline", offline)):
        missing = [f for f in (key, *features) if f not in frame.columns]
        if missing:
            raise ValueError(f"{name} data lacks columns {missing}")
    joined = served.merge(offline[[key, *features]], on=key, how="left", suffixes=("", "__off"))
    if len(joined) != len(served):
        raise ValueError(f"{key} is not unique in the offline recomputation")
    verdicts = []
    for name in features:
        got, want = joined[name].tolist(), joined[f"{name}__off"].tolist()
        unknown = sum(is_unknown(v) for v in got)
        bad = [
            i
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            if not is_unknown(g) and not values_match(g, w)
        ]
        examples = tuple(
            {
                key: str(joined[key].iloc[i]),
                "timestamp": str(joined["timestamp"].iloc[i]) if "timestamp" in joined else "",
                "served": got[i],
                "offline": None if is_unknown(want[i]) else want[i],
            }
            for i in bad[:EXAMPLES_PER_FEATURE]
        )
        verdicts.append(FeatureConsistency(name, len(got) - unknown, len(bad), unknown, examples))
    return ConsistencyResult(len(served), tuple(verdicts), max_mismatch_rate)


def recompute_offline(
    settings: Settings,
    logged: pd.DataFrame,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Features of logged transactions recomputed offline, as of each one's own time.

    Builds the offline tables from the raw data plus everything ingested online into a
    temporary root, registers them with the real ``feast apply`` there, and asks
    ``get_historical_features`` for the same feature service the API reads.

    Args:
        settings: The project whose raw data, ingested events and Redis address to use.
        logged: Logged predictions with the request fields (``transaction_id, customer_id,
            merchant_id, timestamp, amount, lat, long``).
        progress: Where to report each phase; silent by default.

    Returns:
        ``transaction_id`` plus one column per feature, one row per logged row.

    Raises:
        RuntimeError: If ``feast apply`` fails on the shadow root.
    """
    from feature_engine.build import build_profile_features
    from feature_engine.store import historical_features, open_store, run_feast_cli
    from fraud_platform.settings import load_params

    say = progress or (lambda _message: None)
    params = load_params(settings.paths.params_file)
    with tempfile.TemporaryDirectory(prefix="consistency-") as tmp:
        # The shadow root's own tables, built by the profile's engine (the Spark build on the
        # Spark profile), never the project's: no tables URI carried over.
        shadow = settings.model_copy(update={"project_root": Path(tmp), "spark_tables_uri": ""})
        built = build_profile_features(
            settings,
            params.features,
            STATE_VELOCITY,
            out_dir=Path(shadow.offline_tables_location),
        )
        say(
            f"shadow build: {built.transactions:,} transactions and {built.labels:,} "
            "labels (raw data plus everything ingested online)"
        )
        applied = run_feast_cli(shadow, "apply", capture=True)
        if applied.returncode != 0:
            raise RuntimeError(f"feast apply on the shadow root failed:\n{applied.stderr[-2000:]}")
        store = open_store(shadow)
        say(f"get_historical_features for {len(logged):,} logged predictions")
        offline = historical_features(
            store, logged[list(REQUEST_FIELDS)], FEATURE_SERVICE_NAME, progress=None
        )
    return offline


def check_logged(
    settings: Settings,
    logged: pd.DataFrame,
    max_mismatch_rate: float,
    *,
    window: dict[str, str],
    progress: Callable[[str], None] | None = None,
) -> ConsistencyResult:
    """The whole check of a window of logged predictions: recompute offline, then compare.

    Args:
        settings: The project whose raw data, ingested events and registry to use.
        logged: The prediction log's rows of the window.
        max_mismatch_rate: A feature fails above this rate
            (``monitor.consistency_max_mismatch_rate``).
        window: Where the rows came from (stored with the result); the event-time range is
            added.
        progress: Where to report each phase; silent by default.

    Returns:
        One verdict per feature of the model.

    Raises:
        ValueError: If the rows lack the request fields (an older API's log) or there are none.
    """
    from monitoring.drift import model_features

    missing = [c for c in REQUEST_FIELDS if c not in logged.columns]
    if missing:
        raise ValueError(
            f"{window.get('current', 'the log')}: logged predictions lack the request fields "
            f"{missing} (logged by an older API version?)"
        )
    if logged.empty:
        raise ValueError(
            f"no logged predictions in the selected window of {window.get('current', 'the log')}"
        )
    logged = logged.drop_duplicates([CUSTOMER_ID, TRANSACTION_ID], keep="first")
    if progress:
        progress(f"recomputing {len(logged):,} logged predictions offline ...")
    offline = recompute_offline(settings, logged, progress=progress)
    # A transaction is (card, id): two cards may reuse an id (feature_engine.state.fold).
    logged = logged.assign(_key=logged[CUSTOMER_ID] + "\x1f" + logged[TRANSACTION_ID])
    offline = offline.assign(_key=offline[CUSTOMER_ID] + "\x1f" + offline[TRANSACTION_ID])
    result = compare_features(logged, offline, model_features(), max_mismatch_rate, key="_key")
    span = {"from": str(logged[TIMESTAMP].min()), "to": str(logged[TIMESTAMP].max())}
    return replace(result, window={**window, **span})


def print_table(
    result: ConsistencyResult, folder: Path, echo: Callable[[str], None] = print
) -> None:
    """Print each feature's mismatch rate (with examples) and the verdict."""
    echo(f"{'feature':<28} {'compared':>9} {'mismatches':>10} {'rate':>8} {'unknown':>8}")
    for item in result.features:
        echo(
            f"{item.feature:<28} {item.compared:>9,} {item.mismatches:>10,} "
            f"{item.mismatch_rate:>8.3%} {item.unknown:>8,}"
        )
        for example in item.examples[:2]:
            echo(f"    e.g. {example}")
    verdict = "consistent" if not result.failing else f"SKEW in {', '.join(result.failing)}"
    echo(
        f"{result.rows:,} predictions, {result.total_mismatches:,} mismatching values: {verdict} "
        f"(threshold {result.max_mismatch_rate:.3%}); reports in {folder}"
    )


def write_report(result: ConsistencyResult, folder: Path) -> list[Path]:
    """Write ``summary.json``, an HTML report and a Prometheus text file into ``folder``.

    The Prometheus file is in the text exposition format node_exporter's textfile collector
    reads: one ``fraud_feature_consistency_mismatch_rate{feature=...}`` gauge per feature.

    Returns:
        The written files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    summary = folder / SUMMARY_JSON
    summary.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    prom = folder / PROMETHEUS_FILE
    lines = [
        f"# HELP {MISMATCH_GAUGE} Share of served values unlike their offline recomputation.",
        f"# TYPE {MISMATCH_GAUGE} gauge",
        *(
            f'{MISMATCH_GAUGE}{{feature="{f.feature}"}} {f.mismatch_rate:.12g}'
            for f in result.features
        ),
        "# HELP fraud_feature_consistency_rows Logged predictions compared.",
        "# TYPE fraud_feature_consistency_rows gauge",
        f"fraud_feature_consistency_rows {result.rows}",
    ]
    prom.write_text("\n".join(lines) + "\n")
    report = folder / REPORT_HTML
    report.write_text(_html(result))
    return [summary, report, prom]


def _html(result: ConsistencyResult) -> str:
    verdict = "PASS" if not result.failing else f"FAIL: {', '.join(result.failing)}"
    rows = []
    for f in result.features:
        examples = "<br>".join(html.escape(json.dumps(e, default=str)) for e in f.examples)
        style = ' style="background:#fdd"' if f.feature in result.failing else ""
        rows.append(
            f"<tr{style}><td>{html.escape(f.feature)}</td><td>{f.compared}</td>"
            f"<td>{f.mismatches}</td><td>{f.mismatch_rate:.3%}</td><td>{f.unknown}</td>"
            f"<td><small>{examples}</small></td></tr>"
        )
    window = html.escape(json.dumps(result.window, default=str))
    return (
        "<!doctype html><meta charset='utf-8'><title>Feature consistency</title>"
        "<h1>Online/offline feature consistency</h1>"
        f"<p>{result.rows} logged predictions; threshold {result.max_mismatch_rate:.3%}; "
        f"<b>{html.escape(verdict)}</b></p><p>window: {window}</p>"
        "<table border=1 cellpadding=4><tr><th>feature</th><th>compared</th><th>mismatches</th>"
        "<th>rate</th><th>served unknown</th><th>examples</th></tr>" + "".join(rows) + "</table>"
    )


def log_to_mlflow(result: ConsistencyResult, files: Sequence[Path], settings: Settings) -> str:
    """Log the check as a run of the monitoring experiment; returns the run id."""
    import mlflow

    from fraud_platform import tracking
    from monitoring.report import EXPERIMENT

    experiment_id = tracking.experiment_id(settings, EXPERIMENT)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"consistency-{stamp}") as run:
        mlflow.log_params({"max_mismatch_rate": result.max_mismatch_rate, **result.window})
        metrics = {"consistency.rows": float(result.rows)}
        metrics["consistency.total_mismatches"] = float(result.total_mismatches)
        for f in result.features:
            metrics[f"consistency.mismatch_rate.{f.feature}"] = f.mismatch_rate
            metrics[f"consistency.unknown.{f.feature}"] = float(f.unknown)
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"consistency_passed": str(not result.failing).lower()})
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="consistency_report")
        return str(run.info.run_id)


def record_in_workspace(
    result: ConsistencyResult, workspace: Path, warn: Callable[[str], None] | None = None
) -> str | None:
    """Add the check's snapshot to the Evidently workspace (the project of the feature service).

    Returns:
        The snapshot id, or ``None`` when Evidently failed (reported through ``warn``).
    """
    from monitoring.workspace import add_snapshot, consistency_snapshot

    try:
        snapshot = consistency_snapshot(result)
        now = datetime.now(UTC)
        return add_snapshot(
            workspace, FEATURE_SERVICE_NAME, snapshot, name=f"consistency {now:%Y-%m-%d %H:%M:%S}"
        )
    except Exception as exc:  # the history is a view; the reports on disk stand
        (warn or print)(f"could not add the snapshot to the Evidently workspace {workspace}: {exc}")
        return None
