"""``fraud redis``: manage the local redis-server used by the demo and the tests.

The server itself is :mod:`fraud_platform.redis_server` (the tests start it too); this module is
only its commands.
"""

from __future__ import annotations

import typer

from fraud_platform import redis_server
from fraud_platform.console import user_errors

app = typer.Typer(no_args_is_help=True)


@app.command()
def start() -> None:
    """Start a local redis-server on a free port (reuses REDIS_URL when it answers)."""
    with user_errors(redis_server.RedisUnavailableError):
        server = redis_server.start()
    typer.echo(server.url)


@app.command()
def stop() -> None:
    """Stop the local redis-server that `fraud redis start` launched."""
    stopped = redis_server.stop()
    typer.echo("stopped" if stopped else "no local redis-server was running")


@app.command()
def status() -> None:
    """Print the URL of the running local redis-server, exit 1 if none."""
    server = redis_server.status()
    if server is None:
        typer.echo("no local redis-server is running")
        raise typer.Exit(1)
    typer.echo(server.url)
