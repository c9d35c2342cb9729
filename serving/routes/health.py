"""Liveness, readiness and Prometheus metrics (no API key needed).

None of them does I/O: ``/ready`` reads the state the online-store guard and the model loader
keep up to date in the background, so all three answer in microseconds during any outage.

``/ready`` stays 200, with a warning, when the served model's registry entry has disappeared
(version deleted, alias removed): the model in memory still scores correctly, and taking every
replica out of the load balancer because of a registry edit would turn it into an outage. The
warning, the ``fraud_api_model_registry_entry_missing`` gauge and an error in the log are there
for the operator; a new alias target is picked up by the next poll.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from serving.deps import ServiceDep
from serving.metrics import exposition
from serving.schemas import HealthOut, ModelVersionOut, ReadyOut

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthOut)
async def health() -> dict:
    """Liveness: the process answers (whatever Redis and MLflow do)."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready; `reasons` says why."}},
)
async def ready(service: ServiceDep) -> JSONResponse:
    """Readiness: Redis answers and a model is loaded (503 with reasons otherwise)."""
    reasons, warnings = service.readiness()
    bundle = service.models.bundle
    body = ReadyOut(
        ready=not reasons,
        reasons=reasons,
        warnings=warnings,
        model_version=None
        if bundle is None
        else ModelVersionOut(name=bundle.name, version=bundle.version, run_id=bundle.run_id),
    )
    return JSONResponse(body.model_dump(), status_code=503 if reasons else 200)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus metrics in the text exposition format."""
    service.refresh_gauges()
    return Response(exposition(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
