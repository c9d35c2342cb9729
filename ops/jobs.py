"""The ops service's jobs: label ingestion, drift, consistency, freshness.

Each job is the same code path as its ``fraud`` command (no second copy): the labels job is
``fraud features ingest-labels``' fold (:mod:`feature_engine.online.labels`) over every label
due by now; the drift job is ``fraud monitor drift``'s :func:`monitoring.check.run_check` over
the latest ``ops.drift_window_rows`` logged predictions; the consistency job is ``fraud monitor
consistency``'s :func:`monitoring.consistency.check_logged` over the latest
``ops.consistency_window_rows``. Drift and consistency also add their Evidently snapshot to
the workspace (``reports/evidently``, one project per feature service): the history an
operator browses in ``evidently ui``. The freshness probe PINGs Redis and measures how long
ago the prediction log moved.

A job returns its figures (a JSON-ready dict) or raises; the scheduler times, retries and
reports it. A window with no logged predictions yet is reported as such (``checked: false``),
not as a failure: an idle platform is not broken.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ops.metrics import OpsMetrics
from ops.scheduler import Job

if TYPE_CHECKING:
    import pandas as pd

    from feature_engine.online.labels import LabelFollower
    from fraud_platform.settings import Params, Settings

JOB_NAMES = ("labels", "drift", "consistency", "freshness")


@dataclass
class OpsJobs:
    """The jobs of one ops process, sharing its settings, parameters and metrics."""

    settings: Settings
    params: Params
    metrics: OpsMetrics
    echo: Any = print
    _follower: LabelFollower | None = field(default=None, init=False)

    @property
    def service(self) -> str:
        """The feature service the API serves by default (drift and consistency watch it)."""
        from feature_repo.services import FEATURE_SERVICE_NAME

        return FEATURE_SERVICE_NAME

    def schedule(self, names: tuple[str, ...] = JOB_NAMES) -> list[Job]:
        """The named jobs with their periods from ``ops.every_seconds``."""
        every = self.params.ops.every_seconds
        run = {
            "labels": self.labels,
            "drift": self.drift,
            "consistency": self.consistency,
            "freshness": self.freshness,
        }
        return [Job(name, float(getattr(every, name)), run[name]) for name in names]

    # ------------------------------------------------------------------------------ labels

    def labels(self) -> dict[str, Any]:
        """Fold every label of the label source due by now that Redis has not counted."""
        if self._follower is None:
            from feature_engine.online.labels import LabelFollower
            from feature_engine.online.redis_layout import RedisLayout
            from feature_engine.online.writer import OnlineStateWriter
            from feature_engine.store import open_store
            from feature_repo.services import STATE_VELOCITY

            writer = OnlineStateWriter(
                RedisLayout(open_store(self.settings)), self.params.features, STATE_VELOCITY
            )
            self._follower = LabelFollower(writer, self.settings.paths)
        figures = self._follower.run()
        self.metrics.labels_applied.inc(figures["applied"])
        self.metrics.label_source_rows.set(figures["source"])
        return figures

    # ------------------------------------------------------------------------------ windows

    def _window(self, rows: int) -> pd.DataFrame | None:
        """The latest ``rows`` logged predictions, or ``None`` while nothing is logged."""
        from monitoring.check import read_current
        from monitoring.drift import select_window

        log_dir = self.settings.paths.prediction_log_dir
        if not log_dir.is_dir() or not any(log_dir.iterdir()):
            return None
        return select_window(read_current(log_dir), last=rows, since=None)

    def drift(self) -> dict[str, Any]:
        """The drift check over the latest window, with its snapshot in the workspace."""
        from monitoring.check import read_reference, run_check

        paths = self.settings.paths
        current = self._window(self.params.ops.drift_window_rows)
        if current is None or current.empty:
            return {"checked": False, "reason": f"nothing logged in {paths.prediction_log_dir}"}
        reference = read_reference(paths.models_dir / "reference_sample.parquet")
        outcome = run_check(
            reference,
            current,
            settings=self.settings,
            params=self.params.monitor,
            out_dir=paths.reports_dir / "drift",
            sources={"current": str(paths.prediction_log_dir), "last": len(current), "by": "ops"},
            log_mlflow=self.params.ops.log_mlflow,
            workspace=paths.evidently_workspace,
        )
        result = outcome.result
        drifted = [f.column for f in result.features if f.drifted]
        share = result.share_drifted
        self.metrics.drift.labels(self.service).set(int(result.dataset_drift))
        self.metrics.drift_share.labels(self.service).set(share)
        self.metrics.drift_rows.labels(self.service).set(len(current))
        return {
            "checked": True,
            "rows": len(current),
            "dataset_drift": bool(result.dataset_drift),
            "drifted": drifted,
            "report": str(outcome.files.folder),
            "snapshot": outcome.files.snapshot_id,
        }

    def consistency(self) -> dict[str, Any]:
        """Served features of the latest window recomputed offline, compared, recorded."""
        from monitoring.consistency import check_logged, record_in_workspace, write_report
        from monitoring.report import report_folder

        paths = self.settings.paths
        logged = self._window(self.params.ops.consistency_window_rows)
        if logged is None or logged.empty:
            return {"checked": False, "reason": f"nothing logged in {paths.prediction_log_dir}"}
        result = check_logged(
            self.settings,
            logged,
            self.params.monitor.consistency_max_mismatch_rate,
            window={"current": str(paths.prediction_log_dir), "last": str(len(logged))},
        )
        folder = report_folder(paths.reports_dir / "consistency")
        write_report(result, folder)
        snapshot = record_in_workspace(result, paths.evidently_workspace, warn=self.echo)
        self.metrics.consistency_failing.labels(self.service).set(int(bool(result.failing)))
        self.metrics.consistency_mismatches.labels(self.service).set(result.total_mismatches)
        return {
            "checked": True,
            "rows": result.rows,
            "mismatches": result.total_mismatches,
            "failing": result.failing,
            "report": str(folder),
            "snapshot": snapshot,
        }

    # ------------------------------------------------------------------------------ freshness

    def freshness(self) -> dict[str, Any]:
        """PING Redis (``fraud_ops_redis_up``) and measure the prediction log's age.

        Raises:
            ConnectionError: When Redis does not answer (the run fails and is retried).
        """
        from fraud_platform.redis_cluster import client_for

        settings = self.settings
        try:
            client = client_for(settings.redis_url, settings.redis_mode)
            client.ping()
        except Exception as exc:
            self.metrics.redis_up.set(0)
            raise ConnectionError(
                f"Redis at {settings.redis_url} (REDIS_URL) does not answer: {exc}"
            ) from exc
        self.metrics.redis_up.set(1)
        figures: dict[str, Any] = {"redis": "up"}
        log_dir = settings.paths.prediction_log_dir
        newest = max((p.stat().st_mtime for p in log_dir.rglob("*") if p.is_file()), default=None)
        if newest is not None:
            age = max(0.0, time.time() - newest)
            self.metrics.prediction_log_age.set(age)
            figures["prediction_log_age_seconds"] = round(age, 1)
        return figures
