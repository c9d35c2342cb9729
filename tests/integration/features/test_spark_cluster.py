"""The Spark profile on a real (standalone) cluster, not local mode.

A Spark standalone master and one worker are started from the PySpark distribution itself
(its package folder is a ``SPARK_HOME``: ``bin/spark-class org.apache.spark.deploy.master.Master``
and ``...worker.Worker``), on loopback ports of their own. ``fraud features build`` then runs with
``SPARK_MASTER=spark://127.0.0.1:PORT``: the driver in the `fraud` process, the fold's Python
workers in the cluster's executor (a separate JVM launched by the worker, with the project's
interpreter, ``PYSPARK_PYTHON``). The four tables must equal the DuckDB build's row for row,
with their latest-rows sidecars beside them (the tables are on a path both sides reach).

Java 17 is needed, as for every Spark test: without it this fails, it does not skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from feature_engine.offline.latest_rows import latest_rows_path
from feature_engine.offline.pipeline import OFFLINE_TABLES, TABLE_JOIN_KEYS, build_features
from feature_repo.services import STATE_VELOCITY
from fraud_platform import redis_server
from fraud_platform.contracts import EVENT_TIMESTAMP
from fraud_platform.settings import Settings, load_params
from tests.support.training_projects import UNREACHABLE_REDIS, small_params, write_params

pytestmark = pytest.mark.integration
FRAUD = str(Path(sys.executable).with_name("fraud"))


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.3)
    raise AssertionError(f"no {text!r} in {log} after {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A standalone master and one worker (2 cores); yields the master URL and the work dir."""
    if shutil.which("java") is None:
        pytest.fail("java is not on PATH: the Spark profile needs Java 17 (.ci/run installs it)")
    folder = tmp_path_factory.mktemp("spark-cluster")
    spark_class = str(_spark_home() / "bin" / "spark-class")
    port = redis_server.free_port()
    env = {
        **os.environ,
        "SPARK_HOME": str(_spark_home()),
        "SPARK_LOG_DIR": str(folder),
        # No REST submission server: it would take the fixed port 6066.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        master_log = folder / "master.log"
        master = subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.master.Master",
             "--host", "127.0.0.1", "--port", str(port), "--webui-port", "0"],
            env=env, stdout=master_log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(master)
        _wait_for(master_log, "I have been elected leader", master, 90)
        url = f"spark://127.0.0.1:{port}"
        work = folder / "work"
        worker_log = folder / "worker.log"
        worker = subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker",
             "--host", "127.0.0.1", "--cores", "2", "--memory", "2g", "--webui-port", "0",
             "--work-dir", str(work), url],
            env=env, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(worker)
        _wait_for(worker_log, "Successfully registered with master", worker, 90)
        yield url, work
    finally:
        for process in reversed(started):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_the_spark_build_on_a_standalone_cluster_equals_the_duckdb_build(
    cluster: tuple[str, Path], tmp_path: Path
) -> None:
    url, work = cluster
    duck_root, spark_root = tmp_path / "duckdb", tmp_path / "spark"
    for root in (duck_root, spark_root):
        write_params(root, small_params())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "FEAST_"))},
        "PROJECT_ROOT": str(spark_root),
        "REDIS_URL": UNREACHABLE_REDIS,  # the build never reaches the online store
        "FEATURE_PROFILE": "spark",
        "SPARK_MASTER": url,
        "SPARK_DRIVER_MEMORY": "1g",
    }
    generated = subprocess.run(
        [FRAUD, "data", "generate"], env=env, capture_output=True, text=True, check=False
    )
    assert generated.returncode == 0, generated.stderr
    shutil.copytree(spark_root / "data" / "raw", duck_root / "data" / "raw")

    built = subprocess.run(
        [FRAUD, "features", "build"], env=env, capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stdout + built.stderr[-5000:]
    assert built.stdout.splitlines()[0] == f"profile: spark ({url})"
    # The work ran in the cluster's executor: the worker launched one for this application.
    apps = list(work.glob("app-*/*/stderr"))
    assert apps, f"no executor ran on the worker under {work}"

    duck = Settings(project_root=duck_root, redis_url=UNREACHABLE_REDIS)
    build_features(duck.paths, load_params(duck.paths.params_file).features, STATE_VELOCITY)
    spark = Settings(project_root=spark_root, redis_url=UNREACHABLE_REDIS)
    for name in OFFLINE_TABLES:
        keys = [TABLE_JOIN_KEYS[name], EVENT_TIMESTAMP]
        spark_table = spark.paths.feature_table(name)
        assert spark_table.is_dir()  # part files written by the executor
        want, got = (
            pq.read_table(path).to_pandas().sort_values(keys).reset_index(drop=True)
            for path in (duck.paths.feature_table(name), spark_table)
        )
        assert len(want) > 0
        pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
        assert latest_rows_path(spark_table).is_file()
