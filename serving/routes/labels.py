"""Labels as they arrive: chargebacks and confirmations, folded online and journaled offline.

Labels reach a bank weeks after the transaction. ``POST /labels`` is how they reach the
platform without a manual command: each one is appended to the labels journal under
``data/ingested`` (in the OS before the answer), so the next feature build and training see it,
then folded into its merchant's online label state, so ``merchant_fraud_rate_30d`` moves at once.
Idempotent by transaction id: posting a label again changes nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from serving.deps import ApiKeyDep, ServiceDep
from serving.responses import FastJSONResponse
from serving.routes.predict import ERROR_RESPONSES, check_batch_limit, in_pool
from serving.schemas import LabelsIn, LabelsOut

router = APIRouter(
    prefix="/labels", tags=["labels"], dependencies=[ApiKeyDep], responses=ERROR_RESPONSES
)


@router.post("", response_model=LabelsOut)
async def post_labels(body: LabelsIn, service: ServiceDep, request: Request) -> FastJSONResponse:
    """Fold arrived labels into the online label state and journal them for training."""
    check_batch_limit(request, "labels", body.labels)
    return FastJSONResponse(await in_pool(request, service.ingest_labels, body.labels))
