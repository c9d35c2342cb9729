"""Durable append-only journals: a record reaches the operating system before the caller goes on.

Why this shape. A process that buffers records in memory and writes a file now and then loses
the whole buffer to ``kill -9``, an OOM kill or a crash. Here every :meth:`Journal.append` is
one ``os.write`` of one JSON line on a file opened with ``O_APPEND``: once it returns, the record
belongs to the kernel's page cache and survives the death of the process (nothing is lost to
SIGKILL). A background thread calls ``fsync`` every ``fsync_seconds`` when something was written,
so a crash of the *machine* (power loss, kernel panic) loses at most that much. Appends never
wait for the disk: an append costs a few microseconds of encoding plus one system call.

Layout of a journal called ``name`` in ``directory``::

    name-<utc>-<pid>-<seq>.jsonl     a segment: one header line, then one JSON object per line
    name-<utc>-<pid>-<seq>.parquet   a sealed segment, compacted (the same records, typed)
    .name-...tmp                     compaction in progress (readers never look at it)

Each process writes its own segments (several uvicorn workers share one folder) and rotates to
a new one every ``rotate_records`` records or ``rotate_seconds`` seconds. A sealed segment is
fsync'ed, converted to Parquet under a temporary name, renamed into place, and only then is the
JSON-lines file removed. The first line of every segment names its columns and their types, so a
reader needs no outside schema and segments written by an older version keep their own columns.

Crash recovery: a writer holds an exclusive ``flock`` on its open segment for as long as it
lives; the kernel drops the lock when the process dies, however it dies. :meth:`Journal.open`
compacts every segment whose lock it can take, i.e. every segment left behind by a dead writer
(a pid in the name could be reused; a lock cannot be inherited by a stranger).

Readers (:func:`read_journal`) return every complete record: the last line of a segment that a
dead or live writer had not finished is ignored, and a compacted segment is read once (its
JSON-lines twin, if still there, is skipped). Lines that do not parse (after a machine crash the
tail of a file can hold zeros) are skipped and logged, never fatal.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import logging
import math
import operator
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SEGMENT_SUFFIX = ".jsonl"
COMPACT_SUFFIX = ".parquet"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Column types a record may hold; values are checked and normalised on append (see _ENCODERS).
COLUMN_TYPES = ("string", "float64", "int64", "bool", "timestamp")


class JournalError(RuntimeError):
    """The journal cannot take the record (closed, disk full, ...); the message says why."""


class JournalRecordError(ValueError):
    """A record does not match the journal's columns; the message names the column."""


# ------------------------------------------------------------------------------ encoding


def _encode_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _encode_float(value: Any) -> Any:
    number = float(value)
    # JSON has no NaN or infinity: a non-finite number is logged as null (no number).
    return number if math.isfinite(number) else None


def _encode_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return operator.index(value)  # ints and numpy ints; 2.5 is refused, never truncated


def _encode_bool(value: Any) -> Any:
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy.bool_ too
        return bool(value)
    raise TypeError(f"expected a bool, got {type(value).__name__}")


def _encode_timestamp(value: Any) -> Any:
    if not isinstance(value, datetime):  # pandas.Timestamp is a datetime
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # naive means UTC, as everywhere in the platform
    return value.astimezone(UTC).isoformat(timespec="microseconds")


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "string": _encode_string,
    "float64": _encode_float,
    "int64": _encode_int,
    "bool": _encode_bool,
    "timestamp": _encode_timestamp,
}


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "string": pa.string(),
        "float64": pa.float64(),
        "int64": pa.int64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[kind]


def arrow_schema(columns: Mapping[str, str]) -> pa.Schema:
    """The Arrow schema of a journal's columns (``name -> type`` as in :data:`COLUMN_TYPES`)."""
    import pyarrow as pa

    return pa.schema([(name, _arrow_type(kind)) for name, kind in columns.items()])


def _check_columns(columns: Mapping[str, str]) -> dict[str, str]:
    if not columns:
        raise ValueError("a journal needs at least one column")
    unknown = {name: kind for name, kind in columns.items() if kind not in COLUMN_TYPES}
    if unknown:
        raise ValueError(f"unknown column types {unknown}; use one of {COLUMN_TYPES}")
    return dict(columns)


def _header(name: str, columns: Mapping[str, str]) -> bytes:
    head = {"journal": name, "version": FORMAT_VERSION, "columns": dict(columns)}
    return (json.dumps(head, separators=(",", ":")) + "\n").encode()


# ------------------------------------------------------------------------------ writing


@dataclass
class _Segment:
    """One open segment: its file, lock-holding descriptor and counters."""

    path: Path
    fd: int
    opened: float  # time.monotonic()
    records: int = 0
    dirty: bool = True  # bytes written since the last fsync (the header counts)
    broken: bool = False  # a write failed half-way: never append to this file again
    announced: bool = False  # its directory entry has been fsync'ed


@dataclass
class JournalStats:
    """What a journal did since it was opened (read them for metrics)."""

    records: int = 0
    segments_sealed: int = 0
    segments_compacted: int = 0
    recovered: int = 0  # orphaned segments compacted at open
    fsyncs: int = 0
    errors: list[str] = field(default_factory=list)  # background failures, most recent last


class Journal:
    """Append-only, crash-safe record log of one process; see the module docstring.

    Example::

        with Journal(folder, "predictions", {"id": "string", "score": "float64"}) as log:
            log.append({"id": "t1", "score": 0.3})   # on disk (page cache) when this returns
        table = read_journal(folder, "predictions")
    """

    def __init__(
        self,
        directory: Path,
        name: str,
        columns: Mapping[str, str],
        *,
        fsync_seconds: float = 1.0,
        rotate_records: int = 50_000,
        rotate_seconds: float = 300.0,
        compact: bool = True,
    ) -> None:
        """Describe the journal; nothing touches the disk until :meth:`open`.

        Args:
            directory: Folder of the segments (created on open).
            name: Journal name, the prefix of its files (lower case, digits, ``_``).
            columns: Column name -> type (one of :data:`COLUMN_TYPES`), in order. Every record
                must have exactly these keys; ``None`` is allowed in any column.
            fsync_seconds: Longest time a written record stays without ``fsync`` (> 0).
            rotate_records: Records per segment at most.
            rotate_seconds: Age of a segment at which it is sealed, even if not full.
            compact: Convert sealed segments to Parquet (readers handle both).

        Raises:
            ValueError: On a bad name, column type or interval.
        """
        if not NAME_PATTERN.fullmatch(name):
            raise ValueError(f"journal name must match {NAME_PATTERN.pattern}, got {name!r}")
        if fsync_seconds <= 0 or rotate_seconds <= 0 or rotate_records <= 0:
            raise ValueError("fsync_seconds, rotate_seconds and rotate_records must be > 0")
        self.directory = Path(directory)
        self.name = name
        self.columns = _check_columns(columns)
        self.fsync_seconds = fsync_seconds
        self.rotate_records = rotate_records
        self.rotate_seconds = rotate_seconds
        self.compact = compact
        self.stats = JournalStats()
        self._encoders = tuple((col, _ENCODERS[kind]) for col, kind in self.columns.items())
        self._keys = self.columns.keys()
        self._header = _header(name, self.columns)
        self._lock = threading.Lock()  # guards _segment and the append itself
        self._segment: _Segment | None = None
        self._sealed: list[_Segment] = []  # handed to the background thread (which closes them)
        self._seq = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def open(self) -> Journal:
        """Recover segments of dead writers, open a fresh segment, start the fsync thread.

        Returns:
            The journal itself (for ``with Journal(...).open() as j``).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stats.recovered += recover(self.directory, self.name, compact=self.compact)
        with self._lock:
            self._segment = self._new_segment()
        self._thread = threading.Thread(target=self._run, name=f"journal-{self.name}", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> Journal:
        if self._thread is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 60.0) -> None:
        """Seal the open segment, fsync and compact everything, stop the thread."""
        with self._lock:
            if self._segment is not None:
                self._sealed.append(self._segment)
                self._segment = None
            self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    @property
    def is_open(self) -> bool:
        """Whether appends are accepted."""
        return self._segment is not None

    # -- appending

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """One record as its journal line (checked against the columns).

        Raises:
            JournalRecordError: Naming the missing, unexpected or badly typed column.
        """
        if record.keys() != self._keys:
            missing = [c for c in self.columns if c not in record]
            extra = [str(c) for c in record if c not in self.columns]
            raise JournalRecordError(f"{self.name}: missing columns {missing}, unexpected {extra}")
        out: dict[str, Any] = {}
        for column, encode in self._encoders:
            value = record[column]
            try:
                out[column] = None if value is None else encode(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise JournalRecordError(f"{self.name}.{column}: {exc}") from exc
        try:
            line = json.dumps(out, separators=(",", ":"), ensure_ascii=False) + "\n"
            return line.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate in a string
            raise JournalRecordError(f"{self.name}: text is not valid Unicode: {exc}") from exc

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record; it is in the OS (survives SIGKILL) when this returns.

        Raises:
            JournalRecordError: The record does not match the columns (nothing written).
            JournalError: The journal is closed or the write failed (disk full, say).
        """
        self.append_many((record,))

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write several records with one system call (all or, on a disk error, a prefix).

        Raises:
            JournalRecordError: A record does not match the columns (nothing written).
            JournalError: The journal is closed or the write failed.
        """
        lines = [self.encode(record) for record in records]
        if not lines:
            return
        data = b"".join(lines)
        with self._lock:
            segment = self._segment
            if segment is None:
                raise JournalError(f"journal {self.name} is closed")
            if segment.broken or self._due(segment):
                segment = self._rotate_locked()
            try:
                _write_all(segment.fd, data)
            except OSError as exc:
                # A torn line may now end the file: seal it, start afresh on the next append.
                segment.broken = True
                raise JournalError(f"journal {self.name}: write failed: {exc}") from exc
            segment.records += len(lines)
            segment.dirty = True
            self.stats.records += len(lines)
            if segment.records >= self.rotate_records:
                self._rotate_locked()

    def flush(self) -> None:
        """Fsync the open segment now (records before this call survive a machine crash)."""
        with self._lock:
            segment = self._segment
            if segment is not None:
                segment.dirty = False
                os.fsync(segment.fd)  # under the lock: the thread cannot close it meanwhile
                self.stats.fsyncs += 1

    def rotate(self) -> None:
        """Seal the open segment now and start a new one (compaction follows in background)."""
        with self._lock:
            if self._segment is not None:
                self._rotate_locked()

    # -- internals

    def _due(self, segment: _Segment) -> bool:
        return time.monotonic() - segment.opened >= self.rotate_seconds and segment.records > 0

    def _rotate_locked(self) -> _Segment:
        old = self._segment
        self._segment = self._new_segment()
        if old is not None:
            self._sealed.append(old)
            self._wake.set()
        return self._segment

    def _new_segment(self) -> _Segment:
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{self.name}-{stamp}-{os.getpid()}-{self._seq:06d}{SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "a live writer owns this file"
            _write_all(fd, self._header)
        except OSError:
            os.close(fd)
            raise
        return _Segment(path=path, fd=fd, opened=time.monotonic())

    def _run(self) -> None:
        """Fsync at most every ``fsync_seconds``; seal, compact and close rotated segments."""
        while True:
            self._wake.wait(self.fsync_seconds)
            self._wake.clear()
            try:
                self._tick()
            except Exception as exc:  # never let the thread die: appends must keep working
                self._note(f"background: {exc}")
            if self._stopping and self._segment is None and not self._sealed:
                return

    def _tick(self) -> None:
        with self._lock:
            segment = self._segment
            if segment is not None and self._due(segment):
                segment = self._rotate_locked()
            sealed, self._sealed = self._sealed, []
            sync = segment is not None and segment.dirty
            if segment is not None:
                segment.dirty = False
        # Outside the lock: appends never wait for the disk. Only this thread closes segment
        # descriptors (in _seal, below), so the descriptor cannot be freed under the fsync.
        if segment is not None and sync:
            if not segment.announced:
                _fsync_dir(self.directory)  # the new file's name survives a machine crash
                segment.announced = True
            os.fsync(segment.fd)
            self.stats.fsyncs += 1
        for old in sealed:
            self._seal(old)

    def _seal(self, segment: _Segment) -> None:
        try:
            os.fsync(segment.fd)
            if not segment.announced:
                _fsync_dir(self.directory)
            self.stats.segments_sealed += 1
            if self.compact and compact_segment(segment.path) is not None:
                self.stats.segments_compacted += 1
        except Exception as exc:  # the JSON-lines file stays; the next open() retries
            self._note(f"sealing {segment.path.name}: {exc}")
        finally:
            os.close(segment.fd)  # releases the lock only now, after the file is gone

    def _note(self, message: str) -> None:
        logger.error("journal %s: %s", self.name, message)
        self.stats.errors = [*self.stats.errors[-9:], message]


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a regular file rarely writes short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ compaction


def compact_segment(path: Path) -> Path | None:
    """Turn a sealed JSON-lines segment into Parquet and remove it.

    Written under a hidden temporary name, fsync'ed and renamed: a reader sees the Parquet file
    whole or not at all, and the JSON-lines file is removed only once the Parquet file is durable.

    Returns:
        The Parquet file, or ``None`` when the segment held no record (it is just removed).
    """
    import pyarrow.parquet as pq

    table = read_segment(path)
    target = path.with_suffix(COMPACT_SUFFIX)
    if table is None or table.num_rows == 0:
        path.unlink(missing_ok=True)
        return None
    tmp = path.parent / f".{target.name}.{os.getpid()}.tmp"
    pq.write_table(table, tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    _fsync_dir(path.parent)
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return target


def recover(directory: Path, name: str, *, compact: bool = True) -> int:
    """Compact the segments of writers that died (their lock is free).

    Args:
        directory: The journal's folder.
        name: The journal's name.
        compact: Whether to compact (else only count them; readers read them as they are).

    Returns:
        How many orphaned segments were found.
    """
    found = 0
    for path in sorted(Path(directory).glob(f"{name}-*{SEGMENT_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # compacted by another process meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer owns it
            if os.fstat(fd).st_nlink == 0:
                continue  # another process compacted it between our open and our lock
            found += 1
            if compact:
                try:
                    compact_segment(path)
                except Exception:  # stays readable as JSON lines; retried at the next open
                    logger.exception("journal %s: cannot compact %s", name, path)
        finally:
            os.close(fd)
    return found


# ------------------------------------------------------------------------------ reading


def segment_files(directory: Path, name: str, *, modified_since: float | None = None) -> list[Path]:
    """The files holding a journal's records, in name (time, then process) order.

    A JSON-lines segment whose Parquet twin exists is left out (it is about to be removed).

    Args:
        directory: The journal's folder.
        name: The journal's name.
        modified_since: Only files modified at or after this POSIX time.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    compacted = {p.stem: p for p in folder.glob(f"{name}-*{COMPACT_SUFFIX}")}
    open_ones = {
        p.stem: p for p in folder.glob(f"{name}-*{SEGMENT_SUFFIX}") if p.stem not in compacted
    }
    files = [path for _, path in sorted({**open_ones, **compacted}.items())]
    if modified_since is not None:
        kept = []
        for path in files:
            with contextlib.suppress(FileNotFoundError):  # compacted meanwhile
                if path.stat().st_mtime >= modified_since:
                    kept.append(path)
        files = kept
    return files


def _parse_lines(body: bytes, schema: pa.Schema, where: Path) -> pa.Table:
    """Complete JSON lines -> table; lines that do not parse are skipped (and logged)."""
    import pyarrow as pa
    import pyarrow.json as pj

    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    read = pj.ReadOptions(block_size=max(1 << 20, min(len(body) + 1, 64 << 20)))
    try:
        return pj.read_json(io.BytesIO(body), read_options=read, parse_options=options)
    except pa.ArrowInvalid:
        pass
    # Slow path, only for a damaged file: keep each line that parses on its own.
    good, bad = [], 0
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        try:
            good.append(pj.read_json(io.BytesIO(line + b"\n"), parse_options=options))
        except pa.ArrowInvalid:
            bad += 1
    logger.warning("journal segment %s: skipped %d damaged line(s)", where, bad)
    return pa.concat_tables(good) if good else schema.empty_table()


def read_segment(path: Path, columns: Sequence[str] | None = None) -> pa.Table | None:
    """Every complete record of one segment (JSON lines or Parquet).

    Args:
        path: The segment.
        columns: Only these columns (those the segment has).

    Returns:
        The records, or ``None`` when the file has vanished or has no complete header.
    """
    import pyarrow.parquet as pq

    try:
        if path.suffix == COMPACT_SUFFIX:
            table = pq.read_table(path)
        else:
            data = path.read_bytes()
            end = data.rfind(b"\n")  # whatever follows the last newline is a torn record
            first = data.find(b"\n")
            if first < 0:
                return None
            try:
                head = json.loads(data[:first])
                schema = arrow_schema(_check_columns(head["columns"]))
            except (ValueError, KeyError, TypeError):
                logger.warning("journal segment %s: unreadable header, skipped", path)
                return None
            body = data[first + 1 : end + 1]
            table = _parse_lines(body, schema, path) if body.strip() else schema.empty_table()
    except FileNotFoundError:
        return None
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    return table


def read_journal(
    directory: Path,
    name: str,
    *,
    columns: Sequence[str] | None = None,
    modified_since: float | None = None,
) -> pa.Table:
    """Every complete record of a journal, oldest segment first.

    Segments with different columns (written by different versions) are concatenated with the
    union of their columns, missing values as nulls.

    Args:
        directory: The journal's folder.
        name: The journal's name.
        columns: Only these columns.
        modified_since: Only segments modified at or after this POSIX time.

    Returns:
        The records (an empty table without columns when there are none).
    """
    import pyarrow as pa

    tables = []
    for path in segment_files(directory, name, modified_since=modified_since):
        table = read_segment(path, columns)
        if table is None and path.suffix == SEGMENT_SUFFIX:
            # Compacted between listing and reading: its Parquet twin holds the records.
            table = read_segment(path.with_suffix(COMPACT_SUFFIX), columns)
        if table is not None and table.num_rows:
            tables.append(table)
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")
