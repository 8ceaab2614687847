"""Operations: liveness and readiness, for load balancers and orchestrators (no auth)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse

from .gateway import GatewayDep

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(gateway: GatewayDep) -> JSONResponse:
    """Broker and models reachable: ``200`` when all are, ``503`` otherwise."""
    checks = {"broker": await gateway.health.ping()}
    checks["accepting"] = not gateway.draining  # stopping: send new asks elsewhere
    if gateway.store is not None:
        checks["store"] = await gateway.store.ping()
    backends = {id(a.backend): a for a in gateway.assistants.values()}
    for assistant in backends.values():
        checks[f"model:{assistant.name}"] = await assistant.backend.ping()
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
