"""Ingestion through a Redis Stream: the request appends, a separate worker process folds.

Why. Folding a transaction into the online state (two round trips, the merge, Feast's protobuf
encoding) costs more of the API's CPU than the feature read; in the request process it shares
the GIL with every request. In ``SERVING_INGEST_MODE=stream`` (the default) the request does
one append instead: ``XADD`` of the scored transaction to the stream ``<project>:ingest:txn``,
pipelined with one marker per entity (below), before the answer. ``fraud serve ingest-worker``
reads the stream in the consumer group ``fold`` (``XREADGROUP``), folds the entries with the
compare-and-set script of :class:`~feature_engine.online.writer.OnlineStateWriter`, and only
then removes the markers and acknowledges (``XACK`` + ``XDEL``: a folded entry leaves the
stream).

Durable files. The request still appends the transaction to the transactions journal
(``data/ingested``) before it answers, as in the other modes: the stream lives in Redis and
dies with it, the journal does not, so ``fraud features rebuild-online`` (raw data plus the
journal) rebuilds every answered transaction even when Redis lost the stream's unfolded tail.

At most once. An entry is acknowledged only after its fold went through. A worker killed in
between leaves its entries pending in the group; when it starts again (same consumer name) it
reads its own pending entries first, and any worker claims, with ``XAUTOCLAIM``, entries another
consumer left pending longer than ``claim_idle_ms``. A reclaimed entry whose fold had gone
through before the crash is not folded again: the fold recognises a transaction already in the
state by its id (raw region) or by its seen-key (tiles), as for any retry.

Read-your-writes. A card's next transaction must see the previous one, whichever API process
answers it. With each ``XADD`` the request adds the transaction's id to a pending set per
entity (``{<slot tag>}ingest:pending:<entity key>``, in the entity's cluster slot, expiring);
the worker removes it after the fold. Before its feature read, a request asks (one pipelined
round trip of ``EXISTS``) whether its card or merchant has a pending set, and only then
waits, boundedly (``SERVING_INGEST_WAIT_SECONDS``), polling, for it to go. The other design,
the request waiting for its own entry's fold before answering, would add the whole fold lag
(see ``benchmarks/bench_stream.py``) to every request; this costs one round trip when nothing is
pending, the usual case, and a wait only for a card that came back within the lag.

A worker that is not consuming. Every worker beats (``ZADD`` of its name at Redis' own clock
to ``<project>:ingest:workers``) at least every :data:`HEARTBEAT_SECONDS` while its loop turns;
one whose last beat is older than :data:`ALIVE_SECONDS` is not consuming (dead, hung, or cut off
from Redis). The API asks once a second, on a thread of its own (not per request), how many beat
recently: ``/ready`` warns, ``fraud_api_ingestion_workers_alive`` says it (alert
``FraudIngestWorkerDown``), and while none is alive a request of a card with pending entries does
not wait for a fold that will not come: it is scored on the state as it is at once, without
those transactions, and counted (``fraud_api_ingestion_unwaited_reads_total``). A worker that
stops cleanly removes its name.

Outages: a request never waits on a dead Redis (the guard answers 503 at once; a wait for a
pending entity gives up as soon as the guard learns the store is down); the worker retries
until Redis answers again, its unacknowledged entries stay pending meanwhile. Its client has
short timeouts and no backoff (:data:`WORKER_TIMEOUT_SECONDS`: redis-py's default retries
sleep seconds between attempts), so a SIGTERM stops it within about that bound even while
Redis is gone.

Its life. ``fraud serve api`` starts the worker with ``--parent-pid`` (its own pid), and the
worker's loop, which turns at least every ``block_ms`` (or ``retry_seconds`` while Redis is
gone), stops once ``os.getppid()`` is no longer that pid (it was reparented: the parent died,
SIGKILLed or not), after the batch in hand. A SIGKILLed API leaves no orphan behind it. (Not
Linux's ``PR_SET_PDEATHSIG``: it fires when the parent *thread* that started the worker ends,
which a supervisor starting it from a short-lived thread would see as a stop.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from feature_engine.online.redis_layout import colocated_key, run_commands
from feature_engine.state.fold import Transaction

if TYPE_CHECKING:
    from feature_engine.online.writer import OnlineStateWriter

logger = logging.getLogger(__name__)

GROUP = b"fold"
LAGS_KEPT = 100_000  # entries whose lag a worker keeps (its report's percentiles)
PENDING_SECONDS = 600  # a pending set left by a request that died before its XADD expires
WORKER_TIMEOUT_SECONDS = 2.0  # the worker's connect and reply timeout (its stop's bound)
HEARTBEAT_SECONDS = 1.0  # a consuming worker beats at least this often
ALIVE_SECONDS = 5.0  # a worker whose last beat is older is not consuming
WATCH_SECONDS = 1.0  # the API's check of the workers' beats
_DAY_MS = 86_400_000  # beats of workers gone this long are dropped

# Beats on Redis' clock (TIME), so that hosts with skewed clocks agree on a beat's age.
_BEAT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return now
"""
# -> {workers beating within ARGV[1] ms, ms since the latest beat (-1: never)}
_LIVENESS = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local alive = redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf')
local last = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if last[2] == nil then return {alive, -1} end
return {alive, now - tonumber(last[2])}
"""
_FIELDS = (b"id", b"c", b"m", b"ts", b"amt", b"lat", b"lon", b"at")


def stream_key(project: str) -> bytes:
    """The stream of scored transactions of a Feast project."""
    return f"{project}:ingest:txn".encode()


def workers_key(project: str) -> bytes:
    """The sorted set of the ingestion workers' latest beats (ms, Redis' clock)."""
    return f"{project}:ingest:workers".encode()


def pending_key(state_key: bytes) -> bytes:
    """The set of one entity's transactions appended but not folded yet.

    Named after the entity's state key, behind a hash tag of that key's cluster slot (so it
    lives on the entity's node). One set per entity: a set per slot would make a card wait for
    the fold of any other card of its slot (16,384 slots).
    """
    return colocated_key(state_key, "ingest:pending:") + state_key


def encode_entry(txn: Transaction, at_us: int) -> list[bytes]:
    """A transaction as the stream entry's field/value pairs (``at``: append time, µs)."""
    values = (
        txn.transaction_id,
        txn.customer_id,
        txn.merchant_id,
        str(txn.ts_us),
        repr(txn.amount),
        repr(txn.lat),
        repr(txn.long),
        str(at_us),
    )
    pairs = zip(_FIELDS, (v.encode() for v in values), strict=True)
    return [item for pair in pairs for item in pair]


def decode_entry(fields: dict[bytes, bytes]) -> tuple[Transaction, int]:
    """A stream entry -> the transaction and its append time (µs).

    Raises:
        KeyError, ValueError: A malformed entry.
    """
    return (
        Transaction(
            transaction_id=fields[b"id"].decode(),
            customer_id=fields[b"c"].decode(),
            merchant_id=fields[b"m"].decode(),
            ts_us=int(fields[b"ts"]),
            amount=float(fields[b"amt"]),
            lat=float(fields[b"lat"]),
            long=float(fields[b"lon"]),
        ),
        int(fields[b"at"]),
    )


def _pending_keys(writer: OnlineStateWriter, txn: Transaction) -> tuple[bytes, bytes]:
    return (
        pending_key(writer.state_key("customer_activity", txn.customer_id)),
        pending_key(writer.state_key("merchant_activity", txn.merchant_id)),
    )


class StreamPublisher:
    """The API side: append scored transactions, wait for an entity's pending ones.

    Same interface as :class:`serving.ingest.Ingestor` (what :class:`ScoringService` calls).
    """

    mode = "stream"
    backlog = 0  # the stream's length is the worker's metric, not a per-request one

    def __init__(
        self,
        client: Any,
        writer: OnlineStateWriter,
        project: str,
        wait_seconds: float,
        store_up: Callable[[], bool] = lambda: True,
        poll_seconds: float = 0.001,
        count_unwaited: Callable[[], None] = lambda: None,
        watch_seconds: float = WATCH_SECONDS,
    ) -> None:
        """Resolve the names; :meth:`start` starts watching the workers' beats.

        Args:
            client: The API's redis-py client.
            writer: Names the entities' state keys (its layout).
            project: The Feast project (names the stream).
            wait_seconds: Longest wait of a request for its entities' pending entries.
            store_up: Whether the online store counts as up (the guard's state).
            poll_seconds: Pause between two checks while waiting.
            count_unwaited: Called for a request that had entries pending and did not wait
                (no live worker).
            watch_seconds: Interval of the check of the workers' beats.
        """
        self._client = client
        self._writer = writer
        self.stream = stream_key(project)
        self._workers = workers_key(project)
        self._wait_seconds = wait_seconds
        self._store_up = store_up
        self._poll_seconds = poll_seconds
        self._count_unwaited = count_unwaited
        self._watch_seconds = watch_seconds
        self._liveness = client.register_script(_LIVENESS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # None until the first check (then as before: requests wait, boundedly).
        self.workers_alive: int | None = None
        self.heartbeat_age_seconds: float | None = None  # since the latest beat of any worker

    @property
    def worker_alive(self) -> bool:
        """Whether some worker consumes the stream (True until the first check says)."""
        return self.workers_alive is None or self.workers_alive > 0

    def liveness_warning(self) -> str:
        """``/ready``'s warning while no worker consumes (empty otherwise)."""
        if self.worker_alive:
            return ""
        age = self.heartbeat_age_seconds
        since = "no worker ever beat" if age is None else f"last beat {age:.1f} s ago"
        return (
            f"no ingestion worker consumes {self.stream.decode()} ({since}): transactions are "
            "journaled and queued, and requests do not wait for their cards' unfolded ones"
        )

    def check_workers(self) -> None:
        """Ask Redis how many workers beat recently (a store error leaves the last answer)."""
        from serving.online_store import REDIS_ERRORS

        try:
            alive, age_ms = self._liveness(keys=[self._workers], args=[int(ALIVE_SECONDS * 1000)])
        except REDIS_ERRORS:
            return  # the guard reports the store; the workers' state is unknown meanwhile
        self.heartbeat_age_seconds = None if int(age_ms) < 0 else int(age_ms) / 1000
        self.workers_alive = int(alive)

    def start(self) -> None:
        """Start watching the workers' beats (the workers are processes of their own)."""
        self._thread = threading.Thread(target=self._watch, name="ingest-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.check_workers()
            self._stop.wait(self._watch_seconds)

    def close(self, timeout: float = 30.0) -> None:
        """Stop watching; nothing to drain (every accepted transaction is in the stream)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def store_changed(self, up: bool) -> None:
        """The guard's hook (waits poll the guard's state, nothing to wake)."""

    def before_read(self, txns: Sequence[Transaction]) -> bool:
        """Wait until no transaction of these cards and merchants is pending in the stream.

        While no worker consumes (:attr:`worker_alive`), it does not wait: one check, and a
        request with entries pending is counted (``count_unwaited``) and goes on.

        Returns:
            False if the wait ended (timeout, or the store went down) with one still pending.

        Raises:
            Exception: The Redis client's connection error (the caller answers 503).
        """
        keys = list(dict.fromkeys(k for txn in txns for k in _pending_keys(self._writer, txn)))
        commands = [(b"EXISTS", key) for key in keys]
        deadline = time.monotonic() + self._wait_seconds
        while True:
            if not any(run_commands(self._client, commands)):
                return True
            if not self.worker_alive:  # no fold is coming: answer on the state as it is
                self._count_unwaited()
                return True
            if time.monotonic() >= deadline or not self._store_up():
                return False
            time.sleep(self._poll_seconds)

    def submit(self, txns: Sequence[Transaction], received: float) -> None:
        """Append the transactions (timestamp order) and mark their entities pending.

        One round trip; when it returns, the transactions are in Redis (the stream is as
        durable as Redis' persistence: ``appendonly yes`` in the compose file).

        Raises:
            Exception: The Redis client's connection error (the caller answers 503).
        """
        at_us = time.time_ns() // 1000
        commands: list[tuple[Any, ...]] = []
        for txn in sorted(txns, key=lambda t: (t.ts_us, t.transaction_id)):
            for key in _pending_keys(self._writer, txn):
                commands.append((b"SADD", key, txn.transaction_id))
                commands.append((b"EXPIRE", key, PENDING_SECONDS))
            commands.append((b"XADD", self.stream, b"*", *encode_entry(txn, at_us)))
        run_commands(self._client, commands)


@dataclass
class WorkerStats:
    """What a worker did (printed by the command when it stops, read by the benchmarks)."""

    folded: int = 0
    claimed: int = 0
    malformed: int = 0
    batches: int = 0
    # Append (the request's XADD) -> acknowledged (folded), per entry, the latest LAGS_KEPT.
    lags_us: deque[int] = field(default_factory=lambda: deque(maxlen=LAGS_KEPT))

    def lag_ms(self, quantile: float) -> float:
        """A quantile of the kept lags, in ms (``nan`` when none)."""
        if not self.lags_us:
            return float("nan")
        ordered = sorted(self.lags_us)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] / 1000

    def summary(self) -> str:
        """One line: counts and the freshness lag (append -> folded) p50/p99."""
        return (
            f"{self.folded} folded, {self.claimed} claimed, {self.malformed} malformed, "
            f"{self.batches} batches; lag append->folded p50 {self.lag_ms(0.5):.2f} ms, "
            f"p99 {self.lag_ms(0.99):.2f} ms (last {len(self.lags_us)})"
        )


def default_consumer() -> str:
    """A consumer name stable across restarts of a worker on one host."""
    return f"{socket.gethostname()}-ingest"


class IngestWorker:
    """Reads the stream in the consumer group, folds, acknowledges."""

    def __init__(
        self,
        client: Any,
        writer: OnlineStateWriter,
        project: str,
        consumer: str,
        batch: int = 500,
        block_ms: int = 200,
        claim_idle_ms: int = 30_000,
        parent_pid: int | None = None,
    ) -> None:
        """Set the worker up; :meth:`run` starts it.

        Args:
            client: A redis-py client (not the API's fail-fast one: a worker may wait).
            writer: Folds transactions (the compare-and-set script).
            project: The Feast project (names the stream).
            consumer: This worker's name in the group; keep it across restarts to take back
                its own pending entries at once.
            batch: Entries read per call.
            block_ms: How long a read waits for new entries.
            claim_idle_ms: Entries another consumer left pending this long are claimed.
            parent_pid: Stop once this process is no longer the parent (it died).
        """
        self._client = client
        self._writer = writer
        self.stream = stream_key(project)
        self.consumer = consumer.encode()
        self._batch = batch
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self.stats = WorkerStats()
        self.stop = threading.Event()
        self.parent_pid = parent_pid
        self._workers = workers_key(project)
        self._beat = client.register_script(_BEAT)
        self._last_beat = float("-inf")

    def beat(self, force: bool = False) -> None:
        """Say this worker consumes (at most every :data:`HEARTBEAT_SECONDS` unless forced)."""
        now = time.monotonic()
        if force or now - self._last_beat >= HEARTBEAT_SECONDS:
            self._beat(keys=[self._workers], args=[self.consumer, _DAY_MS])
            self._last_beat = now

    def leave(self) -> None:
        """Remove this worker's beat (a clean stop: it no longer consumes)."""
        from serving.online_store import REDIS_ERRORS

        with contextlib.suppress(*REDIS_ERRORS):  # Redis gone: the beat ages out by itself
            self._client.execute_command(b"ZREM", self._workers, self.consumer)

    def parent_gone(self) -> bool:
        """Whether the process that started this worker (``parent_pid``) has ended."""
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start: nothing appended is skipped)."""
        try:
            self._client.execute_command(
                b"XGROUP", b"CREATE", self.stream, GROUP, b"0", b"MKSTREAM"
            )
        except Exception as exc:  # redis.ResponseError
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, start: bytes = b">") -> list[tuple[bytes, dict[bytes, bytes] | None]]:
        """Entries for this consumer: new ones (``>``, waiting ``block_ms``) or its pending ones.

        Args:
            start: ``>`` for entries never delivered, ``0`` for this consumer's pending ones.
        """
        reply = self._client.execute_command(
            b"XREADGROUP", b"GROUP", GROUP, self.consumer, b"COUNT", self._batch,
            *((b"BLOCK", self._block_ms) if start == b">" else ()),
            b"STREAMS", self.stream, start,
        )  # fmt: skip
        if not reply:
            return []
        entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        return [(entry_id, fields or None) for entry_id, fields in entries]

    def _entries_dict(self, fields: Any) -> dict[bytes, bytes]:
        if isinstance(fields, dict):
            return fields
        return dict(zip(fields[::2], fields[1::2], strict=True))

    def process(self, entries: Sequence[tuple[bytes, Any]]) -> int:
        """Fold and acknowledge entries; returns how many were folded (beats first, if due)."""
        self.beat()  # here: a long take-back of a backlog beats between its batches too
        if not entries:
            return 0
        txns, appended = self.fold(entries)
        self.acknowledge(entries, txns, appended)
        return len(txns)

    def fold(self, entries: Sequence[tuple[bytes, Any]]) -> tuple[list[Transaction], list[int]]:
        """Fold entries into the online state (not acknowledged yet).

        Returns:
            The transactions folded and their append times (µs); an entry deleted meanwhile
            (acknowledged by another consumer) or malformed is skipped.
        """
        txns: list[Transaction] = []
        appended: list[int] = []
        for entry_id, fields in entries:
            if fields is None:
                continue  # deleted meanwhile (folded by another consumer): just acknowledged
            try:
                txn, at_us = decode_entry(self._entries_dict(fields))
            except (KeyError, ValueError, UnicodeDecodeError):
                logger.error("stream entry %r is malformed: acknowledged, not folded", entry_id)
                self.stats.malformed += 1
                continue
            txns.append(txn)
            appended.append(at_us)
        if txns:
            self._writer.ingest_transactions(txns)
        return txns, appended

    def acknowledge(
        self,
        entries: Sequence[tuple[bytes, Any]],
        txns: Sequence[Transaction],
        appended: Sequence[int],
    ) -> None:
        """Clear the folded transactions' pending markers, acknowledge and delete the entries."""
        ids = [entry_id for entry_id, _ in entries]
        commands: list[tuple[Any, ...]] = [
            (b"SREM", key, txn.transaction_id)
            for txn in txns
            for key in _pending_keys(self._writer, txn)
        ]
        commands.append((b"XACK", self.stream, GROUP, *ids))
        commands.append((b"XDEL", self.stream, *ids))
        run_commands(self._client, commands)
        now_us = time.time_ns() // 1000
        self.stats.folded += len(txns)
        self.stats.batches += 1
        self.stats.lags_us.extend(now_us - at for at in appended)

    def take_back(self) -> int:
        """Fold this consumer's own pending entries, then claim other consumers' idle ones."""
        done = 0
        while not self.stop.is_set():
            entries = self.read(b"0")  # this consumer's pending history
            if not entries:
                break
            done += self.process(entries)
        cursor = b"0-0"
        while not self.stop.is_set():
            reply = self._client.execute_command(
                b"XAUTOCLAIM", self.stream, GROUP, self.consumer, self._claim_idle_ms, cursor,
                b"COUNT", self._batch,
            )  # fmt: skip
            cursor, claimed = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            entries = [(entry_id, fields or None) for entry_id, fields in claimed]
            entries += [(entry_id, None) for entry_id in deleted]
            self.stats.claimed += len(claimed)
            done += self.process(entries)
            if cursor in (b"0-0", "0-0"):
                break
        return done

    def run(self, claim_every_seconds: float = 10.0, retry_seconds: float = 0.5) -> WorkerStats:
        """Fold until :attr:`stop` is set; survives Redis outages (retries)."""
        from serving.online_store import REDIS_ERRORS

        fresh = True
        last_claim = 0.0
        while not self.stop.is_set():
            if self.parent_gone():  # orphaned (reparented): the API that started it died
                logger.warning("ingest worker: parent %s is gone; stopping", self.parent_pid)
                break
            try:
                if fresh:
                    self.ensure_group()
                    self.beat(force=True)
                    fresh = False
                if time.monotonic() - last_claim >= claim_every_seconds:
                    self.take_back()
                    last_claim = time.monotonic()
                self.process(self.read(b">"))
            except REDIS_ERRORS as exc:
                logger.warning("ingest worker: store unreachable (%s); retrying", exc)
                fresh = True
                last_claim = 0.0  # take back what was read but not acknowledged
                self.stop.wait(retry_seconds)
        self.leave()
        return self.stats


def build_worker(consumer: str | None = None, batch: int = 500, **kw: Any) -> IngestWorker:
    """A worker on the process settings: the store's layout and the writer.

    Its Redis client has :data:`WORKER_TIMEOUT_SECONDS` timeouts and one immediate retry (the
    API's kind of client): the worker's own loop does the waiting, and checks for a stop.
    """
    from feature_engine.online.online_only import ONLINE_ONLY
    from feature_engine.online.redis_layout import RedisLayout
    from feature_engine.online.writer import OnlineStateWriter
    from feature_engine.store import open_store
    from feature_repo.services import STATE_VELOCITY
    from fraud_platform.settings import get_settings, load_params
    from serving.online_store import install_fast_client

    settings = get_settings()
    params = load_params(settings.paths.params_file)
    store = open_store(settings, offline_store=ONLINE_ONLY)
    install_fast_client(store, WORKER_TIMEOUT_SECONDS)
    layout = RedisLayout(store)
    writer = OnlineStateWriter(layout, params.features, STATE_VELOCITY)
    return IngestWorker(
        layout.client,
        writer,
        store.project,
        consumer or default_consumer(),
        batch,
        **kw,
    )


def run_worker(worker: IngestWorker, report: Callable[[str], None] = print) -> WorkerStats:
    """Run a worker until SIGTERM/SIGINT (it ends after the batch in hand), then report.

    With ``worker.parent_pid`` set, it also stops once that parent is gone.
    """
    import signal

    def stop(*_: object) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if worker.parent_gone():  # it died while this process started
        report(f"ingest worker: parent {worker.parent_pid} is gone; not starting")
        return worker.stats
    report(f"ingest worker {worker.consumer.decode()} (pid {os.getpid()}) on {worker.stream!r}")
    stats = worker.run()
    report(f"ingest worker stopped: {stats.summary()}")
    return stats
