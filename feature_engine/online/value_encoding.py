"""Serialized Feast ``ValueProto`` bytes for whole Arrow columns, without one message per value.

Why
---
``feast materialize`` stores every feature of every entity as a serialized
``feast.types.Value`` message. Building one message per value from Python objects (Feast's
``python_values_to_proto_values``, or ``ValueProto(...)`` per row) cost about 3 us a value:
on 28k customers and 5.6k merchants (0.55M values, most of them lists of up to a few hundred
numbers or strings) that alone was a quarter of a materialization.

What this module does
---------------------
It writes the protobuf wire format of the few value kinds the state views use, for a whole
column at once, with NumPy on the Arrow buffers:

* ``int64_val`` (varint), ``double_val`` (fixed 64-bit), ``string_val`` (length-delimited);
* ``int64_list_val`` and ``double_list_val`` (one length-delimited ``Int64List`` /
  ``DoubleList`` holding its ``val`` *packed*, as protobuf 3 writes repeated numbers);
* ``string_list_val`` (a ``StringList`` of length-delimited strings);
* the event time's ``google.protobuf.Timestamp`` (``seconds``, ``nanos``; zero fields left
  out, as protobuf does).

The field numbers are read from Feast's compiled descriptors, not written down here. The
bytes equal ``ValueProto(...).SerializeToString()`` exactly, which protobuf makes
deterministic for these messages (one field set, no maps, no unknown fields); Feast's rules on
missing values are kept: a null row, and a NaN double scalar (Feast reads NaN as missing), are
the empty message ``b""``. ``tests/unit/features/test_value_encoding.py`` compares with
protobuf's own serializer on edge cases (empty lists, NaN, nulls, unicode, negative and huge
integers) and ``tests/integration/features`` compares Redis with Feast's own materialize.

Anything else (other types, lists with null elements) returns ``None``, and the caller uses
Feast's conversion.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

_VARINT, _FIXED64, _LENGTH_DELIMITED = 0, 1, 2
_MAX_VARINT_BYTES = 10  # a negative int64 takes ten
_CHUNK_VALUES = 1 << 20  # varints encoded per NumPy pass (bounds the temporary arrays)
_U8 = np.uint8

Parts = list[tuple[np.ndarray, np.ndarray]]  # per part: its bytes, its byte count per row


def varint(value: int) -> bytes:
    """One protobuf varint (an int64 as two's complement, as protobuf writes ``int64``)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _tag(message: object, field: str, wire_type: int) -> bytes:
    number = message.DESCRIPTOR.fields_by_name[field].number  # type: ignore[attr-defined]
    return varint((number << 3) | wire_type)


def _field(field: str, wire_type: int) -> bytes:
    return _tag(ValueProto, field, wire_type)


_LIST_ITEM = _tag(ValueProto().int64_list_val, "val", _LENGTH_DELIMITED)  # Int64List.val ...
assert _tag(ValueProto().double_list_val, "val", _LENGTH_DELIMITED) == _LIST_ITEM
assert _tag(ValueProto().string_list_val, "val", _LENGTH_DELIMITED) == _LIST_ITEM
_SECONDS = _tag(Timestamp, "seconds", _VARINT)
_NANOS = _tag(Timestamp, "nanos", _VARINT)


# ------------------------------------------------------------------ building blocks


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of int64 values: all their bytes, one after the other, and each length.

    Args:
        values: Integers (read as int64).

    Returns:
        (bytes as uint8, bytes per value as int64).
    """
    unsigned = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    lengths = np.ones(len(unsigned), dtype=np.int64)
    for k in range(1, _MAX_VARINT_BYTES):
        lengths += unsigned >= np.uint64(1 << (7 * k))
    if not len(unsigned):
        return np.empty(0, dtype=_U8), lengths
    width = int(lengths.max())
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    positions = np.arange(width)
    chunks = []
    for start in range(0, len(unsigned), _CHUNK_VALUES):
        part = unsigned[start : start + _CHUNK_VALUES, None]
        part_lengths = lengths[start : start + _CHUNK_VALUES, None]
        groups = ((part >> shifts) & np.uint64(0x7F)).astype(_U8)
        groups |= np.where(positions < part_lengths - 1, _U8(0x80), _U8(0))
        chunks.append(groups[positions < part_lengths])
    return np.concatenate(chunks), lengths


def _constant(tag: bytes, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same bytes in every present row, nothing in the others."""
    count = int(present.sum())
    data = np.tile(np.frombuffer(tag, dtype=_U8), count)
    return data, present.astype(np.int64) * len(tag)


def _varints_where(values: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varints of the present rows' values; nothing in the others."""
    data, lengths = varints(values[present])
    full = np.zeros(len(present), dtype=np.int64)
    full[present] = lengths
    return data, full


def _scatter(parts: Parts, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Row i is part 0's bytes of row i, then part 1's, and so on: all rows back to back.

    Each part holds its rows' bytes back to back with a byte count per row; every part is
    scattered into place in one buffer.

    Returns:
        (the rows' bytes, bytes per row).
    """
    if not parts:
        return np.empty(0, dtype=_U8), np.zeros(rows, dtype=np.int64)
    row_lengths = np.sum([lengths for _, lengths in parts], axis=0).astype(np.int64)
    out = np.empty(int(row_lengths.sum()), dtype=_U8)
    cursor = np.cumsum(row_lengths) - row_lengths
    for data, lengths in parts:
        if len(data):
            source_start = np.cumsum(lengths) - lengths
            out[np.arange(len(data)) + np.repeat(cursor - source_start, lengths)] = data
        cursor += lengths
    return out, row_lengths


def _join_rows(parts: Parts, rows: int) -> list[bytes]:
    """:func:`_scatter`, cut into one ``bytes`` per row."""
    data, lengths = _scatter(parts, rows)
    buffer = data.tobytes()
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return [buffer[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def _utf8(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of a string array without nulls, back to back, and each string's length."""
    offsets_type = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    buffers = strings.buffers()
    offsets = np.frombuffer(buffers[1], dtype=offsets_type)[
        strings.offset : strings.offset + len(strings) + 1
    ].astype(np.int64)
    if buffers[2] is None or not len(strings):
        return np.empty(0, dtype=_U8), np.diff(offsets)
    data = np.frombuffer(buffers[2], dtype=_U8)[offsets[0] : offsets[-1]]
    return data, np.diff(offsets)


def _string_parts(strings: pa.Array, tag: bytes) -> Parts:
    """Parts of ``tag``, length, bytes for each string (an array without nulls)."""
    data, lengths = _utf8(strings)
    every = np.ones(len(strings), dtype=bool)
    return [_constant(tag, every), varints(lengths), (data, lengths)]


def _row_sums(per_item: np.ndarray, items_per_row: np.ndarray) -> np.ndarray:
    """Sum of consecutive items' values for each row (rows own consecutive runs of items)."""
    cumulative = np.concatenate([[0], np.cumsum(per_item)])
    ends = np.cumsum(items_per_row)
    return np.asarray(cumulative[ends] - cumulative[ends - items_per_row], dtype=np.int64)


# ------------------------------------------------------------------ columns


def _present(column: pa.Array) -> np.ndarray:
    if column.null_count == 0:
        return np.ones(len(column), dtype=bool)
    return np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _scalar_parts(column: pa.Array, value_type: ValueType) -> Parts | None:
    present = _present(column)
    if value_type == ValueType.INT64 and pa.types.is_integer(column.type):
        values = pc.cast(column.fill_null(0), pa.int64()).to_numpy()
        return [
            _constant(_field("int64_val", _VARINT), present),
            _varints_where(values, present),
        ]
    if value_type == ValueType.DOUBLE and pa.types.is_floating(column.type):
        values = pc.cast(column.fill_null(0.0), pa.float64()).to_numpy()
        present &= ~np.isnan(values)  # Feast reads NaN as missing: the empty message
        data = np.ascontiguousarray(values[present], dtype="<f8").view(_U8)
        return [
            _constant(_field("double_val", _FIXED64), present),
            (data, present.astype(np.int64) * 8),
        ]
    if value_type == ValueType.STRING and (
        pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    ):
        parts = []
        for part_data, lengths in _string_parts(pc.drop_null(column), _field("string_val", 2)):
            per_row = np.zeros(len(column), dtype=np.int64)
            per_row[present] = lengths
            parts.append((part_data, per_row))
        return parts
    return None


_LIST_FIELDS = {
    ValueType.INT64_LIST: "int64_list_val",
    ValueType.DOUBLE_LIST: "double_list_val",
    ValueType.STRING_LIST: "string_list_val",
}


def _list_parts(column: pa.Array, value_type: ValueType) -> Parts | None:
    """``tag, len(inner), inner`` per row; inner = the list's items, packed for numbers."""
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        return None
    item_type = column.type.value_type
    items = column.flatten()  # the present rows' items, in order
    if items.null_count:
        return None  # Feast's conversion decides what a null item becomes
    present = _present(column)
    counts = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
    if value_type == ValueType.STRING_LIST and (
        pa.types.is_string(item_type) or pa.types.is_large_string(item_type)
    ):
        # Each item is (tag, length, bytes); a row's items are consecutive, so its payload is
        # one run of the items' encodings.
        encoded, item_lengths = _scatter(_string_parts(items, _LIST_ITEM), len(items))
        inner = _row_sums(item_lengths, counts)
        return [
            _constant(_field(_LIST_FIELDS[value_type], 2), present),
            _varints_where(inner, present),
            (encoded, inner),
        ]
    if value_type == ValueType.INT64_LIST and pa.types.is_integer(item_type):
        packed, lengths = varints(pc.cast(items, pa.int64()).to_numpy())
        packed_len = _row_sums(lengths, counts)
    elif value_type == ValueType.DOUBLE_LIST and pa.types.is_floating(item_type):
        values = pc.cast(items, pa.float64()).to_numpy()
        packed = np.ascontiguousarray(values, dtype="<f8").view(_U8)
        packed_len = counts * 8
    else:
        return None
    non_empty = counts > 0  # an empty list is an empty Int64List / DoubleList: no field
    packed_len_bytes, packed_len_lengths = _varints_where(packed_len, non_empty)
    inner = np.where(non_empty, len(_LIST_ITEM) + packed_len_lengths + packed_len, 0)
    return [
        _constant(_field(_LIST_FIELDS[value_type], 2), present),
        _varints_where(inner, present),
        _constant(_LIST_ITEM, non_empty),
        (packed_len_bytes, packed_len_lengths),
        (packed, packed_len),
    ]


def serialized_values(
    column: pa.Array | pa.ChunkedArray, value_type: ValueType
) -> list[bytes] | None:
    """``ValueProto(...).SerializeToString()`` of every row of a column, as Feast writes it.

    Args:
        column: One Arrow column.
        value_type: The feature's Feast value type.

    Returns:
        One serialized ValueProto per row (``b""`` for a missing value), or ``None`` when the
        column's type has no fast path here (use Feast's conversion).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if value_type in _LIST_FIELDS:
        parts = _list_parts(column, value_type)
    else:
        parts = _scalar_parts(column, value_type)
    return None if parts is None else _join_rows(parts, len(column))


def serialized_timestamps(column: pa.Array | pa.ChunkedArray) -> tuple[list[bytes], list[int]]:
    """Serialized ``Timestamp`` of event times, as Feast builds ``_ts:<view>``, and their ns.

    Feast converts each time to a ``datetime`` first (``Timestamp.FromDatetime``), so precision
    below a microsecond is dropped (floored); the nanoseconds returned are those of the proto.

    Args:
        column: Timestamps (any unit, any time zone: instants), no nulls.

    Returns:
        (serialized Timestamp per row, ``seconds * 1e9 + nanos`` per row).

    Raises:
        ValueError: If the column holds nulls or is no timestamp column.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_timestamp(column.type) or column.null_count:
        raise ValueError(f"event times must be non-null timestamps, not {column.type}")
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[column.type.unit]
    ticks = column.cast(pa.int64()).to_numpy()
    micros = ticks * (1_000_000 // per_second) if per_second <= 1_000_000 else ticks // 1_000
    seconds, nanos = np.divmod(micros, 1_000_000)
    nanos *= 1_000
    has_seconds, has_nanos = seconds != 0, nanos != 0
    parts = [
        _constant(_SECONDS, has_seconds),
        _varints_where(seconds, has_seconds),
        _constant(_NANOS, has_nanos),
        _varints_where(nanos, has_nanos),
    ]
    total = (seconds * 1_000_000_000 + nanos).tolist()
    return _join_rows(parts, len(column)), total


__all__ = ["serialized_timestamps", "serialized_values", "varint", "varints"]
