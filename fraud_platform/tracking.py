"""MLflow pointed at the platform's store: one client, one artifact location, one way in.

Training (the ``fraud_detection_baseline`` experiment) and monitoring (``fraud_monitoring``:
drift and consistency runs) create their experiments through :func:`experiment_id`, so the
artifacts of a local store land in one folder, ``<root>/mlartifacts``, whichever step created
the experiment. Without an explicit location MLflow would put them in ``./mlruns`` of whatever
the working directory happens to be. With a tracking server (``MLFLOW_TRACKING_URI=http...``,
the compose stack) the server decides: it proxies artifacts to its own volume.

MLflow is imported inside the functions: it takes seconds to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from fraud_platform.settings import Settings


def is_local_store(tracking_uri: str) -> bool:
    """Whether the tracking URI is a store on this machine (SQLite, a folder), not a server."""
    return tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri


def artifact_location(settings: Settings) -> str | None:
    """Where a new experiment keeps its artifacts: the one answer for every step.

    Args:
        settings: The project root and the tracking URI.

    Returns:
        ``file://<root>/mlartifacts`` for a local store; ``None`` (the server's own artifact
        root) for a tracking server.
    """
    if not is_local_store(settings.tracking_uri):
        return None
    return settings.paths.mlflow_artifacts_dir.resolve().as_uri()


def mlflow_client(settings: Settings) -> MlflowClient:
    """Point MLflow (tracking and registry, process-wide) at the settings' store; a client.

    Args:
        settings: Whose tracking URI to use.

    Returns:
        A client of that store.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def experiment_id(settings: Settings, name: str) -> str:
    """The id of an experiment of the settings' store, created at :func:`artifact_location`.

    Args:
        settings: The store (and the project root of a local store).
        name: The experiment's name.

    Returns:
        Its id (an existing experiment keeps its own artifact location).
    """
    client = mlflow_client(settings)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location(settings)))
