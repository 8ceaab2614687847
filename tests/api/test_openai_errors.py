"""``OpenAIRoute``: the error shape follows the route, whatever raised the error.

A small app of its own, with the gateway's error handlers and two routers that
raise the same errors: one of ``OpenAIRoute``s and one of plain routes. The
OpenAI routes answer in OpenAI's shape for errors of the handler, of a router
dependency and of the routing itself (405); the plain routes, in the same app,
keep the contract's shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from typewriter.api.error_handlers import install_error_handlers
from typewriter.api.openai_errors import OPENAI_TAG, OpenAIRoute
from typewriter.errors import NotFound, TooManyRequests, Unauthorized

pytestmark = pytest.mark.anyio


async def signed_in(request: Request) -> None:
    if request.headers.get("authorization") != "Bearer ok":
        raise Unauthorized("no key", code="missing_api_key")


async def limited(request: Request) -> None:
    if "x-flood" in request.headers:
        raise TooManyRequests("slow down", retry_after=3)


def routes(router: APIRouter) -> APIRouter:
    @router.get("/thing/{name}")
    async def thing(name: str, count: int = Query(1, ge=1)) -> dict[str, Any]:
        if name == "missing":
            raise NotFound("no such thing", code="thing_not_found", param="name")
        if name == "broken":
            raise RuntimeError("a bug")
        if name == "late":  # fails in the response, after the handler returned
            return _FailsBeforeStart()  # type: ignore[return-value]
        return {"name": name, "count": count}

    return router


class _FailsBeforeStart(Response):
    """A response that fails before sending anything (as a completion does when its
    answer cannot be read)."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotFound("gone while answering", code="late_not_found")


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    policy = [Depends(signed_in), Depends(limited)]
    app.include_router(
        routes(APIRouter(prefix="/openai", route_class=OpenAIRoute)), dependencies=policy
    )
    app.include_router(routes(APIRouter(prefix="/plain")), dependencies=policy)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"authorization": "Bearer ok"}
    ) as http:
        yield http


CASES: list[tuple[str, str, dict[str, str], int, str, str, str | None]] = [
    # (method, path after the prefix, headers, OpenAI status, type, code, param)
    ("GET", "/thing/missing", {}, 404, "invalid_request_error", "thing_not_found", "name"),
    ("GET", "/thing/x?count=0", {}, 400, "invalid_request_error", "invalid_field", "query.count"),
    ("GET", "/thing/broken", {}, 500, "server_error", "internal_error", None),
    ("GET", "/thing/x", {"authorization": "Basic no"}, 401, "authentication_error",
     "missing_api_key", None),
    ("GET", "/thing/x", {"x-flood": "1"}, 429, "rate_limit_error", "rate_limited", None),
    ("POST", "/thing/x", {}, 405, "invalid_request_error", "method_not_allowed", None),
    ("GET", "/thing/late", {}, 404, "invalid_request_error", "late_not_found", None),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "headers", "status", "kind", "code", "param"), CASES)
async def test_openai_routes_answer_every_error_in_openais_shape(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    kind: str,
    code: str,
    param: str | None,
) -> None:
    response = await client.request(method, f"/openai{path}", headers=headers)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert (error["type"], error["code"], error["param"]) == (kind, code, param)
    plain = await client.request(method, f"/plain{path}", headers=headers)
    assert set(plain.json()["error"]) <= {"code", "message", "fields", "param"}
    assert plain.json()["error"]["code"] == code
    assert plain.status_code == (422 if status == 400 else status)
    for name in ("retry-after", "www-authenticate", "allow"):  # headers survive the reshaping
        assert response.headers.get(name) == plain.headers.get(name), name


def test_every_openai_route_is_tagged_so_the_openapi_document_shows_its_errors() -> None:
    app = make_app()
    tags = {
        path: [op.get("tags", []) for op in operations.values()]
        for path, operations in app.openapi()["paths"].items()
    }
    assert tags == {"/openai/thing/{name}": [[OPENAI_TAG]], "/plain/thing/{name}": [[]]}
