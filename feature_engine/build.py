"""The ``features`` step on the project's profile: one switch between the DuckDB and Spark builds.

It sits above both builds (the offline room never imports Spark): ``fraud features build`` and
the consistency monitor's shadow build call it, so a project on the Spark profile is rebuilt by
Spark in both places.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from feature_engine.declarations import VelocityTable
from feature_engine.offline.pipeline import PipelineResult, build_features
from fraud_platform.settings import FeatureParams, Settings


def build_profile_features(
    settings: Settings,
    features: FeatureParams,
    table: VelocityTable,
    progress: Callable[[str], None] | None = None,
    out_dir: Path | None = None,
) -> PipelineResult:
    """The ``features`` step on the settings' profile: the DuckDB build, or the Spark one.

    Same tables either way (``tests/integration/features/test_spark_profile.py``); the CLI
    and the consistency monitor's shadow build call this one switch.

    Args:
        settings: The project and its ``feature_profile``.
        features: ``params.yaml``'s ``features`` section.
        table: The velocity rows the state is built for.
        progress: Where to report each table's build time; silent by default.
        out_dir: Where to write; the profile's tables location by default.

    Returns:
        Where each table went, its row count, the wall time and the events it was built from.
    """
    if settings.feature_profile == "spark":
        from feature_engine.spark.pipeline import build_features_spark

        location = str(out_dir) if out_dir is not None else None
        return build_features_spark(settings, features, table, progress, location=location)
    return build_features(settings.paths, features, table, progress=progress, out_dir=out_dir)
