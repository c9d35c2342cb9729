"""JSON answers serialized with orjson, already shaped: no second validation on the way out.

The scoring routes build their answers as plain dicts of the documented shape (``ScoreOut``,
``BatchOut``, ``LabelsOut`` in :mod:`serving.schemas`, still the routes' ``response_model`` for
the OpenAPI schema). Returning them as a :class:`FastJSONResponse` skips FastAPI's validation
of the answer against that model and its serialization (together ~0.1 ms a request here);
``tests/unit/serving`` checks that a real answer is exactly what the model would have sent.
Requests are still validated by Pydantic.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


def json_bytes(content: Any) -> bytes:
    """``content`` as compact JSON (NumPy scalars as numbers, NaN as null)."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class FastJSONResponse(JSONResponse):
    """A ``JSONResponse`` rendered by orjson."""

    def render(self, content: Any) -> bytes:
        """Serialize the answer."""
        return json_bytes(content)
