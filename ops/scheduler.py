"""Run jobs on a schedule: each on its own thread, timed, retried, logged and exported.

A job is a name, a period and a function returning a small dict of what it did. Each job has
a thread of its own, so a slow consistency check (a shadow build, tens of seconds) never
delays the label ingestion that keeps ``merchant_fraud_rate_30d`` fresh. A run starts every
``period`` seconds (measured from the start of the previous run; a run longer than its period
starts the next one at once, never two at a time). A failed attempt is logged and tried again
after ``retry_backoff_seconds`` (doubled each time) up to ``retries`` times; a run whose every
attempt failed is reported failed (``fraud_ops_job_success 0``, a ``failure`` line in the run
history), and the job runs again at its next period: nothing is skipped silently.

Every finished run is one JSON line in ``reports/ops/runs.jsonl`` and one log line:
job, start, duration, attempts, result, and the job's own figures or the error.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops.metrics import OpsMetrics

logger = logging.getLogger("fraud.ops")


@dataclass(frozen=True)
class Job:
    """One scheduled job.

    Attributes:
        name: The job's name (the ``job_name`` label of its metrics).
        period: Seconds between the starts of two runs.
        run: Does the work; returns what it did (JSON-ready), raises on failure.
    """

    name: str
    period: float
    run: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class RunReport:
    """One finished run of a job (all attempts)."""

    job: str
    started_at: str
    seconds: float
    attempts: int
    result: str  # "success" or "failure"
    details: dict[str, Any]
    error: str | None = None

    def to_json(self) -> str:
        """One line of the run history."""
        return json.dumps(self.__dict__, default=str, sort_keys=True)


class Scheduler:
    """Runs jobs on their periods until stopped."""

    def __init__(
        self,
        jobs: Sequence[Job],
        metrics: OpsMetrics,
        *,
        retries: int,
        retry_backoff_seconds: float,
        history: Path | None = None,
        echo: Callable[[str], None] = print,
    ) -> None:
        """Set the jobs up; :meth:`start` runs them.

        Args:
            jobs: The jobs, each with its period.
            metrics: Where each run is exported.
            retries: Extra attempts of a failed run.
            retry_backoff_seconds: Pause before the first retry (doubled each time).
            history: The JSON-lines run history; none by default.
            echo: Where a line per run (and per failed attempt) is printed.
        """
        self.jobs = list(jobs)
        self.metrics = metrics
        self.retries = retries
        self.backoff = retry_backoff_seconds
        self.history = history
        self.echo = echo
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the history file and the echo
        self._threads: list[threading.Thread] = []
        for job in self.jobs:
            metrics.period.labels(job.name).set(job.period)

    def run_once(self, job: Job) -> RunReport:
        """Run one job now, with its retries; export and record the run.

        Returns:
            The run's report.
        """
        started = time.time()
        attempts, error, details = 0, None, {}
        while True:
            attempts += 1
            try:
                details = job.run()
                error = None
                break
            except Exception as exc:  # any failure of a job is reported, never raised
                error = f"{type(exc).__name__}: {exc}"
                if attempts > self.retries or self._stop.is_set():
                    break
                self.metrics.retries.labels(job.name).inc()
                pause = self.backoff * 2 ** (attempts - 1)
                self._say(
                    f"ops: {job.name} attempt {attempts}/{self.retries + 1} failed ({error}); "
                    f"retrying in {pause:.0f} s"
                )
                if self._stop.wait(pause):
                    break
        ended = time.time()
        result = "failure" if error else "success"
        report = RunReport(
            job=job.name,
            started_at=datetime.fromtimestamp(started, UTC).isoformat(),
            seconds=round(ended - started, 3),
            attempts=attempts,
            result=result,
            details=details,
            error=error,
        )
        m = self.metrics
        m.last_run.labels(job.name).set(ended)
        m.duration.labels(job.name).set(ended - started)
        m.success.labels(job.name).set(0 if error else 1)
        m.runs.labels(job.name, result).inc()
        if not error:
            m.last_success.labels(job.name).set(ended)
        self._record(report)
        return report

    def _say(self, line: str) -> None:
        with self._lock:
            self.echo(line)
            logger.info(line)

    def _record(self, report: RunReport) -> None:
        what = report.error if report.error else json.dumps(report.details, default=str)
        self._say(
            f"ops: {report.job} {report.result} in {report.seconds:.2f} s "
            f"({report.attempts} attempt{'s' if report.attempts > 1 else ''}): {what}"
        )
        if self.history is not None:
            with self._lock:
                self.history.parent.mkdir(parents=True, exist_ok=True)
                with self.history.open("a") as out:
                    out.write(report.to_json() + "\n")

    def _loop(self, job: Job) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_once(job)
            # The next start is one period after this one started.
            if self._stop.wait(max(0.0, job.period - (time.monotonic() - started))):
                return

    def start(self) -> None:
        """Start one thread per job; the first run of each starts at once."""
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"ops-{job.name}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every job to stop after its current run; wait for them."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from a signal handler)."""
        while not self._stop.wait(1.0):
            pass
