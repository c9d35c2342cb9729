"""``fraud``: one command line for every step of the platform (``[project.scripts] fraud``).

Each step owns its Typer app in its own package; this module only mounts them, and nothing
else imports it, so the CLI sits on top of the steps instead of under them. Step modules keep
heavy imports (Feast, MLflow, scikit-learn, Evidently) inside their commands so that
``fraud --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from data.cli import app as data_app
from fraud_cli.features import app as features_app
from fraud_cli.local_redis import app as redis_app
from fraud_platform.console import EXIT_BAD_INPUT, fail
from monitoring.cli import app as monitor_app
from ops.cli import app as ops_app
from ops.console import app as ui_app
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
app.add_typer(ops_app, name="ops", help="Run the scheduled jobs: labels, drift, consistency.")
app.add_typer(ui_app, name="ui", help="Run a web console: Prometheus, Evidently UI, Feast UI.")


# The commands that read or write features through the profile's offline store (or its
# tables): they say which profile they run, in one line, before anything else.
PROFILE_COMMANDS = {
    ("features", "build"),
    ("features", "apply"),
    ("features", "materialize"),
    ("features", "rebuild-online"),
    ("features", "ingest-labels"),
    ("train", "run"),
    ("train", "evaluate"),
    ("serve", "api"),
    ("monitor", "consistency"),
}


def announce_profile(argv: list[str]) -> None:
    """Print ``profile: ...`` when ``argv`` runs one of :data:`PROFILE_COMMANDS`.

    Settings that do not load print nothing here: the command itself then answers them.
    """
    if tuple(argv[:2]) not in PROFILE_COMMANDS or {"--help", "-h"} & set(argv):
        return
    from fraud_platform.settings import get_settings

    try:
        line = get_settings().profile_line
    except Exception:  # bad settings: the command's own error names them
        return
    typer.echo(line)


def main() -> None:
    """Run ``fraud``; an unreachable Redis or a too small Spark driver is configuration.

    Every command that touches the online store (materialize, rebuild-online, ingest-labels,
    the consistency check, ...) reaches Redis through redis-py or Feast's Redis store, which
    raise ``redis.exceptions.ConnectionError`` when nothing listens at ``REDIS_URL``. Every
    command that retrieves through the Spark profile (train, the consistency check) can outgrow
    the driver (``spark.driver.maxResultSize``, its heap), which Py4J raises as a Java
    traceback. One handler here answers both the way every command answers bad input:
    ``error: ...`` naming the setting, exit code 2.
    """
    try:
        announce_profile(sys.argv[1:])
        app()
    except Exception as exc:  # only these two are answered; the rest re-raise
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        from feature_engine.spark.session import spark_resource_error
        from fraud_platform.settings import get_settings

        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            settings = get_settings()
            message = (
                f"cannot reach Redis at {settings.redis_url} (REDIS_URL, REDIS_MODE "
                f"{settings.redis_mode}): {exc}"
            )
        elif (spark_message := spark_resource_error(exc)) is not None:
            message = spark_message
        else:
            raise
        fail(message)  # prints it
        raise SystemExit(EXIT_BAD_INPUT) from exc


if __name__ == "__main__":
    main()
