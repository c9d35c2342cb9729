"""Column-at-once ValueProto bytes equal protobuf's own serializer, value for value.

``feature_engine/online/value_encoding.py`` writes the protobuf wire format of Feast's ``Value``
(and the event time's ``Timestamp``) with NumPy; the reference here is ``ValueProto(...)`` built per
value and serialized by protobuf, with Feast's rules for missing values (null row -> empty message;
NaN double scalar -> empty message).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from feast.protos.feast.types.Value_pb2 import DoubleList, Int64List, StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from feature_engine.online.value_encoding import (
    serialized_timestamps,
    serialized_values,
    varint,
    varints,
)

INT64_EDGES = [0, 1, -1, 127, 128, 16_383, 16_384, 2**31, -(2**31), 2**62, 2**63 - 1, -(2**63)]


def _reference(value: Any, value_type: ValueType) -> bytes:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return b""  # Feast's missing value: a null row, or a NaN scalar
    proto = {
        ValueType.INT64: lambda v: ValueProto(int64_val=v),
        ValueType.DOUBLE: lambda v: ValueProto(double_val=v),
        ValueType.STRING: lambda v: ValueProto(string_val=v),
        ValueType.INT64_LIST: lambda v: ValueProto(int64_list_val=Int64List(val=v)),
        ValueType.DOUBLE_LIST: lambda v: ValueProto(double_list_val=DoubleList(val=v)),
        ValueType.STRING_LIST: lambda v: ValueProto(string_list_val=StringList(val=v)),
    }[value_type](value)
    serialized: bytes = proto.SerializeToString()
    return serialized


CASES: dict[str, tuple[pa.DataType, ValueType, list[Any]]] = {
    "int64": (pa.int64(), ValueType.INT64, [*INT64_EDGES, None, 5]),
    "int32 as int64": (pa.int32(), ValueType.INT64, [0, -7, 2**31 - 1, None]),
    "double": (
        pa.float64(),
        ValueType.DOUBLE,
        [0.0, -0.0, 1.5, -2.25e-300, float("inf"), float("-inf"), float("nan"), None, 1e308],
    ),
    "string": (pa.string(), ValueType.STRING, ["", "a", "ünïcødé ✓ 𝄞", None, "x" * 300]),
    "large string": (pa.large_string(), ValueType.STRING, ["b", None, "çà"]),
    "int64 list": (
        pa.list_(pa.int64()),
        ValueType.INT64_LIST,
        [[], INT64_EDGES, None, [1_769_817_589_000_000] * 3, [-1], []],
    ),
    "double list": (
        pa.list_(pa.float64()),
        ValueType.DOUBLE_LIST,
        [[], [0.0, -0.0, float("nan"), float("inf")], None, [1.25] * 40, []],
    ),
    "string list": (
        pa.list_(pa.string()),
        ValueType.STRING_LIST,
        [[], ["", "a"], None, ["ünïcødé", "x" * 200, "t1\x1fc2"], [], [""]],
    ),
    "large list of large strings": (
        pa.large_list(pa.large_string()),
        ValueType.STRING_LIST,
        [["z"], None, []],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_column_bytes_equal_protobufs_per_value(case: str) -> None:
    arrow_type, value_type, values = CASES[case]
    column = pa.array(values, type=arrow_type)
    expected = [_reference(v, value_type) for v in values]
    assert serialized_values(column, value_type) == expected
    # a sliced, chunked column (offsets into shared buffers) gives the same bytes
    chunked = pa.chunked_array([column.slice(0, 2), column.slice(2)])
    assert serialized_values(chunked, value_type) == expected
    assert serialized_values(column.slice(1), value_type) == expected[1:]


def test_random_columns_equal_protobuf() -> None:
    rng = np.random.default_rng(11)
    lengths = rng.integers(0, 50, 500)
    ints = [rng.integers(-(2**62), 2**62, n).tolist() for n in lengths]
    doubles = [rng.normal(0, 1e6, n).tolist() for n in lengths]
    strings = [[f"m{x}" * int(x % 7) for x in rng.integers(0, 10**6, n)] for n in lengths]
    for values, arrow_type, value_type in [
        (ints, pa.list_(pa.int64()), ValueType.INT64_LIST),
        (doubles, pa.list_(pa.float64()), ValueType.DOUBLE_LIST),
        (strings, pa.list_(pa.string()), ValueType.STRING_LIST),
    ]:
        got = serialized_values(pa.array(values, type=arrow_type), value_type)
        assert got == [_reference(v, value_type) for v in values]


def test_lists_with_null_items_and_other_types_are_left_to_feast() -> None:
    assert serialized_values(pa.array([[1, None]]), ValueType.INT64_LIST) is None
    assert serialized_values(pa.array([1.5]), ValueType.INT64) is None
    assert serialized_values(pa.array([True]), ValueType.BOOL) is None
    assert serialized_values(pa.array([["a"]]), ValueType.INT64_LIST) is None


def test_varints_equal_protobuf_int64_encoding() -> None:
    values = np.array(INT64_EDGES, dtype=np.int64)
    data, lengths = varints(values)
    expected = [varint(int(v)) for v in values]
    assert data.tobytes() == b"".join(expected)
    assert lengths.tolist() == [len(e) for e in expected]
    # protobuf's own: int64_val is field 4, tag 0x20
    assert all(b"\x20" + e == ValueProto(int64_val=int(v)).SerializeToString()
               for v, e in zip(values, expected, strict=True))  # fmt: skip


def _feasts_timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)  # what Feast's Redis write does with the row's event time
    return ts


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_event_times_equal_feasts_timestamp(unit: str) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    moments = [
        epoch,  # both fields zero: the empty message
        epoch + timedelta(microseconds=1),  # nanos only
        datetime(2026, 1, 31, 0, 0, 1, tzinfo=UTC),  # seconds only
        datetime(2026, 1, 31, 12, 34, 56, 789_012, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),  # before the epoch
    ]
    column = pa.array(moments, type=pa.timestamp("us", tz="UTC"))
    if unit != "us":
        column = column.cast(pa.timestamp(unit, tz="UTC"), safe=False)
    # the instants the column holds, as the datetimes Feast's conversion would see
    held = column.cast(pa.timestamp("us", tz="UTC")).to_pylist()
    assert unit != "us" or held == moments
    stamps = [_feasts_timestamp(m) for m in held]
    data, nanos = serialized_timestamps(column)
    assert data == [ts.SerializeToString() for ts in stamps]
    assert nanos == [ts.seconds * 1_000_000_000 + ts.nanos for ts in stamps]


def test_nanosecond_times_drop_below_a_microsecond_as_feast_does() -> None:
    column = pa.array([1_769_817_589_123_456_789], type=pa.timestamp("ns", tz="UTC"))
    data, nanos = serialized_timestamps(column)
    assert nanos == [1_769_817_589_123_456_000]
    assert Timestamp.FromString(data[0]).nanos == 123_456_000


def test_null_event_times_are_refused() -> None:
    with pytest.raises(ValueError, match="non-null"):
        serialized_timestamps(pa.array([None], type=pa.timestamp("us", tz="UTC")))


def test_string_entity_keys_equal_feasts_serialization() -> None:
    from types import SimpleNamespace

    from feature_engine.online.redis_layout import _entity_keys, entity_key

    config: Any = SimpleNamespace(project="fraud_platform", entity_key_serialization_version=3)
    ids = ["c00001", "", "ünïcødé ✓", "x" * 300, "m 1"]
    batch = pa.record_batch({"customer_id": pa.array(ids)})
    expected = [entity_key(config, ["customer_id"], [ValueProto(string_val=i)]) for i in ids]
    assert _entity_keys(config, {"customer_id": ValueType.STRING}, batch) == expected
    # an int key has no fast path: Feast's own serialization, still the same keys
    ints = pa.record_batch({"n": pa.array([3, -1], type=pa.int64())})
    expected_ints = [entity_key(config, ["n"], [ValueProto(int64_val=v)]) for v in (3, -1)]
    assert _entity_keys(config, {"n": ValueType.INT64}, ints) == expected_ints
