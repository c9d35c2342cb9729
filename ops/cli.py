"""``fraud ops``: the scheduled jobs as one long-running service, with its own ``/metrics``.

``fraud ops run`` starts the jobs of ``params.yaml``'s ``ops`` section (labels, drift,
consistency, freshness) on their periods and serves their metrics on ``--port`` for
Prometheus. Bad configuration is answered before anything starts, ``error: ...`` naming the
setting and exit code 2: a bad ``ops`` key (a schedule of 0), a ``PROMETHEUS_URL`` that does
not answer, a port in use. SIGTERM or Ctrl-C stop it after the running jobs' current run.
"""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from fraud_platform.console import fail, warn
from fraud_platform.settings import ParamsError, get_settings, load_params

app = typer.Typer(no_args_is_help=True)

DEFAULT_PORT = 9108  # the ops service's /metrics (compose: ops:9108)


def check_prometheus(url: str, port: int, timeout: float = 3.0) -> list[str]:
    """Check that the Prometheus at ``url`` answers; say whether it scrapes ``port``.

    Args:
        url: ``PROMETHEUS_URL``.
        port: This service's metrics port.
        timeout: Seconds per request.

    Returns:
        Warnings (Prometheus answers but no target of it is on ``port``).

    Raises:
        ValueError: When it does not answer (the message names ``PROMETHEUS_URL``).
    """
    import httpx

    base = url.rstrip("/")
    try:
        ready = httpx.get(f"{base}/-/ready", timeout=timeout)
        ready.raise_for_status()
        targets = httpx.get(f"{base}/api/v1/targets", timeout=timeout).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ValueError(f"cannot reach Prometheus at {url} (PROMETHEUS_URL): {exc}") from exc
    scraped = [
        t.get("scrapeUrl", "")
        for t in targets.get("data", {}).get("activeTargets", [])
        if f":{port}/" in t.get("scrapeUrl", "")
    ]
    if scraped:
        return []
    return [f"Prometheus at {url} has no scrape target on port {port}: ops metrics unwatched"]


@app.command()
def run(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of this service's /metrics (0: none).")
    ] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Address /metrics listens on.")] = "127.0.0.1",
    jobs: Annotated[
        str,
        typer.Option(help="Comma-separated jobs to run: labels, drift, consistency, freshness."),
    ] = "labels,drift,consistency,freshness",
    once: Annotated[
        bool, typer.Option("--once", help="Run each job once (with retries), then exit.")
    ] = False,
) -> None:
    """Run the scheduled jobs (params.yaml ops): labels, drift, consistency, freshness.

    Each run is logged, timed, retried on failure (ops.retries) and appended to
    reports/ops/runs.jsonl; /metrics exports per job the last run and success time, the
    duration and the result, plus the drift and consistency verdicts and Redis reachability.
    With --once, exits 1 if a job failed.
    """
    from ops.jobs import JOB_NAMES, OpsJobs
    from ops.metrics import OpsMetrics
    from ops.scheduler import Scheduler

    settings = get_settings()
    try:
        params = load_params()
    except ParamsError as exc:
        raise fail(str(exc)) from exc
    names = tuple(name.strip() for name in jobs.split(",") if name.strip())
    unknown = [name for name in names if name not in JOB_NAMES]
    if unknown or not names:
        raise fail(f"--jobs: unknown job(s) {unknown or [jobs]}; known: {', '.join(JOB_NAMES)}")
    if settings.prometheus_url:
        try:
            for message in check_prometheus(settings.prometheus_url, port):
                warn(message)
        except ValueError as exc:
            raise fail(str(exc)) from exc
    metrics = OpsMetrics()
    ops_jobs = OpsJobs(settings, params, metrics, echo=typer.echo)
    scheduler = Scheduler(
        ops_jobs.schedule(names),
        metrics,
        retries=params.ops.retries,
        retry_backoff_seconds=params.ops.retry_backoff_seconds,
        history=settings.paths.ops_dir / "runs.jsonl",
        echo=typer.echo,
    )
    if once:
        reports = [scheduler.run_once(job) for job in scheduler.jobs]
        raise typer.Exit(1 if any(r.result == "failure" for r in reports) else 0)
    if port:
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr=host, registry=metrics.registry)
        except OSError as exc:
            raise fail(f"--port {port}: cannot listen on {host}:{port}: {exc}") from exc
        typer.echo(f"ops: metrics on http://{host}:{port}/metrics")
    periods = ", ".join(f"{job.name} every {job.period:g} s" for job in scheduler.jobs)
    typer.echo(f"ops: running {periods} (project root {settings.project_root})")

    def stop(signum: int, _frame: object) -> None:
        typer.echo(f"ops: {signal.Signals(signum).name}: stopping after the current runs")
        scheduler.stop(timeout=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.start()
    scheduler.wait()
    scheduler.stop()
