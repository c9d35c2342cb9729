"""Scoring endpoints: one transaction or a batch.

The routes are ``async def`` and hand the blocking scoring work (Redis reads and writes, the
prediction log's write) to the API's own thread pool (``SERVING_THREADS``), so the event loop
keeps answering ``/health`` and accepting connections whatever Redis does. A dedicated pool
measured faster than plain ``def`` routes on anyio's 40-thread pool (fewer threads fighting for
the GIL on two cores; ``benchmarks/bench_route_style.py``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError

from serving.deps import ApiKeyDep, ServiceDep
from serving.responses import FastJSONResponse
from serving.schemas import BatchIn, BatchOut, ErrorOut, ScoreOut, TransactionIn, ValidationErrorOut

# Every status the scoring routes can answer besides 200, documented in the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body could not be read."},
    401: {"model": ErrorOut, "description": "Missing or unknown `X-API-Key` (when keys are set)."},
    413: {"model": ErrorOut, "description": "Body larger than `MAX_BODY_BYTES`."},
    422: {"model": ValidationErrorOut, "description": "Invalid transaction; names every field."},
    503: {
        "model": ErrorOut,
        "description": "Online store unreachable or no model loaded yet; retry (`Retry-After`).",
    },
}

router = APIRouter(
    prefix="/predict", tags=["scoring"], dependencies=[ApiKeyDep], responses=ERROR_RESPONSES
)


async def in_pool(request: Request, work: Any, *args: Any) -> Any:
    """Run blocking work on the API's thread pool; the event loop stays free meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(request.app.state.pool, work, *args)


def check_batch_limit(request: Request, field: str, items: list[Any]) -> None:
    """Refuse a list longer than ``serve.batch_limit`` with a 422 that names the field."""
    limit: int = request.app.state.batch_limit
    if len(items) > limit:
        message = f"at most {limit} {field} per call, got {len(items)}"
        raise RequestValidationError([{"loc": ("body", field), "msg": message, "type": "too_long"}])


@router.post("", response_model=ScoreOut)
async def predict(
    transaction: TransactionIn, service: ServiceDep, request: Request
) -> FastJSONResponse:
    """Score one transaction and fold it into the customer's online state."""
    received = request.scope.get("fraud.received", time.perf_counter())
    results = await in_pool(request, service.score, [transaction], received)
    return FastJSONResponse(results[0])


@router.post("/batch", response_model=BatchOut)
async def predict_batch(batch: BatchIn, service: ServiceDep, request: Request) -> FastJSONResponse:
    """Score up to serve.batch_limit transactions (features read before the batch is ingested)."""
    check_batch_limit(request, "transactions", batch.transactions)
    received = request.scope.get("fraud.received", time.perf_counter())
    results = await in_pool(request, service.score, batch.transactions, received)
    return FastJSONResponse({"results": results})
