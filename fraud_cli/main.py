"""``fraud``: one command line for every step of the platform (``[project.scripts] fraud``).

Each step owns its Typer app in its own package; this module only mounts them, and nothing
else imports it, so the CLI sits on top of the steps instead of under them. Step modules keep
heavy imports (Feast, MLflow, scikit-learn, Evidently) inside their commands so that
``fraud --help`` stays fast.
"""

from __future__ import annotations

import typer

from data.cli import app as data_app
from fraud_cli.features import app as features_app
from fraud_cli.local_redis import app as redis_app
from fraud_platform.console import EXIT_BAD_INPUT, fail
from monitoring.cli import app as monitor_app
from serving.cli import app as serve_app
from simulation.cli import app as simulate_app
from training.cli import app as train_app

app = typer.Typer(
    help="Fraud-detection feature platform: data, features, training, serving, monitoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(redis_app, name="redis", help="Start, stop or show the local Redis or cluster.")
app.add_typer(data_app, name="data", help="Generate synthetic or import real transactions.")
app.add_typer(features_app, name="features", help="Build offline tables, apply and materialize.")
app.add_typer(train_app, name="train", help="Train, cross-validate, register the model.")
app.add_typer(serve_app, name="serve", help="Run the scoring API.")
# `fraud monitor`: monitoring's drift and consistency checks, and the simulation that exercises
# the drift check through the live API (a client of the platform, in its own package).
monitor = typer.Typer(no_args_is_help=True)
monitor.add_typer(monitor_app)
monitor.add_typer(simulate_app)
app.add_typer(monitor, name="monitor", help="Drift reports on live traffic.")


def main() -> None:
    """Run ``fraud``; an unreachable Redis is bad configuration, not a crash.

    Every command that touches the online store (materialize, rebuild-online, ingest-labels,
    the consistency check, ...) reaches Redis through redis-py or Feast's Redis store, which
    raise ``redis.exceptions.ConnectionError`` when nothing listens at ``REDIS_URL``. One
    handler here answers it the way every command answers bad input: ``error: ...`` naming
    the setting, exit code 2.
    """
    try:
        app()
    except Exception as exc:  # only Redis's connection errors are answered; the rest re-raise
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if not isinstance(exc, RedisConnectionError | RedisTimeoutError):
            raise
        from fraud_platform.settings import get_settings

        settings = get_settings()
        fail(  # prints it
            f"cannot reach Redis at {settings.redis_url} (REDIS_URL, REDIS_MODE "
            f"{settings.redis_mode}): {exc}"
        )
        raise SystemExit(EXIT_BAD_INPUT) from exc


if __name__ == "__main__":
    main()
