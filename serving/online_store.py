"""The API's connection to Redis: short timeouts, and a guard that fails fast during an outage.

Why. Feast's Redis client retries a refused connection with exponential backoff (seconds) and
has no socket timeouts; a request that meets a dead Redis then hangs for seconds before its 503
and holds a worker thread all that time. The API therefore gives Feast's online store a client of
its own (:func:`install_fast_client`, through :mod:`feature_engine.online.redis_layout`, the one
module that touches Feast's Redis internals), shared by the feature readers and the state writer:
``SERVING_REDIS_TIMEOUT_SECONDS`` (0.2 s) to connect and per command, and one immediate retry on a
broken connection only (after a Redis restart every pooled connection is dead once).

:class:`OnlineStoreGuard` remembers that the store failed. While it is down, requests are
answered 503 at once, without touching Redis; a background probe PINGs it every
:data:`PROBE_DOWN_SECONDS` and lets traffic through again as soon as it answers. While it is up,
the probe PINGs every :data:`PROBE_UP_SECONDS`, so ``/ready`` notices an outage even without
traffic. ``/ready`` and ``/health`` read the guard's state and never do I/O themselves.

Redis Cluster (``REDIS_MODE=cluster``). The client is a redis-py ``RedisCluster`` with the same
timeouts. When a master dies, commands on its slots fail with a connection error, and redis-py
rebuilds its slot map from the other nodes right then; once the master's replica has taken
over (after ``cluster-node-timeout``), the rebuilt map sends those slots to it. Meanwhile the
cluster may refuse keyed commands (``CLUSTERDOWN``) or redis-py may find no owner for a slot:
those count as an outage too (:data:`REDIS_ERRORS`, answered 503). The guard's probe then asks
every master for ``CLUSTER INFO`` and lets traffic through only when all answer
``cluster_state:ok`` (:func:`probe_cluster`); a PING alone would answer during ``CLUSTERDOWN``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from feature_engine.online import redis_layout

if TYPE_CHECKING:
    from feast import FeatureStore

logger = logging.getLogger(__name__)

REDIS_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    # Redis Cluster during a failover: the cluster refuses keyed commands (CLUSTERDOWN, a
    # master down), asks to retry (TRYAGAIN), or redis-py finds no node for a slot or cannot
    # rebuild its slot map (SlotNotCoveredError, "cannot be connected": RedisClusterException,
    # which is also what a cross-slot transaction, a bug, raises; the cluster tests would see
    # that as a 503 where it should never happen).
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,
)
PROBE_DOWN_SECONDS = 0.25  # while down: recovery is seen within this (plus one PING)
PROBE_UP_SECONDS = 1.0  # while up: an outage without traffic is seen within this


def install_fast_client(store: FeatureStore, timeout: float) -> redis.Redis | RedisCluster:
    """Give Feast's Redis online store a client with short timeouts; return it.

    The same server, database and password as Feast's own (``connection_string``), or the same
    cluster nodes; every Feast read (``get_online_features``) and every direct read or write of
    the API then uses it.

    Args:
        store: The open feature store.
        timeout: Seconds to connect, and to wait for any one reply.
    """
    feast_client = redis_layout.feast_client(store)
    if redis_layout.is_cluster(feast_client):
        cluster = _fast_cluster_client(feast_client, timeout)
        redis_layout.use_client(store, cluster)
        return cluster
    kwargs = dict(feast_client.connection_pool.connection_kwargs)
    kwargs.pop("retry", None)
    kwargs.update(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One immediate retry on a broken connection (a pooled socket Redis closed when it
        # restarted); none on a timeout, whose command may have run and would only wait again.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
    )
    client = redis.Redis(**kwargs)
    redis_layout.use_client(store, client)  # Feast hands out this one from now on
    return client


def _fast_cluster_client(feast_client: RedisCluster, timeout: float) -> RedisCluster:
    """A ``RedisCluster`` on Feast's startup nodes and options, with short timeouts.

    ``retry``: one more attempt after a connection error, on the slot map redis-py has just
    rebuilt, and no backoff (redis-py's default sleeps up to seconds between attempts).
    """
    options = {
        key: value
        for key, value in feast_client.nodes_manager.connection_kwargs.items()
        if key not in {"redis_connect_func", "retry", "host", "port"}
    }
    nodes = feast_client.nodes_manager.startup_nodes.values()  # Feast's, plus those discovered
    return RedisCluster(
        startup_nodes=[ClusterNode(n.host, n.port) for n in nodes],
        retry=Retry(NoBackoff(), 1),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        **options,
    )


def probe_cluster(client: RedisCluster) -> None:
    """Raise one of :data:`REDIS_ERRORS` unless every master answers ``cluster_state:ok``.

    A master that does not answer makes redis-py rebuild its slot map (from the other nodes),
    so the next probe already asks the replica that took over.
    """
    for node in client.get_primaries():
        info = client.cluster_info(target_nodes=node)
        state = info.get("cluster_state") if isinstance(info, dict) else None
        if state != "ok":
            raise redis.exceptions.ClusterDownError(f"{node.name}: cluster_state:{state}")


def make_probe(client: redis.Redis | RedisCluster) -> Callable[[], object]:
    """The guard's health check for a client: PING one server, or :func:`probe_cluster`."""
    if isinstance(client, RedisCluster):
        return lambda: probe_cluster(client)
    return client.ping


class OnlineStoreGuard:
    """Up/down state of the online store, fed by requests and by a background PING."""

    def __init__(
        self,
        ping: Callable[[], object],
        on_change: Callable[[bool], None] = lambda up: None,
        probe_down_seconds: float = PROBE_DOWN_SECONDS,
        probe_up_seconds: float = PROBE_UP_SECONDS,
    ) -> None:
        """Set up (assumed up); call :meth:`start` to run the probe.

        Args:
            ping: Raises one of :data:`REDIS_ERRORS` when the store does not answer.
            on_change: Called with the new state on every transition (from any thread).
            probe_down_seconds: PING interval while down.
            probe_up_seconds: PING interval while up.
        """
        self._ping = ping
        self.on_change = on_change
        self._probe_down = probe_down_seconds
        self._probe_up = probe_up_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.up = True
        self.last_error: str | None = None
        self.down_since: float | None = None  # time.monotonic()

    @property
    def reason(self) -> str:
        """Why the store counts as down (empty when up)."""
        if self.up:
            return ""
        down_for = time.monotonic() - (self.down_since or time.monotonic())
        return f"online store unreachable for {down_for:.1f} s: {self.last_error}"

    def failed(self, exc: BaseException) -> None:
        """A request or the probe met an error of :data:`REDIS_ERRORS`: mark the store down."""
        with self._lock:
            self.last_error = f"{type(exc).__name__}: {exc}"
            if not self.up:
                return
            self.up = False
            self.down_since = time.monotonic()
        logger.warning("online store down: %s", self.last_error)
        self._wake.set()  # probe at the short interval from now on
        self.on_change(False)

    def _recovered(self) -> None:
        with self._lock:
            if self.up:
                return
            self.up = True
            down_for = time.monotonic() - (self.down_since or time.monotonic())
            self.down_since = None
        logger.warning("online store back after %.1f s", down_for)
        self.on_change(True)

    def probe(self) -> bool:
        """PING now; update the state. Returns whether the store answered."""
        try:
            self._ping()
        except REDIS_ERRORS as exc:
            self.failed(exc)
            return False
        self._recovered()
        return True

    def start(self) -> None:
        """Start the background probe."""
        self._thread = threading.Thread(target=self._run, name="online-store-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._probe_up if self.up else self._probe_down)
            self._wake.clear()
            if not self._stop.is_set():
                self.probe()

    def stop(self) -> None:
        """Stop the probe."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
