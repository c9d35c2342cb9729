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


_OUT_OF_MEMORY = ("java.lang.OutOfMemoryError", "Java heap space", "GC overhead limit exceeded")
_JVM_GONE = ("Answer from Java side is empty", "Error while receiving", "Error while sending")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (``raise ... from``, or raised while handling)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def spark_resource_error(exc: BaseException, settings: Settings | None = None) -> str | None:
    """What to tell a user whose Spark job outgrew the driver, or ``None`` for other errors.

    A retrieval brings its rows to the driver (Arrow): more than
    ``spark.driver.maxResultSize`` aborts the job, more than the driver's heap ends it in an
    ``OutOfMemoryError`` (or the JVM dies and Py4J loses its gateway). Each surfaces as a Py4J
    traceback; the CLI's edge (``fraud_cli.main.main``) answers it with this message, naming
    the setting to raise, and exit code 2.

    Args:
        exc: The exception that reached the CLI's edge.
        settings: The settings whose Spark values the message quotes; the process's by
            default (loaded only when ``exc`` is such a failure).

    Returns:
        The message (without ``error:``), or ``None`` when ``exc`` is not such a failure.
    """
    chain = _chain(exc)
    if not any(type(e).__module__.startswith(("py4j", "pyspark")) for e in chain):
        return None
    text = "\n".join(str(e) for e in chain)
    if not any(
        marker in text for marker in ("spark.driver.maxResultSize", *_OUT_OF_MEMORY, *_JVM_GONE)
    ):
        return None
    if settings is None:
        from fraud_platform.settings import get_settings

        settings = get_settings()
    memory = f"SPARK_DRIVER_MEMORY={settings.spark_driver_memory} (spark.driver.memory)"
    if "spark.driver.maxResultSize" in text:
        detail = next(
            (line.split("failure: ", 1)[-1].strip() for line in text.splitlines()
             if "is bigger than spark.driver.maxResultSize" in line),
            "a job's results outgrew spark.driver.maxResultSize",
        )  # fmt: skip
        return (
            f"Spark: {detail[:300]}: raise SPARK_DRIVER_MAX_RESULT_SIZE="
            f"{settings.spark_driver_max_result_size} (spark.driver.maxResultSize; 0 is no "
            f"limit) and, to hold the results, {memory}"
        )
    if any(marker in text for marker in _OUT_OF_MEMORY):
        return f"the Spark driver ran out of memory: raise {memory}"
    if any(marker in text for marker in _JVM_GONE):
        return (
            "the Spark driver's JVM stopped answering (most often it ran out of memory): "
            f"raise {memory}"
        )
    return None


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
