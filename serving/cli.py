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
) -> None:
    """Serve POST /predict, /predict/batch, /health, /ready and /metrics with uvicorn."""
    import uvicorn

    from fraud_platform.settings import get_settings
    from serving.metrics import MULTIPROCESS_DIR_ENV, use_multiprocess_dir

    if workers > 1 and "SERVING_INGEST_MODE" not in os.environ:
        # Read-your-writes across processes needs the write inside the request.
        os.environ["SERVING_INGEST_MODE"] = "sync"
        typer.echo("several workers: SERVING_INGEST_MODE=sync (set it to override)", err=True)
    if workers > 1 and MULTIPROCESS_DIR_ENV not in os.environ:
        # One /metrics for all workers: prometheus_client's multiprocess mode, whose folder
        # must be set (and empty) before the workers import it.
        folder = get_settings().paths.run_dir / "prometheus"
        use_multiprocess_dir(folder)
        typer.echo(f"several workers: metrics of all workers from {folder}", err=True)
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
