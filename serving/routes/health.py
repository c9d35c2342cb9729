"""Liveness, readiness and Prometheus metrics (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import ServiceDep
from serving.schemas import HealthOut, ModelVersionOut, ReadyOut

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthOut)
async def health() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
async def ready(service: ServiceDep) -> JSONResponse:
    """Readiness: Redis answers and a model is loaded (503 with reasons otherwise)."""
    reasons = service.readiness()
    bundle = service.models.bundle
    body = ReadyOut(
        ready=not reasons,
        reasons=reasons,
        model_version=None
        if bundle is None
        else ModelVersionOut(name=bundle.name, version=bundle.version, run_id=bundle.run_id),
    )
    return JSONResponse(body.model_dump(), status_code=503 if reasons else 200)


@router.get("/metrics")
async def metrics(service: ServiceDep) -> Response:
    """Prometheus metrics in the text exposition format."""
    m = service.metrics
    bundle = service.models.bundle
    m.model_info.clear()
    if bundle is not None:
        m.model_info.labels(bundle.name, bundle.version, bundle.run_id).set(1)
    m.ingest_backlog.set(service.ingestor.backlog)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
