"""``fraud redis``: manage the local redis-server (or Redis Cluster) of the demo and the tests.

The servers themselves are :mod:`fraud_platform.redis_server` (one server) and
:mod:`fraud_platform.redis_cluster` (3 masters + 3 replicas); this module is only their
commands. ``--cluster`` picks the cluster; run the platform on it with ``REDIS_MODE=cluster``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fraud_platform import redis_cluster, redis_server
from fraud_platform.console import user_errors

app = typer.Typer(no_args_is_help=True)

ClusterOption = Annotated[
    bool,
    typer.Option(
        "--cluster",
        help="The local Redis Cluster (6 nodes: 3 masters, 3 replicas) instead of one server; "
        "use it with REDIS_MODE=cluster.",
    ),
]


@app.command()
def start(cluster: ClusterOption = False) -> None:
    """Start a local redis-server (reuses REDIS_URL when it answers), or a local cluster."""
    with user_errors(redis_server.RedisUnavailableError):
        url = redis_cluster.start().url if cluster else redis_server.start().url
    typer.echo(url)


@app.command()
def stop(cluster: ClusterOption = False) -> None:
    """Stop the local redis-server (or cluster) that `fraud redis start` launched."""
    stopped = redis_cluster.stop() if cluster else redis_server.stop()
    what = "redis cluster" if cluster else "redis-server"
    typer.echo("stopped" if stopped else f"no local {what} was running")


@app.command()
def status(cluster: ClusterOption = False) -> None:
    """Print the URL of the running local redis-server (or cluster), exit 1 if none."""
    server = redis_cluster.status() if cluster else redis_server.status()
    if server is None:
        typer.echo(f"no local {'redis cluster' if cluster else 'redis-server'} is running")
        raise typer.Exit(1)
    typer.echo(server.url)
