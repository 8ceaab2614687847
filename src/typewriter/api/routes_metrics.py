"""``GET /metrics``: the Prometheus exposition of this replica's metrics.

With auth off it is open, like everything else. With auth on it needs its own
bearer token, ``metrics_token``, never a user's API key, so a scraper's secret
opens nothing else; without a ``metrics_token`` it is refused (403). Where the
request comes from does not matter: a proxy on the same host (nginx) connects
from loopback too, so trusting loopback would make the metrics public.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException
from starlette.responses import Response

from typewriter.errors import Unauthorized

from .gateway import Gateway, GatewayDep

__all__ = ["router"]

router = APIRouter()


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"description": "auth is on: the metrics_token is missing or wrong"},
        403: {"description": "auth is on and no metrics_token is set"},
    },
)
async def metrics(request: Request, gateway: GatewayDep) -> Response:
    """This replica's metrics in Prometheus's text format."""
    await _check_scraper(request, gateway)
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _check_scraper(request: Request, gateway: Gateway) -> None:
    if not await gateway.auth.required():
        return
    token = gateway.settings.metrics_token
    if token is None or not token.get_secret_value():
        raise HTTPException(
            403,
            "metrics are off: auth is on and no metrics_token is set "
            "(set TYPEWRITER_METRICS_TOKEN and scrape with 'Authorization: Bearer <token>')",
        )
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise Unauthorized("GET /metrics needs 'Authorization: Bearer <metrics_token>'")
