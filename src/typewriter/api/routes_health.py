"""Operations: liveness and readiness, for load balancers and orchestrators (no auth).

``/readyz`` answers ``503`` only for what is wrong with this replica, which
another replica may not share: its store cannot write, its broker cannot be
reached. The upstreams are the same for every replica, so one being down is
reported in the body but never fails readiness: it would take every replica,
and with them the page and the history, out of the load balancer at once.
Each upstream is asked at most once per ``upstream_check_interval`` (concurrent
calls share the check, and a request's own attempts count as news), so
``/readyz`` stays cheap however often it is polled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from starlette.responses import JSONResponse

from typewriter.models.health import UpstreamState

from .gateway import Gateway, GatewayDep

__all__ = ["router"]

router = APIRouter()

ReplicaCheck = Callable[[], Awaitable[bool]]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(gateway: GatewayDep) -> JSONResponse:
    """This replica can serve: ``200`` when every replica check passes, ``503`` otherwise;
    each upstream's state in the body either way."""
    checks = _replica_checks(gateway)
    results, upstreams = await asyncio.gather(
        asyncio.gather(*(check() for check in checks.values())), _upstream_states(gateway)
    )
    passed = dict(zip(checks, results, strict=True))
    ready = all(passed.values())
    body = {
        "ready": ready,
        "checks": passed,
        "upstreams": {state.name: state.public() for state in upstreams},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


def _replica_checks(gateway: Gateway) -> dict[str, ReplicaCheck]:
    """What this replica needs to serve, by name; any one false turns ``/readyz`` 503.

    A replica's own conditions belong here (draining is one); shared
    dependencies, as the upstreams, do not.
    """
    checks: dict[str, ReplicaCheck] = {
        "broker": gateway.health.ping,
        "accepting": _accepting(gateway),
    }
    if gateway.store is not None:
        checks["store"] = gateway.store.can_write
    return checks


def _accepting(gateway: Gateway) -> ReplicaCheck:
    """False from the first SIGTERM on: the replica drains, new asks go elsewhere."""

    async def accepting() -> bool:
        return not gateway.draining

    return accepting


async def _upstream_states(gateway: Gateway) -> list[UpstreamState]:
    """Each upstream once, though several assistants may share it."""
    backends = {id(a.backend): a.backend for a in gateway.assistants.values()}
    found = await asyncio.gather(*(b.check_upstreams() for b in backends.values()))
    return list({state.name: state for states in found for state in states}.values())
