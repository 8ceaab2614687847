"""Operations: liveness, readiness, and the page at ``/``."""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import HTMLResponse, JSONResponse

from .gateway import Gateway, get_gateway

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(gateway: Annotated[Gateway, Depends(get_gateway)]) -> JSONResponse:
    """Broker and models reachable: ``200`` when all are, ``503`` otherwise."""
    checks = {"broker": await gateway.broker.ping()}
    if gateway.store is not None:
        checks["store"] = await gateway.store.ping()
    backends = {id(a.backend): a for a in gateway.assistants.values()}
    for assistant in backends.values():
        checks[f"model:{assistant.name}"] = await assistant.backend.ping()
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    html = resources.files("typewriter.web").joinpath("index.html").read_text("utf-8")
    return HTMLResponse(html, headers={"cache-control": "no-cache"})
