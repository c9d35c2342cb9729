"""The API's connection to Redis: short timeouts, and a guard that fails fast during an outage.

Why. Feast's Redis client retries a refused connection with exponential backoff (seconds) and
has no socket timeouts; a request that meets a dead Redis then hangs for seconds before its 503
and holds a worker thread all that time. The API therefore gives Feast's online store a client of
its own (:func:`install_fast_client`, through :mod:`feature_repo.redis_layout`, the one module
that touches Feast's Redis internals), shared by the feature readers and the state writer:
``SERVING_REDIS_TIMEOUT_SECONDS`` (0.2 s) to connect and per command, and one immediate retry
on a broken connection only (after a Redis restart every pooled connection is dead once).

:class:`OnlineStoreGuard` remembers that the store failed. While it is down, requests are
answered 503 at once, without touching Redis; a background probe PINGs it every
:data:`PROBE_DOWN_SECONDS` and lets traffic through again as soon as it answers. While it is up,
the probe PINGs every :data:`PROBE_UP_SECONDS`, so ``/ready`` notices an outage even without
traffic. ``/ready`` and ``/health`` read the guard's state and never do I/O themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from feature_repo import redis_layout

if TYPE_CHECKING:
    from feast import FeatureStore

logger = logging.getLogger(__name__)

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
PROBE_DOWN_SECONDS = 0.25  # while down: recovery is seen within this (plus one PING)
PROBE_UP_SECONDS = 1.0  # while up: an outage without traffic is seen within this


def install_fast_client(store: FeatureStore, timeout: float) -> redis.Redis:
    """Give Feast's Redis online store a client with short timeouts; return it.

    The same server, database and password as Feast's own (``connection_string``); every Feast
    read (``get_online_features``) and every direct read or write of the API then uses it.

    Args:
        store: The open feature store.
        timeout: Seconds to connect, and to wait for any one reply.
    """
    feast_client = redis_layout.feast_client(store)
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
