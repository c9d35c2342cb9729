"""The one settings object and the one paths table of the platform.

Paths are derived from the project root, never created at import time. Runtime settings
(Redis, MLflow, API keys) come from the environment through pydantic-settings; tunable
numbers of the pipeline come from ``params.yaml`` and are validated here, so a bad value
fails with the name of the offending key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]

RedisMode = Literal["single", "cluster"]
"""How the online store runs: one ``redis-server``, or a Redis Cluster (``REDIS_MODE``)."""

FeatureProfile = Literal["duckdb", "spark"]
"""Which engine the offline side runs on (``FEATURE_PROFILE``): the state build and Feast's
offline store. ``duckdb`` (embedded, the default) or ``spark`` (Feast's Spark offline store,
the state build as Spark DataFrame code). The online side is the same in both."""

FEATURE_STORE_YAML = {"duckdb": "feature_store.yaml", "spark": "feature_store.spark.yaml"}
"""The Feast configuration file of each profile, in ``feature_repo/``."""


class Paths(BaseModel):
    """Where every artefact of the pipeline lives; all relative to one root."""

    root: Path

    @property
    def params_file(self) -> Path:
        """``params.yaml`` of this root, or the checkout's when the root has none."""
        own = self.root / "params.yaml"
        return own if own.exists() else PROJECT_ROOT / "params.yaml"

    @property
    def raw_dir(self) -> Path:
        """Raw tables (transactions, labels, customers, merchants), DVC-tracked."""
        return self.root / "data" / "raw"

    @property
    def features_dir(self) -> Path:
        """Offline feature tables (Parquet) that Feast reads through DuckDB."""
        return self.root / "data" / "features"

    @property
    def ingested_dir(self) -> Path:
        """Journals of the transactions and labels the API took in (raw data's online twin)."""
        return self.root / "data" / "ingested"

    @property
    def feature_repo(self) -> Path:
        """The Feast repository (code, so always beside this package, whatever the root)."""
        return PROJECT_ROOT / "feature_repo"

    @property
    def registry(self) -> Path:
        """Feast's file registry, written by ``feast apply``."""
        return self.root / "data" / "registry.db"

    @property
    def run_dir(self) -> Path:
        """Ignored folder for local servers' data, pid files and logs."""
        return self.root / ".run"

    @property
    def models_dir(self) -> Path:
        """Training outputs that DVC tracks (metrics, reference sample)."""
        return self.root / "models"

    @property
    def reports_dir(self) -> Path:
        """Human-facing results: plots and drift reports."""
        return self.root / "reports"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        """Artifacts of a local MLflow store (:func:`fraud_platform.tracking.artifact_location`)."""
        return self.root / "mlartifacts"

    @property
    def evidently_workspace(self) -> Path:
        """The Evidently workspace: one project per feature service, a snapshot per check."""
        return self.root / "reports" / "evidently"

    @property
    def ops_dir(self) -> Path:
        """The ops service's run history (``runs.jsonl``: one line per job run)."""
        return self.root / "reports" / "ops"

    @property
    def prediction_log_dir(self) -> Path:
        """Prediction log written by the API, read by monitoring."""
        return self.root / "data" / "prediction_log"

    def raw_table(self, name: str) -> Path:
        """Path of one raw table: ``transactions``, ``labels``, ``customers`` or ``merchants``."""
        return self.raw_dir / f"{name}.parquet"

    def feature_table(self, name: str) -> Path:
        """Path of one offline feature table under this root's ``data/features``.

        The DuckDB profile's tables; the Spark profile's too unless ``spark_tables_uri`` moves
        them (:meth:`Settings.offline_table` is the profile's rule).
        """
        return Path(table_location(self.features_dir, name))


def table_location(location: str | Path, name: str) -> str:
    """Where one offline table lives under a tables folder or URI: ``<location>/<name>.parquet``.

    The one rule, for every profile: the builds write there (a file for DuckDB, a folder of part
    files for Spark), the views' batch sources read there, materialize takes its end time and
    its "built at" from there.

    Args:
        location: A folder, or a URI (``file://``, ``s3a://``, ``hdfs://``...).
        name: The table (``customer_activity``...).

    Returns:
        The table's path or URI.
    """
    return f"{str(location).rstrip('/')}/{name}.parquet"


def local_path(location: str | Path) -> Path | None:
    """The local path of a table location (a path or a ``file://`` URI), else ``None``.

    What is local (or mounted) is read on the driver with DuckDB (latest-rows sidecars, the
    latest event time, a table's build time); HDFS and object stores are reached by Spark only.
    """
    path = str(location).removeprefix("file://")
    return None if "://" in path or path.startswith(("hdfs:", "s3a:", "s3:", "gs:")) else Path(path)


class Settings(BaseSettings):
    """Runtime settings, read from the environment (and ``.env`` if present).

    Attributes:
        project_root: Root of the checkout; every path derives from it.
        redis_mode: ``single`` (one ``redis-server``, the default) or ``cluster`` (Redis
            Cluster: Feast's ``redis_type: redis_cluster``, redis-py's ``RedisCluster`` client).
            The one switch: every reader and writer of the online store follows it.
        redis_url: ``redis://host:port/db`` of the online store; in cluster mode
            ``redis://host:port[,host:port...]``, the startup nodes the client discovers the
            cluster from (one is enough; the database is always 0). By default the URL the local
            server (or cluster) that ``fraud redis start [--cluster]`` started recorded.
        mlflow_tracking_uri: Tracking and registry store; local SQLite by default.
        model_name: Registered model name in the MLflow registry: the one name training
            registers under and the API loads (``MODEL_NAME``).
        model_alias: The alias training moves to a better model and the API serves
            (``MODEL_ALIAS``).
        api_keys: Comma-separated keys; empty means the scoring endpoints are open.
        max_body_bytes: The largest request body the API reads; a larger one is refused with
            413 before it is parsed.
        serving_feature_path: ``feast`` (default): the feature service as Feast's registry
            resolves it, resolved again whenever Feast's registry cache expires or is refreshed
            (a ``feast apply`` is seen when ``get_online_features`` would see it), read in one
            Redis pipeline and transformed by Feast's own on-demand transformation (plain
            ``get_online_features`` for a service it cannot resolve); ``direct``: the same
            resolution done once at start-up and the registered on-demand function called
            directly. Both give the same values and Python types (tested).
        serving_ingest_mode: ``stream`` (default) appends each scored transaction to a Redis
            Stream that ``fraud serve ingest-worker`` folds into the online state in a process
            of its own; a later request of the same customer or merchant, in any API process,
            waits for it (read-your-writes, :mod:`serving.stream`). ``async`` folds a scored
            transaction into the online state on a background thread right after scoring, and a
            later request of the same customer or merchant waits for it (read-your-writes
            inside one worker); ``sync`` ingests inside the request (read-your-writes across
            several workers).
        serving_ingest_wait_seconds: Longest wait of a request for a pending ingestion.
        serving_ingest_queue_size: Bound of the ingestion queue; when full, ingest inline.
        serving_model_poll_seconds: How often the registry alias is checked for a new version
            (and the longest pause between load attempts while no model is loaded).
        serving_registry_timeout_seconds: MLflow HTTP timeout in the API
            (``MLFLOW_HTTP_REQUEST_TIMEOUT`` unless that is set).
        serving_registry_retries: MLflow HTTP retries in the API
            (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` unless that is set).
        serving_redis_timeout_seconds: The API's Redis connect and per-command timeout; bounds
            how long a request can wait on an unreachable or hung Redis before its 503.
        serving_threads: Threads that run the scoring requests (blocking Redis and log I/O),
            off the event loop.
        serving_switch_interval_ms: How long a thread may hold the GIL while another waits
            for it (``sys.setswitchinterval``; Python's default is 5 ms). The API's threads
            (event loop, scoring pool, ingestion, log) take turns at this interval when none
            waits on I/O, so it bounds how long a request can wait behind the ingestion thread.
        prediction_log_rotate_rows: Rows per prediction-log segment at most.
        serving_log_rotate_seconds: A prediction-log segment is sealed (compacted to Parquet)
            at least this often.
        serving_log_fsync_seconds: Longest time a logged prediction stays without fsync (the
            most a machine crash can lose; a killed process loses nothing).
        feature_profile: ``duckdb`` (default) or ``spark`` (``FEATURE_PROFILE``): the one switch
            of the offline side. It picks the Feast configuration (:data:`FEATURE_STORE_YAML`:
            the offline store), the type of the views' batch sources (``FileSource`` or
            ``SparkSource``) and the engine of ``fraud features build``. Online store, feature
            definitions and values are the same in both.
        spark_master: ``spark.master`` of the Spark profile (``SPARK_MASTER``): ``local[2]`` by
            default; e.g. ``spark://host:7077``, ``yarn`` or ``k8s://...`` for a cluster.
        spark_shuffle_partitions: ``spark.sql.shuffle.partitions`` of the Spark profile; 2 suits
            ``local[2]``, a cluster wants a few per executor core.
        spark_driver_memory: ``spark.driver.memory`` of the Spark profile (``4g``): in local mode
            the driver's JVM runs the tasks too (Spark's default 1g runs out of heap on the
            long-history profile).
        spark_driver_max_result_size: ``spark.driver.maxResultSize`` of the Spark profile
            (``1g``, Spark's default; ``0`` is no limit): the most a job's results may weigh on
            their way to the driver (a retrieval's rows come back as Arrow). It must fit in
            ``spark_driver_memory``.
        spark_tables_uri: Where the Spark profile's offline tables live, e.g.
            ``s3a://bucket/fraud/features``; the root's ``data/features`` by default.
        prometheus_url: The Prometheus that scrapes the API and the ops service
            (``PROMETHEUS_URL``, e.g. ``http://127.0.0.1:9090``); ``fraud ops run`` checks at
            start that it answers. Empty: no check.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", protected_namespaces=())

    project_root: Path = PROJECT_ROOT
    redis_mode: RedisMode = "single"
    redis_url: str = Field(default="", validate_default=True)
    mlflow_tracking_uri: str = ""
    model_name: str = "fraud-detector"
    model_alias: str = "production"
    api_keys: str = ""
    prediction_log_rotate_rows: int = Field(default=50_000, gt=0)
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    serving_feature_path: Literal["direct", "feast"] = "feast"
    serving_ingest_mode: Literal["stream", "async", "sync"] = "stream"
    serving_ingest_wait_seconds: float = Field(default=2.0, gt=0)
    serving_ingest_queue_size: int = Field(default=10_000, gt=0)
    serving_model_poll_seconds: float = Field(default=30.0, gt=0)
    serving_registry_timeout_seconds: int = Field(default=5, gt=0)
    serving_registry_retries: int = Field(default=1, ge=0)
    serving_redis_timeout_seconds: float = Field(default=0.2, gt=0)
    serving_threads: int = Field(default=4, gt=0, le=256)
    serving_switch_interval_ms: float = Field(default=5.0, gt=0, le=1000)
    serving_log_rotate_seconds: float = Field(default=300.0, gt=0)
    serving_log_fsync_seconds: float = Field(default=1.0, gt=0)
    feature_profile: FeatureProfile = "duckdb"
    spark_master: str = Field(default="local[2]", min_length=1)
    spark_shuffle_partitions: int = Field(default=2, gt=0)
    spark_driver_memory: str = Field(default="4g", pattern=r"^[0-9]+[kmgt]?$")
    spark_driver_max_result_size: str = Field(default="1g", pattern=r"^[0-9]+[kmgt]?$")
    spark_tables_uri: str = ""
    prometheus_url: str = ""

    @model_validator(mode="after")
    def _default_redis_url(self) -> Settings:
        # The local server's (or cluster's) recorded URL, looked up under this root's mode.
        if not self.redis_url:
            self.redis_url = _local_redis_url(PROJECT_ROOT, self.redis_mode)
        return self

    @property
    def paths(self) -> Paths:
        """The paths table for this root."""
        return Paths(root=self.project_root)

    @property
    def offline_tables_location(self) -> str:
        """Folder or URI of the offline tables the views read.

        ``spark_tables_uri`` in the Spark profile when set, else the root's ``data/features``.
        """
        if self.feature_profile == "spark" and self.spark_tables_uri:
            return self.spark_tables_uri.rstrip("/")
        return str(self.paths.features_dir)

    def offline_table(self, name: str) -> str:
        """Where the profile's build writes one offline table and its batch source reads it.

        :func:`table_location` under :attr:`offline_tables_location`: the root's
        ``data/features/<name>.parquet``, or ``<spark_tables_uri>/<name>.parquet`` on the Spark
        profile with a tables URI.
        """
        return table_location(self.offline_tables_location, name)

    def local_offline_table(self, name: str) -> Path | None:
        """:meth:`offline_table` as a local path, or ``None`` when only Spark reaches it."""
        return local_path(self.offline_table(name))

    @property
    def profile_line(self) -> str:
        """The one line a ``fraud`` command prints to say which profile it runs.

        ``profile: duckdb``, or ``profile: spark (local[2])`` with the Spark master (and the
        tables' URI when they live elsewhere than the root).
        """
        if self.feature_profile != "spark":
            return f"profile: {self.feature_profile}"
        where = f", tables {self.spark_tables_uri}" if self.spark_tables_uri else ""
        return f"profile: spark ({self.spark_master}{where})"

    @property
    def feature_store_yaml(self) -> Path:
        """The Feast configuration file of the profile (:data:`FEATURE_STORE_YAML`)."""
        return self.paths.feature_repo / FEATURE_STORE_YAML[self.feature_profile]

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the environment's, else a SQLite file in the project root."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.project_root / 'mlflow.db'}"

    @property
    def model_uri(self) -> str:
        """``models:/<name>@<alias>``: the model training promotes and the API serves."""
        return f"models:/{self.model_name}@{self.model_alias}"

    @property
    def redis_connection_string(self) -> str:
        """``redis_url`` in the form Feast's Redis store takes for ``redis_mode``.

        ``host:port,db=N[,password=...]`` for one server; ``host:port,host:port,...`` (startup
        nodes, no ``db``: cluster nodes refuse ``SELECT``) for a cluster.
        """
        if self.redis_mode == "cluster":
            return redis_cluster_url_to_feast(self.redis_url)
        return redis_url_to_feast(self.redis_url)

    @property
    def feast_redis_type(self) -> str:
        """Feast's ``online_store.redis_type`` for ``redis_mode``."""
        return "redis_cluster" if self.redis_mode == "cluster" else "redis"

    @property
    def api_key_list(self) -> list[str]:
        """Configured API keys, stripped, empty ones dropped."""
        return [key.strip() for key in self.api_keys.split(",") if key.strip()]


def redis_url_to_feast(url: str) -> str:
    """Turn ``redis://[:password@]host:port/db`` into Feast's ``host:port,db=N`` string.

    Args:
        url: A ``redis://`` URL.

    Returns:
        The connection string Feast's Redis online store expects.

    Raises:
        ValueError: If the URL is not a ``redis://`` URL with a host.
    """
    parsed = urlparse(url)
    if parsed.scheme not in {"redis", "rediss"} or not parsed.hostname:
        raise ValueError(f"REDIS_URL must look like redis://host:port/db, got {url!r}")
    db = (parsed.path or "/0").lstrip("/") or "0"
    parts = [f"{parsed.hostname}:{parsed.port or 6379}", f"db={db}"]
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def redis_cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """The startup nodes and options of a cluster URL ``redis://[:pw@]host:port[,host:port]``.

    Args:
        url: A ``redis://`` (or ``rediss://``) URL listing one or more nodes, comma-separated.

    Returns:
        ``[(host, port), ...]`` and the options (``password``, ``ssl``) found in the URL.

    Raises:
        ValueError: If the URL is not of that form, or names a database other than 0.
    """
    scheme, sep, rest = url.partition("://")
    if scheme not in {"redis", "rediss"} or not sep or not rest:
        raise ValueError(f"REDIS_URL must look like redis://host:port[,host:port...], got {url!r}")
    rest, _, path = rest.partition("/")
    if path.strip("/") not in {"", "0"}:
        raise ValueError(f"REDIS_URL: a Redis Cluster has only database 0, got {url!r}")
    options: dict[str, str] = {}
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        password = credentials.partition(":")[2]
        if password:
            options["password"] = password
    if scheme == "rediss":
        options["ssl"] = "true"
    nodes = []
    for node in rest.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"REDIS_URL: {node!r} is not host:port (in {url!r})")
        nodes.append((host, int(port)))
    return nodes, options


def redis_cluster_url_to_feast(url: str) -> str:
    """Turn a cluster URL into Feast's ``host:port,host:port[,password=...]`` string.

    Feast's ``RedisOnlineStore._parse_connection_string`` reads every item without ``=`` as a
    startup node and every ``key=value`` as a ``RedisCluster`` keyword argument.
    """
    nodes, options = redis_cluster_nodes(url)
    return ",".join([*(f"{h}:{p}" for h, p in nodes), *(f"{k}={v}" for k, v in options.items())])


LOCAL_REDIS_URL_FILE = ".run/redis/url"
LOCAL_CLUSTER_URL_FILE = ".run/redis-cluster/url"


def _local_redis_url(root: Path, mode: str = "single") -> str:
    """URL of the Redis that ``fraud redis start [--cluster]`` started, else a default port."""
    url_file = root / (LOCAL_CLUSTER_URL_FILE if mode == "cluster" else LOCAL_REDIS_URL_FILE)
    if url_file.exists():
        return url_file.read_text().strip()
    return "redis://127.0.0.1:7000" if mode == "cluster" else "redis://127.0.0.1:6379/0"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings object (read once)."""
    return Settings()


def feast_environment(settings: Settings | None = None) -> dict[str, str]:
    """Environment variables ``feature_repo/feature_store.yaml`` reads.

    Args:
        settings: Settings to derive them from; the process settings by default.

    Returns:
        ``REDIS_TYPE``, ``REDIS_CONNECTION_STRING`` and ``FEAST_REGISTRY_PATH`` for Feast, plus
        ``PROJECT_ROOT`` so that ``feast apply`` finds the offline tables under the same root
        (``feature_repo/definitions.py``), and the profile: ``FEATURE_PROFILE`` (and the Spark
        settings) for the definitions, ``FEAST_FS_YAML_FILE_PATH`` for the Feast CLI. Passed to
        the Feast CLI's process (``run_feast_cli``) and filled into the YAML by
        ``open_store``; never put into this process's ``os.environ``.
    """
    settings = settings or get_settings()
    return {
        "REDIS_TYPE": settings.feast_redis_type,
        "REDIS_CONNECTION_STRING": settings.redis_connection_string,
        "FEAST_REGISTRY_PATH": str(settings.paths.registry),
        "PROJECT_ROOT": str(settings.project_root),
        # The profile: which YAML the Feast CLI reads, which sources `feast apply` registers.
        "FEATURE_PROFILE": settings.feature_profile,
        "FEAST_FS_YAML_FILE_PATH": str(settings.feature_store_yaml),
        "SPARK_MASTER": settings.spark_master,
        "SPARK_SHUFFLE_PARTITIONS": str(settings.spark_shuffle_partitions),
        "SPARK_DRIVER_MEMORY": settings.spark_driver_memory,
        "SPARK_DRIVER_MAX_RESULT_SIZE": settings.spark_driver_max_result_size,
        "SPARK_TABLES_URI": settings.spark_tables_uri,
    }


# --------------------------------------------------------------------------- params.yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerateParams(_Strict):
    """Sizes and fraud rates of the synthetic data set."""

    n_customers: int = Field(gt=0)
    n_merchants: int = Field(gt=0)
    days: int = Field(gt=0)
    start_date: str
    warmup_days: int = Field(ge=0)
    new_card_share: float = Field(ge=0, le=1)
    txns_per_customer_per_day: float = Field(gt=0)
    new_account_fraud_rate: float = Field(ge=0, le=1)
    card_testing_rate: float = Field(ge=0, le=1)
    account_takeover_rate: float = Field(ge=0, le=1)
    compromised_merchant_rate: float = Field(ge=0, le=1)
    compromised_merchant_fraud_share: float = Field(ge=0, le=1)
    # ordinary: a share of a breached merchant's ordinary rows are labelled fraud; cash_out:
    # as many stolen cards run through it (data/generate.py's docstring says which is which).
    compromised_merchant_style: Literal["ordinary", "cash_out"] = "ordinary"
    chargeback_delay_days_min: float = Field(gt=0)
    chargeback_delay_days_max: float = Field(gt=0)
    legit_label_delay_days: float = Field(gt=0)

    @model_validator(mode="after")
    def _delays_ordered(self) -> GenerateParams:
        if self.chargeback_delay_days_max < self.chargeback_delay_days_min:
            raise ValueError("chargeback_delay_days_max must be >= chargeback_delay_days_min")
        return self


class ImportParams(_Strict):
    """Settings of the real-data importer."""

    chargeback_delay_days: float = Field(gt=0)


class FeatureParams(_Strict):
    """Lateness and distinct-value cap of the per-entity velocity state (feature_engine.state).

    The lateness is at least 5 minutes: the raw region starts on a 5-minute tile, and the
    offline state has one row per 5-minute tile with events.
    """

    distinct_values_cap: int = Field(gt=0, le=100_000)
    max_lateness_seconds: int = Field(ge=300, le=86_400)


ModelKind = Literal["logistic_regression", "lightgbm"]
"""A model family training can fit (``train.models``); each has its section in ``train``."""
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)


class LogisticRegressionParams(_Strict):
    """The interpretable baseline: a class-balanced logistic regression on standardised inputs."""

    C: float = Field(gt=0)
    max_iter: int = Field(gt=0)


class LightGBMParams(_Strict):
    """The gradient-boosted trees (LightGBM); names are LightGBM's own."""

    n_estimators: int = Field(gt=0, le=10_000)
    learning_rate: float = Field(gt=0, le=1)
    num_leaves: int = Field(ge=2, le=4096)
    min_child_samples: int = Field(ge=1)
    subsample: float = Field(default=1.0, gt=0, le=1)  # share of rows per tree (bagging)
    colsample_bytree: float = Field(default=1.0, gt=0, le=1)  # share of features per tree
    reg_lambda: float = Field(default=0.0, ge=0)
    # Features the score may only rise with, the others fixed (LightGBM's monotone
    # constraints): domain rules the data alone does not guarantee a tree learns.
    monotone_increasing: tuple[str, ...] = ()


ThresholdRule = Literal["alert_budget", "target_recall", "min_precision", "best_f1"]
"""How training sets a model's decision threshold (``train.threshold_rule``)."""
THRESHOLD_RULES: tuple[str, ...] = get_args(ThresholdRule)
ReviewRule = Literal["alert_budget", "min_precision"]
"""How training sets the lower, REVIEW threshold (``train.review_rule``)."""
FoldSplit = Literal["by_card", "by_transaction"]
"""How cross-validation splits the training part into folds (``train.folds``)."""


class TrainParams(_Strict):
    """Models, cross-validation, calibration, the operations threshold rule, drift reference.

    The registered model's name and alias are not here: they are settings (``MODEL_NAME``,
    ``MODEL_ALIAS``), read by training and by the API alike.

    Attributes:
        models: The families to train, in order (:data:`MODEL_KINDS`); all are registered,
            the best holdout PR-AUC is the run's challenger for the alias.
        calibration: ``platt`` (a logistic curve on the raw log-odds: keeps the ranking) or
            ``isotonic`` (a monotone step function), fitted on the out-of-fold scores.
        threshold_rule: The operating point (:data:`THRESHOLD_RULES`), chosen on the
            calibrated out-of-fold probabilities: ``alert_budget`` (the most alerts within
            ``alert_budget_per_1000`` per 1,000 transactions: what a review team can work),
            ``target_recall`` (the highest threshold still catching ``target_recall`` of the
            fraud), ``min_precision`` (the lowest threshold whose precision reaches
            ``min_precision``) or ``best_f1``. A rule no threshold meets fails training,
            naming the best value reachable, unless ``threshold_fallback`` names a rule to use
            instead (logged on the run).
        threshold_fallback: The rule used when ``threshold_rule`` cannot be met; ``None``
            (the default) makes an unmet rule an error.
        folds: ``by_card`` (the default: ``StratifiedGroupKFold`` grouped by card, a card's
            rows never in two folds, so out-of-fold scores are those of cards the model never
            saw) or ``by_transaction`` (``StratifiedKFold`` over rows: a card's rows in train
            and validation folds, optimistic out of fold; kept to measure the difference).
        review_rule: The second, lower threshold: a probability at or above it and below the
            FRAUD threshold is ``REVIEW`` (queued for an analyst). ``alert_budget`` (the
            analysts' queue: at most ``review_budget_per_1000`` REVIEW alerts per 1,000
            transactions, the blocked FRAUD ones not counted), ``min_precision`` (the lowest
            threshold at which FRAUD and REVIEW alerts together are still
            ``review_min_precision`` fraud), or ``None`` (no REVIEW band). Chosen on the same
            out-of-fold probabilities; a rule that cannot be met, or a precision the FRAUD
            alerts alone fall short of, fails training.
        review_cost_per_alert: What reviewing one alert costs, in the amount's currency: the
            cost-weighted metric is the fraud amount the alerts catch minus this per alert.
        feature_service: The Feast feature service the model is trained on (and, recorded on
            the model version, the one the API serves it with).
    """

    experiment: str = Field(min_length=1)
    k_folds: int = Field(ge=2, le=20)
    holdout_fraction: float = Field(gt=0, lt=1)
    models: tuple[ModelKind, ...] = Field(min_length=1)
    logistic_regression: LogisticRegressionParams
    lightgbm: LightGBMParams
    calibration: Literal["platt", "isotonic"] = "platt"
    threshold_rule: ThresholdRule
    min_precision: float = Field(gt=0, le=1)
    alert_budget_per_1000: float = Field(gt=0, le=1000)
    target_recall: float = Field(default=0.8, gt=0, le=1)
    threshold_fallback: ThresholdRule | None = None
    folds: FoldSplit = "by_card"
    review_rule: ReviewRule | None = None
    review_budget_per_1000: float = Field(default=10.0, gt=0, le=1000)
    review_min_precision: float = Field(default=0.2, gt=0, le=1)
    review_cost_per_alert: float = Field(default=5.0, ge=0)
    reference_sample_size: int = Field(gt=0)
    reference_warmup_days: float = Field(default=0.0, ge=0)
    feature_service: str = Field(default="fraud_scoring_v1", min_length=1)

    @field_validator("models")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"each model at most once, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _fallback_differs(self) -> TrainParams:
        if self.threshold_fallback == self.threshold_rule:
            raise ValueError(
                f"train.threshold_fallback: {self.threshold_fallback!r} is the rule itself"
            )
        return self


class MonitorParams(_Strict):
    """Drift thresholds."""

    ks_p_value: float = Field(gt=0, lt=1)
    drift_share: float = Field(gt=0, le=1)
    min_rows: int = Field(gt=0)
    consistency_max_mismatch_rate: float = Field(ge=0, le=1)


class OpsSchedule(_Strict):
    """How often each job of the ops service (``fraud ops run``) starts, in seconds."""

    labels: float = Field(default=60.0, gt=0)
    drift: float = Field(default=300.0, gt=0)
    consistency: float = Field(default=900.0, gt=0)
    freshness: float = Field(default=15.0, gt=0)


class OpsParams(_Strict):
    """The scheduled jobs of the ops service (``fraud ops run``).

    Attributes:
        every_seconds: The period of each job (labels, drift, consistency, freshness).
        drift_window_rows: The drift job compares the latest this many logged predictions.
        consistency_window_rows: The consistency job recomputes the latest this many.
        retries: A failed run is tried again this many times before it counts as failed.
        retry_backoff_seconds: Pause before the first retry (doubled before each next one).
        log_mlflow: Also log each drift and consistency run to MLflow (the Evidently workspace
            and the metrics keep the history either way).
    """

    every_seconds: OpsSchedule = Field(default_factory=OpsSchedule)
    drift_window_rows: int = Field(default=2000, gt=0)
    consistency_window_rows: int = Field(default=300, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    retry_backoff_seconds: float = Field(default=5.0, ge=0, le=3600)
    log_mlflow: bool = False


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ServeParams(_Strict):
    """API limits.

    Attributes:
        batch_limit: Transactions per ``/predict/batch`` call at most.
        max_future_skew_seconds: A transaction dated later than now plus this is refused (422):
            one far-future event would sit in its card's and merchant's state until that date.
        min_timestamp: The oldest transaction time accepted (422 before it); the epoch by
            default, so that replays and backfills of old data still work.
    """

    batch_limit: int = Field(gt=0, le=10_000)
    max_future_skew_seconds: float = Field(default=300.0, ge=0, le=366 * 86_400)
    min_timestamp: datetime = EPOCH

    @field_validator("min_timestamp")
    @classmethod
    def _utc_after_epoch(cls, value: datetime) -> datetime:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if value < EPOCH:
            raise ValueError("must be at or after 1970-01-01T00:00:00Z (state times are >= 0)")
        return value


DEFAULT_PROFILE = "default"
"""The data profile ``params.yaml``'s ``generate`` section describes as is."""


class Params(_Strict):
    """The whole of ``params.yaml``.

    Attributes:
        profiles: Named data profiles (``fraud data generate --profile NAME``): each holds only
            the ``generate`` keys it changes; :meth:`generate_profile` merges them.
    """

    seed: int
    generate: GenerateParams
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    import_: ImportParams = Field(alias="import")
    features: FeatureParams
    train: TrainParams
    monitor: MonitorParams
    serve: ServeParams
    ops: OpsParams = Field(default_factory=OpsParams)

    @model_validator(mode="after")
    def _profiles_valid(self) -> Params:
        if DEFAULT_PROFILE in self.profiles:
            raise ValueError(f"profiles.{DEFAULT_PROFILE}: reserved for the generate section")
        for name in self.profiles:
            self.generate_profile(name)  # a bad key or value fails here, naming the profile
        return self

    def generate_profile(self, name: str | None = None) -> GenerateParams:
        """The generator parameters of a data profile.

        Args:
            name: A key of ``profiles``; ``None`` or ``"default"`` for ``generate`` itself.

        Returns:
            ``generate`` with the profile's keys replaced, validated.

        Raises:
            ValueError: If the profile is unknown or one of its values is invalid (the
                message names ``profiles.<name>.<key>``).
        """
        if name is None or name == DEFAULT_PROFILE:
            return self.generate
        if name not in self.profiles:
            known = ", ".join([DEFAULT_PROFILE, *sorted(self.profiles)])
            raise ValueError(f"unknown data profile {name!r}; known profiles: {known}")
        try:
            return GenerateParams.model_validate(
                {**self.generate.model_dump(), **self.profiles[name]}
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"profiles.{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors()
            )
            raise ValueError(problems) from None


class ParamsError(ValueError):
    """``params.yaml`` is missing, unreadable or has a bad value; the message names the key."""


def load_params(path: Path | None = None) -> Params:
    """Read and validate ``params.yaml``.

    Args:
        path: The file to read; the project's ``params.yaml`` by default.

    Returns:
        The validated parameters.

    Raises:
        ParamsError: Naming the file and the offending key when anything is wrong.
    """
    path = path or get_settings().paths.params_file
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"{path}: cannot read parameters: {exc}") from exc
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ParamsError(f"{path}: {problems}") from exc
