"""Scoring endpoints: one transaction or a batch."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError

from serving.deps import ApiKeyDep, ServiceDep
from serving.schemas import BatchIn, BatchOut, ScoreOut, TransactionIn

router = APIRouter(prefix="/predict", tags=["scoring"], dependencies=[ApiKeyDep])


@router.post("", response_model=ScoreOut)
async def predict(transaction: TransactionIn, service: ServiceDep, request: Request) -> dict:
    """Score one transaction and fold it into the customer's online state."""
    received = request.scope.get("fraud.received", time.perf_counter())
    return service.score([transaction], received)[0]


@router.post("/batch", response_model=BatchOut)
async def predict_batch(batch: BatchIn, service: ServiceDep, request: Request) -> dict:
    """Score up to serve.batch_limit transactions (features read before the batch is ingested)."""
    limit: int = request.app.state.batch_limit
    if len(batch.transactions) > limit:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "transactions"),
                    "msg": f"at most {limit} transactions per batch, got {len(batch.transactions)}",
                    "type": "too_long",
                }
            ]
        )
    received = request.scope.get("fraud.received", time.perf_counter())
    return {"results": service.score(batch.transactions, received)}
