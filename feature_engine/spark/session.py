"""The Spark profile's one SparkSession, configured from ``feature_store.spark.yaml``.

The state build (:mod:`feature_engine.spark.pipeline`) and Feast's Spark offline store share one
session and one configuration: the ``spark_conf`` of the profile's Feast file (``spark.master``
from ``SPARK_MASTER``, UTC session time zone, Arrow transfers...). Feast's store starts its own
session from the same ``spark_conf`` when none is active, and reuses an active one otherwise.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from fraud_platform.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_conf(settings: Settings) -> dict[str, str]:
    """``offline_store.spark_conf`` of the Spark profile's Feast file, filled in from settings.

    Args:
        settings: Any settings; their Spark values (``spark_master``...) are used whatever
            their ``feature_profile``.

    Returns:
        Spark configuration key -> value.
    """
    from feature_engine.store import repo_config

    spark_settings = settings.model_copy(update={"feature_profile": "spark"})
    conf = repo_config(spark_settings).offline_store.spark_conf
    return dict(conf or {})


def spark_session(settings: Settings) -> SparkSession:
    """The process's SparkSession, started with the Spark profile's configuration if none runs.

    PySpark starts its Python workers (``applyInArrow`` in the state build) with the
    interpreter ``PYSPARK_PYTHON`` names, ``python3`` by default: locally this process's own
    interpreter (with the project installed) is set when the variable is unset. On a cluster
    the executors' Python must have the project installed (see the README, "Spark profile").

    Args:
        settings: Settings whose Spark values configure a new session.

    Returns:
        The active session (an already running one keeps its static configuration, such as
        ``spark.master``; its SQL options are set from the profile's file).
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
