"""The Spark profile's one SparkSession, configured from ``feature_store.spark.yaml``.

The state build (:mod:`feature_engine.spark.pipeline`) and Feast's Spark offline store share one
session and one configuration: the ``spark_conf`` of the profile's Feast file (``spark.master``
from ``SPARK_MASTER``, UTC session time zone, Arrow transfers...). Feast's store starts its own
session from the same ``spark_conf`` when none is active, and reuses an active one otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fraud_platform.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkStartError(ValueError):
    """A Spark session could not start; the message names the setting to change."""


# The master URLs Spark accepts (SparkContext.createTaskScheduler and the cluster managers):
# local, local[N|*], local[N,F], local-cluster[N,C,M], spark://host:port[,host:port],
# yarn, k8s://..., mesos://...
_MASTER = re.compile(
    r"local(\[(\d+|\*)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]"
    r"|spark://[^\s/]+(:\d+)?(,[^\s/]+(:\d+)?)*|yarn|k8s://\S+|mesos://\S+"
)


def check_master(master: str) -> None:
    """Refuse a ``spark.master`` Spark would not parse, before a JVM is started for it.

    Raises:
        SparkStartError: Not one of Spark's master URL forms; the message names SPARK_MASTER.
    """
    if not _MASTER.fullmatch(master):
        raise SparkStartError(
            f"SPARK_MASTER (spark.master) {master!r} is not a Spark master URL: use local[N], "
            "local[*], spark://host:port, yarn, k8s://https://host:port or mesos://host:port"
        )


def check_java() -> None:
    """Fail early, with the setting to fix, when no Java runtime is there for Spark.

    Raises:
        SparkStartError: Neither ``JAVA_HOME`` names a ``bin/java`` nor is ``java`` on PATH.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        if not os.access(os.path.join(java_home, "bin", "java"), os.X_OK):
            raise SparkStartError(
                f"JAVA_HOME={java_home!r} holds no bin/java: the Spark profile "
                "(FEATURE_PROFILE=spark) needs Java 17; fix JAVA_HOME or unset it"
            )
    elif shutil.which("java") is None:
        raise SparkStartError(
            "no Java runtime: `java` is not on PATH and JAVA_HOME is unset; the Spark profile "
            "(FEATURE_PROFILE=spark) needs Java 17 (Debian: apt-get install "
            "openjdk-17-jre-headless)"
        )


def start_session(conf: Mapping[str, str]) -> SparkSession:
    """A SparkSession with ``conf``; a failed start names the setting to change.

    An already running session is returned with ``conf``'s SQL options set (its static
    configuration, such as ``spark.master``, stays), as ``SparkSession.builder`` does.

    Args:
        conf: Spark configuration (the profile's ``spark_conf``).

    Returns:
        The session.

    Raises:
        SparkStartError: No Java, or Spark refused to start (a bad ``spark.master``...): the
            message names ``SPARK_MASTER`` / ``spark.master`` and Spark's own first line.
    """
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is None:
        check_master(conf.get("spark.master", "local[*]"))
        check_java()
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # py4j, SparkException, RuntimeError of the gateway: all one answer
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        master = conf.get("spark.master", "(unset)")
        raise SparkStartError(
            f"Spark could not start with spark.master={master!r} (SPARK_MASTER): {first[:300]}"
        ) from exc


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

    Raises:
        SparkStartError: Spark could not start (no Java, a bad ``SPARK_MASTER``).
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return start_session(spark_conf(settings))
