"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from serving.service import ScoringService

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


# Both dependencies are ``async def``: they do no I/O, and FastAPI would run a plain ``def``
# dependency on a worker thread, two thread hops per request.
async def get_service(request: Request) -> ScoringService:
    """The scoring service built at start-up."""
    service: ScoringService = request.app.state.service
    return service


async def require_api_key(
    request: Request, api_key: Annotated[str | None, Depends(_api_key_header)]
) -> None:
    """401 unless the ``X-API-Key`` header holds a configured key (open when none is set).

    The keys are the app's settings (``API_KEYS``), given to :func:`serving.main.create_app`.
    """
    keys = request.app.state.settings.api_key_list
    if not keys:
        return
    given = (api_key or "").encode()
    # Compare against every key (no early exit) in constant time per key.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    if not matched:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid X-API-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )


ServiceDep = Annotated[ScoringService, Depends(get_service)]
ApiKeyDep = Depends(require_api_key)
