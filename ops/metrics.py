"""Prometheus metrics of the ops service (``fraud ops run``), on a registry of its own.

Per job (label ``job_name``: ``job`` is Prometheus's own target label): when it last ran and
last succeeded, how long the last run took, whether it succeeded, its period, and counters of
runs and retries. The alert rules (ops/prometheus/rules.yml) read these: a job is stale when
its last success is older than three periods. Beside them, the verdicts the jobs compute:
dataset drift and the consistency check per feature service, Redis reachability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class OpsMetrics:
    """Every metric the ops service exports."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        """Create the metrics on this instance's registry."""
        r = self.registry
        job = ["job_name"]
        self.last_run = Gauge(
            "fraud_ops_job_last_run_timestamp_seconds", "When the job's last run ended (Unix s).",
            job, registry=r,
        )  # fmt: skip
        self.last_success = Gauge(
            "fraud_ops_job_last_success_timestamp_seconds",
            "When the job last succeeded (Unix s); absent until its first success.",
            job, registry=r,
        )  # fmt: skip
        self.duration = Gauge(
            "fraud_ops_job_duration_seconds", "Wall time of the job's last run, retries included.",
            job, registry=r,
        )  # fmt: skip
        self.success = Gauge(
            "fraud_ops_job_success", "1 when the job's last run succeeded, 0 when it failed.",
            job, registry=r,
        )  # fmt: skip
        self.period = Gauge(
            "fraud_ops_job_period_seconds", "The job's schedule (params.yaml ops.every_seconds).",
            job, registry=r,
        )  # fmt: skip
        self.runs = Counter(
            "fraud_ops_job_runs", "Finished runs by result (success, failure).",
            ["job_name", "result"], registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "fraud_ops_job_retries", "Attempts that failed and were tried again.", job, registry=r
        )
        self.redis_up = Gauge(
            "fraud_ops_redis_up", "1 when the online store answered the freshness probe's PING.",
            registry=r,
        )  # fmt: skip
        self.labels_applied = Counter(
            "fraud_ops_labels_applied", "Labels the labels job folded into the online state.",
            registry=r,
        )  # fmt: skip
        self.label_source_rows = Gauge(
            "fraud_ops_label_source_rows", "Labels in the label source at the last labels run.",
            registry=r,
        )  # fmt: skip
        self.prediction_log_age = Gauge(
            "fraud_ops_prediction_log_age_seconds",
            "Seconds since the prediction log last changed (freshness probe).", registry=r,
        )  # fmt: skip
        self.drift = Gauge(
            "fraud_ops_drift_dataset_drift", "1 when the last drift check found dataset drift.",
            ["service"], registry=r,
        )  # fmt: skip
        self.drift_share = Gauge(
            "fraud_ops_drift_share", "Share of the features that drifted in the last check.",
            ["service"], registry=r,
        )  # fmt: skip
        self.drift_rows = Gauge(
            "fraud_ops_drift_window_rows", "Logged predictions in the last drift window.",
            ["service"], registry=r,
        )  # fmt: skip
        self.consistency_failing = Gauge(
            "fraud_ops_consistency_failing",
            "1 when a feature's mismatch rate was above monitor.consistency_max_mismatch_rate.",
            ["service"], registry=r,
        )  # fmt: skip
        self.consistency_mismatches = Gauge(
            "fraud_ops_consistency_mismatches",
            "Mismatching feature values in the last consistency window.", ["service"], registry=r,
        )  # fmt: skip
