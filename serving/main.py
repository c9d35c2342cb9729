"""The FastAPI app: ``uvicorn serving.main:app``.

The store, the feature reader, the state writer and the model are resolved once in the
lifespan; requests share them. See :mod:`serving.service` for the scoring path and
:mod:`serving.ingest` for the freshness decision.

:func:`create_app` takes its settings and the function that builds the scoring service, so a
test can run the real app (routes, validation, error handlers, middleware) on a fake service
with ``TestClient``; ``app`` below is the production one, on the process settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraud_platform.settings import Settings, get_settings, load_params
from serving.metrics import mark_worker_stopped, multiprocess_dir
from serving.responses import FastJSONResponse, json_bytes
from serving.routes import health, labels, predict
from serving.schemas import time_guard
from serving.service import ScoringService, ServiceUnavailableError, build_service

ServiceBuilder = Callable[[Settings], ScoringService]

logger = logging.getLogger("serving")


class BodyLimitAndMetrics:
    """Pure ASGI middleware: bound the body size (413), time and count every request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        """Wrap ``app``."""
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one HTTP request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope["fraud.received"] = started
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            declared = dict(scope.get("headers") or []).get(b"content-length")
            too_big = declared is not None and (
                not declared.isdigit() or int(declared) > self.max_body_bytes
            )
            if not too_big and scope["method"] in {"POST", "PUT", "PATCH"}:
                body, too_big = await self._read_body(receive)
                receive = _replay(body)
            if too_big:
                await _send_json(
                    send_wrapper, 413, {"detail": f"body larger than {self.max_body_bytes} bytes"}
                )
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
            if metrics is not None:
                metrics.requests.labels(endpoint, scope["method"], status_holder["status"]).inc()
                metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    async def _read_body(self, receive: Receive) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), False


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _send_json(send: Send, status: int, payload: Any) -> None:
    body = json_bytes(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _field_name(loc: tuple[Any, ...]) -> str:
    """``("body", "transactions", 0, "amount")`` -> ``transactions.0.amount``."""
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: Exception) -> FastJSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": _field_name(tuple(err.get("loc", ()))),
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "invalid")),
            "type": str(err.get("type", "value_error")),
        }
        for err in exc.errors()
    ]
    return FastJSONResponse({"detail": errors}, status_code=422)


async def _unavailable(request: Request, exc: Exception) -> FastJSONResponse:
    return FastJSONResponse(
        {"detail": str(exc), "error": "service_unavailable"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _unexpected(request: Request, exc: Exception) -> FastJSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return FastJSONResponse({"detail": "internal error", "error": "internal"}, status_code=500)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the scoring service once; drain ingestion and close the log on shutdown.

    Start-up does no network I/O (the model loads in the background, Redis is probed in the
    background), so uvicorn answers ``/health`` within a second of starting, whatever state
    Redis and MLflow are in.
    """
    settings: Settings = app.state.settings
    sys.setswitchinterval(settings.serving_switch_interval_ms / 1000)
    time_guard()  # read serve.* of params.yaml now: a bad file fails the start, not a request
    service = app.state.build_service(settings)
    app.state.service = service
    app.state.metrics = service.metrics
    app.state.batch_limit = load_params(settings.paths.params_file).serve.batch_limit
    app.state.pool = ThreadPoolExecutor(settings.serving_threads, thread_name_prefix="score")
    # Several workers: /metrics is answered by any one of them from every worker's files, so
    # each keeps its own gauges current (a counter is current as it counts).
    gauges = asyncio.create_task(_refresh_gauges(service)) if multiprocess_dir() else None
    try:
        yield
    finally:
        if gauges is not None:
            gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauges
        app.state.pool.shutdown(wait=True)
        service.close()
        mark_worker_stopped()


async def _refresh_gauges(service: ScoringService, every_seconds: float = 1.0) -> None:
    """Set this worker's state gauges every second (multi-worker ``/metrics``)."""
    while True:
        service.refresh_gauges()
        await asyncio.sleep(every_seconds)


def create_app(settings: Settings | None = None, build: ServiceBuilder = build_service) -> FastAPI:
    """Assemble the app: routes, error handlers, body limit and metrics middleware.

    Args:
        settings: API keys, body limit, root and addresses; the process settings by default.
        build: Builds the scoring service in the lifespan (:func:`serving.service.build_service`;
            a fake one in tests).

    Returns:
        The app; the service is built when it starts.
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="Fraud scoring API",
        summary="Scores card transactions on exact online velocity features (Feast + Redis).",
        version="1.0.0",
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
    )
    app.include_router(predict.router)
    app.include_router(labels.router)
    app.include_router(health.router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ServiceUnavailableError, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimitAndMetrics, max_body_bytes=settings.max_body_bytes)
    app.state.settings = settings
    app.state.build_service = build
    return app


app = create_app()
