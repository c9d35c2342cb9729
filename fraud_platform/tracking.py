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

import warnings
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

    configure_mlflow_mappers()
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


def configure_mlflow_mappers() -> None:
    """Configure MLflow's SQLAlchemy mappers now, without SQLAlchemy's ``noload`` warning.

    MLflow's SQL store configures its mappers on first use with the ``noload`` loader, which
    SQLAlchemy 2.1 deprecates: a SADeprecationWarning on stderr at every run, MLflow's to fix,
    asking nothing of the user. The process-wide filter (``fraud_platform/__init__.py``) does
    not always hold when that first use comes: scikit-learn's parallel helpers reset the global
    warning filters from worker threads (``warnings.catch_warnings`` is not thread-safe). So the
    mappers are configured here, once, under a local filter; later configurations are no-ops.
    """
    from mlflow.store.tracking.dbmodels import models  # noqa: F401  (declares the mappers)
    from sqlalchemy.orm import configure_mappers

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*``noload`` loader strategy is deprecated")
        configure_mappers()
