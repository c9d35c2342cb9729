"""The fast readers type each feature as Feast's online response does.

``get_online_features`` converts an on-demand view's outputs to protobuf of the declared type
and back; :func:`serving.features.feast_typed` does the same conversion directly. Each case is
checked against Feast's own round trip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.value_type import ValueType

from serving.features import feast_typed

CASES = [
    (ValueType.DOUBLE, [1.5, 2, 0, None, float("nan"), np.float64(3.25), -0.0, 1e308]),
    (ValueType.FLOAT, [1.5, 2, None, float("nan")]),
    (ValueType.INT64, [1, 0, None, np.int64(7), True, -(2**62)]),
    (ValueType.INT32, [1, None, np.int32(-3)]),
    (ValueType.BOOL, [True, False, None]),
    (ValueType.STRING, ["a", "", None]),
    (ValueType.INT64_LIST, [[1, 2], [], None]),
]


def _feast_round_trip(value: Any, value_type: ValueType) -> Any:
    return feast_value_type_to_python_type(
        python_values_to_proto_values([value], value_type)[0], value_type
    )


@pytest.mark.parametrize(("value_type", "values"), CASES, ids=[c[0].name for c in CASES])
def test_typed_like_feasts_round_trip(value_type: ValueType, values: list[Any]) -> None:
    typed = feast_typed(value_type)
    for value in values:
        want = _feast_round_trip(value, value_type)
        got = typed(value)
        assert (type(got), got) == (type(want), want), value
