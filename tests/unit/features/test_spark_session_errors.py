"""A Spark session that cannot start: ``error: ...`` naming the setting, exit code 2.

Both checks run before a JVM is started (a bad master URL, no Java), so these tests start none.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from feature_engine.spark.session import SparkStartError, check_java, check_master, start_session
from fraud_cli.features import app
from fraud_platform.settings import PROJECT_ROOT, get_settings
from tests.support.edge_cases import edge_case_tables, write_raw

runner = CliRunner()


@pytest.mark.parametrize(
    "master", ["local", "local[2]", "local[*]", "local[2,3]", "spark://head:7077", "yarn"]
)
def test_spark_master_urls_spark_accepts_pass(master: str) -> None:
    check_master(master)


@pytest.mark.parametrize("master", ["bogus://nowhere", "local[", "spark://", "local 2"])
def test_a_bad_master_url_is_refused_naming_spark_master(master: str) -> None:
    with pytest.raises(SparkStartError, match=r"SPARK_MASTER \(spark.master\)"):
        check_master(master)


def test_no_java_is_refused_naming_java_home_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no `java`
    with pytest.raises(SparkStartError, match=r"no Java runtime.*PATH.*JAVA_HOME"):
        check_java()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(SparkStartError, match=r"JAVA_HOME=.*holds no bin/java"):
        start_session({"spark.master": "local[2]"})


def _build(root: Path, patch: pytest.MonkeyPatch) -> Result:
    patch.setenv("PROJECT_ROOT", str(root))
    patch.setenv("FEATURE_PROFILE", "spark")
    patch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    try:
        return runner.invoke(app, ["build"])
    finally:
        get_settings.cache_clear()


@pytest.fixture
def spark_root(tmp_path: Path) -> Path:
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    write_raw(edge_case_tables(), tmp_path / "data" / "raw")
    return tmp_path


def test_fraud_features_build_with_a_bad_master_exits_2(
    spark_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARK_MASTER", "bogus://nowhere")
    result = _build(spark_root, monkeypatch)
    assert result.exit_code == 2, result.output
    assert "error: SPARK_MASTER (spark.master) 'bogus://nowhere'" in result.output
    assert "Traceback" not in result.output
    assert not (spark_root / "data" / "features").exists()  # nothing was written


def test_fraud_features_build_without_java_exits_2(
    spark_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(spark_root))
    result = _build(spark_root, monkeypatch)
    assert result.exit_code == 2, result.output
    assert "error: no Java runtime" in result.output
    assert "Traceback" not in result.output


class _FakePy4JError(Exception):
    """Stands for py4j's errors (their message is Java's stack trace)."""


_FakePy4JError.__module__ = "py4j.protocol"


@pytest.mark.parametrize(
    ("java_says", "names"),
    [
        ("java.lang.OutOfMemoryError: Java heap space", "ran out of memory: raise SPARK_DRIVER_"),
        ("Answer from Java side is empty", "stopped answering (most often it ran out of memory)"),
        (
            "Caused by: org.apache.spark.SparkException: Job aborted due to stage failure: Total "
            "size of serialized results of 2 tasks (32.2 KiB) is bigger than "
            "spark.driver.maxResultSize (1024.0 B)",
            "Spark: Total size of serialized results of 2 tasks (32.2 KiB) is bigger than "
            "spark.driver.maxResultSize (1024.0 B): raise SPARK_DRIVER_MAX_RESULT_SIZE=1g",
        ),
    ],
)  # fmt: skip
def test_a_spark_job_that_outgrows_the_driver_names_the_setting_to_raise(
    java_says: str, names: str
) -> None:
    from feature_engine.spark.session import spark_resource_error
    from fraud_platform.settings import Settings

    settings = Settings(redis_url="redis://127.0.0.1:1/0", spark_driver_memory="3g")
    try:  # raised from a Py4J error, as Feast's and our retrieval code let it through
        try:
            raise _FakePy4JError(f"An error occurred while calling o42.getResult.\n: {java_says}")
        except _FakePy4JError as inner:
            raise RuntimeError("retrieval failed") from inner
    except RuntimeError as exc:
        message = spark_resource_error(exc, settings)
    assert message is not None and names in message
    assert "SPARK_DRIVER_MEMORY=3g" in message


def test_other_errors_are_not_taken_for_a_small_spark_driver() -> None:
    from feature_engine.spark.session import spark_resource_error
    from fraud_platform.settings import Settings

    settings = Settings(redis_url="redis://127.0.0.1:1/0")
    # Not from Py4J or PySpark: the same words are not Spark's failure.
    assert spark_resource_error(ValueError("Java heap space"), settings) is None
    # From Py4J, but another failure (a missing table...): left to its own traceback.
    assert spark_resource_error(_FakePy4JError("Path does not exist: x.parquet"), settings) is None
