"""``fraud serve``: run the scoring API."""

from __future__ import annotations

import os
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)


@app.callback()
def main() -> None:
    """Run the scoring API."""


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=64)] = 1,
    ingest_worker: Annotated[
        bool,
        typer.Option(
            help="In stream mode, also run one ingestion worker process (off when the "
            "workers run elsewhere, e.g. their own compose service)."
        ),
    ] = True,
) -> None:
    """Serve POST /predict, /predict/batch, /health, /ready and /metrics with uvicorn."""
    import subprocess
    import sys

    import uvicorn

    from fraud_platform.settings import get_settings
    from serving.metrics import MULTIPROCESS_DIR_ENV, use_multiprocess_dir

    mode = get_settings().serving_ingest_mode
    if workers > 1 and mode == "async":
        # Read-your-writes across processes needs the stream, or the write inside the request.
        raise typer.BadParameter(
            "SERVING_INGEST_MODE=async keeps read-your-writes inside one process only: "
            "use stream (default) or sync with several workers",
            param_hint="--workers",
        )
    if workers > 1 and MULTIPROCESS_DIR_ENV not in os.environ:
        # One /metrics for all workers: prometheus_client's multiprocess mode, whose folder
        # must be set (and empty) before the workers import it.
        folder = get_settings().paths.run_dir / "prometheus"
        use_multiprocess_dir(folder)
        typer.echo(f"several workers: metrics of all workers from {folder}", err=True)
    folder_worker = None
    if mode == "stream" and ingest_worker:
        # --parent-pid: the worker ends with this process, even one SIGKILLed (no finally runs).
        command = [
            sys.executable, "-m", "fraud_cli.main", "serve", "ingest-worker",
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        folder_worker = subprocess.Popen(command)
        typer.echo(f"ingestion worker: pid {folder_worker.pid}", err=True)
    try:
        uvicorn.run(
            "serving.main:app",
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=False,
            loop="uvloop",
            http="httptools",
        )
    finally:
        if folder_worker is not None:
            folder_worker.terminate()  # it acknowledges what it folded, then exits
            try:
                folder_worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                folder_worker.kill()  # its unacknowledged entries stay pending: not lost


@app.command("ingest-worker")
def ingest_worker_command(
    consumer: Annotated[
        str | None,
        typer.Option(help="Name in the consumer group; keep it across restarts (default: host)."),
    ] = None,
    batch: Annotated[int, typer.Option(help="Stream entries read per call.", min=1)] = 500,
    claim_idle_ms: Annotated[
        int, typer.Option(help="Claim entries another consumer left pending this long.", min=0)
    ] = 30_000,
    parent_pid: Annotated[
        int | None,
        typer.Option(
            help="Stop when this process, the worker's parent, ends (fraud serve api passes "
            "its own pid).",
            min=1,
        ),
    ] = None,
) -> None:
    """Fold the stream of scored transactions into the online state (ingest mode ``stream``).

    Reads the stream in a consumer group, journals each entry (data/ingested), folds it with the
    compare-and-set script, acknowledges it; on start takes back its own pending entries and
    claims those a crashed consumer left. Stops on SIGTERM after the batch in hand, and when
    its parent (``--parent-pid``) dies.
    """
    from serving.stream import build_worker, run_worker

    worker = build_worker(consumer, batch, claim_idle_ms=claim_idle_ms, parent_pid=parent_pid)
    run_worker(worker, report=lambda line: typer.echo(line, err=True))
