"""Ground floor of the platform: settings, contracts, tracking, local Redis.

Every process of the platform imports this package first (the ``fraud`` CLI, the API under
uvicorn, the test-stack scripts), so the third-party warnings below are filtered here, once,
at their source. Each is printed by a library on every run, asks the user for no action, and
would bury our own warnings (which do ask for one, e.g. a drift window too small to judge).
Each filter matches the message *and* the module that warns, so nothing else is hidden.
"""

from __future__ import annotations

import warnings


def quiet_third_party_warnings() -> None:
    """Install the warning filters below (again).

    Called on import; call it again after importing Feast in a process that imported this
    package first: Feast's modules put ``warnings.simplefilter("once", ...)`` in front of every
    filter installed before them.
    """
    # MLflow's SQLAlchemy tracking store configures its mappers with the ``noload`` loader, which
    # SQLAlchemy 2.1 deprecates (SADeprecationWarning, at every MLflow start). MLflow's to fix;
    # nothing we call chooses the loader.
    warnings.filterwarnings(
        "ignore", message=r".*``noload`` loader strategy is deprecated", module=r"mlflow\."
    )
    # Feast warns at every ``apply``/retrieval that on-demand views are "experimental" and scale
    # badly for offline retrieval. Our on-demand view is the request-time feature path by design,
    # and offline retrieval of its inputs goes through our as-of store (feature_engine.offline).
    warnings.filterwarnings(
        "ignore", message=r"On demand feature view is an experimental feature", module=r"feast\."
    )
    # The Spark profile (FEATURE_PROFILE=spark) uses Feast's Spark offline store and sources, which
    # Feast labels "experimental"/"alpha" at every use; the profile is tested against DuckDB and the
    # reference (tests/integration/features/test_spark_profile.py), so the notice adds nothing.
    warnings.filterwarnings(
        "ignore",
        message=r"The spark (data source API|offline store) is an experimental",
        module=r"feast\.",
    )
    # Importing Evidently imports its legacy test helpers, which patch ``numpy.core`` (a name
    # NumPy 2 deprecates), and its UI server's framework, litestar, which warns about its own
    # deprecated ``Dependency`` helpers. Printed once Feast's "once" filter is in place; Evidently's
    # to fix, nothing we call. Call this again right before importing Evidently (see
    # monitoring/report.py), since Feast's filters may have been put in front in between.
    warnings.filterwarnings("ignore", message=r"numpy\.core is deprecated", module=r"evidently\.")
    warnings.filterwarnings(
        "ignore",
        message=r"(Call to deprecated function 'Dependency'|Use of deprecated class 'DependencyKw)",
        module=r"litestar\.",
    )


quiet_third_party_warnings()

# Start-up time. Feast decorates its classes with typeguard's ``@typechecked``, which re-reads,
# re-parses and recompiles each class's source on import: ~40 % of ``import feast`` (2.5-3 s of
# every CLI command, API start and test subprocess here). typeguard documents the decorator as a
# development check that is a no-op under ``python -O``; we make it one the same way, before
# Feast is imported. Only Feast uses typeguard in this environment, and nothing of ours relies
# on its run-time checks (Feast's own type errors still raise where Feast checks types itself).
import typeguard  # noqa: E402


def _typechecked_off(target: object = None, **_options: object) -> object:
    """Return ``target`` undecorated, as ``python -O`` makes typeguard's ``typechecked``."""
    return target if target is not None else (lambda decorated: decorated)


typeguard.typechecked = _typechecked_off  # type: ignore[assignment]
