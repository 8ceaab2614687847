"""Who is calling: an API key, a ticket on an events URL, or the one local user.

Auth is on as soon as one active user exists in the store; with none, everyone
is the local user (and ``serve`` only listens on loopback unless told
``--insecure``). Every ``/v1`` router depends on one of two dependencies, which
put the caller's user id in ``request.state.user`` for ``Gateway.user_of``:
:func:`require_key` (an API key) or, on the routers of EventSource's URLs,
which cannot send a header, :func:`key_or_ticket`.

Lookups are cached for a few seconds (a key → user, "is anyone configured"),
so a streaming page does not cost a database query per request; a revoked
key stops working within that time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar
from urllib.parse import quote

from starlette.requests import Request

from typewriter import tickets
from typewriter.errors import Unauthorized
from typewriter.store.users import UserStore

__all__ = ["LOCAL_USER", "Authenticator", "key_or_ticket", "require_key"]

LOCAL_USER = "local"
CACHE_SECONDS = 5.0
_CACHE_SIZE = 10_000
V = TypeVar("V")


class _Recent(Generic[V]):
    """Answers of the store for ``CACHE_SECONDS``, at most ``_CACHE_SIZE`` of them.

    Bounded by clearing: wrong keys sent in a loop must not grow it.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, V]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[V]]) -> V:
        cached = self._entries.get(key)
        if cached is not None and time.monotonic() - cached[0] <= CACHE_SECONDS:
            return cached[1]
        value = await load()
        if len(self._entries) >= _CACHE_SIZE:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), value)
        return value


class Authenticator:
    def __init__(
        self, users: UserStore | None, secret: Callable[[], bytes], ticket_ttl: float
    ) -> None:
        self.users = users
        self._load_secret = secret  # loaded (or generated) only once auth is on
        self._secret: bytes | None = None
        self.ticket_ttl = ticket_ttl
        self._required: _Recent[bool] = _Recent()
        self._keys: _Recent[str | None] = _Recent()
        self._active: _Recent[bool] = _Recent()

    async def required(self) -> bool:
        users = self.users
        if users is None:
            return False
        return await self._required.get("", lambda: _positive(users.active_count()))

    async def user_for_key(self, key: str) -> str | None:
        assert self.users is not None
        users = self.users
        return await self._keys.get(key, lambda: users.user_for_key(key))

    async def still_active(self, user_id: str) -> bool:
        assert self.users is not None
        users = self.users
        return await self._active.get(user_id, lambda: users.is_active(user_id))

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = self._load_secret()
        return self._secret

    def ticket(self, user: str, scope: str) -> str:
        return tickets.issue(self.secret, user, scope, time.time() + self.ticket_ttl)

    async def from_ticket(self, ticket: str, scope: str) -> str:
        user = tickets.verify(self.secret, ticket, scope, time.time())
        if not await self.still_active(user):
            raise Unauthorized("the ticket's user was revoked", code="invalid_ticket")
        return user

    async def events_url(self, user: str, stream_id: str | None = None) -> str:
        """A stream's (or, without one, the channel's) events URL; with a ticket when auth is on."""
        url = "/v1/events" if stream_id is None else f"/v1/streams/{stream_id}/events"
        if not await self.required():
            return url
        return f"{url}?ticket={quote(self.ticket(user, tickets.scope_of(stream_id)))}"


async def _positive(count: Awaitable[int]) -> bool:
    return await count > 0


async def require_key(request: Request) -> None:
    """Router dependency: the caller's API key sets ``request.state.user``, or 401."""
    await _sign_in(request, None)


async def key_or_ticket(request: Request) -> None:
    """Router dependency of EventSource's URLs: an API key, or a ticket for this URL.

    Every route of such a router is an events URL: the one of the stream its path
    names, or without a ``stream_id`` the user's channel; a ticket opens no other.
    """
    stream_id = request.path_params.get("stream_id")
    await _sign_in(request, tickets.scope_of(None if stream_id is None else str(stream_id)))


async def _sign_in(request: Request, ticket_scope: str | None) -> None:
    auth: Authenticator = request.app.state.gateway.auth
    if not await auth.required():
        request.state.user = LOCAL_USER
        return
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, key = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized(
                "malformed Authorization header: expected 'Bearer <api key>'",
                code="invalid_api_key",
            )
        user = await auth.user_for_key(key.strip())
        if user is None:
            raise Unauthorized("the API key is not valid", code="invalid_api_key")
        request.state.user = user
        return
    ticket = request.query_params.get("ticket")
    if ticket is not None and ticket_scope is not None:
        request.state.user = await auth.from_ticket(ticket, ticket_scope)
        return
    raise Unauthorized(
        "this call needs an API key: send 'Authorization: Bearer <api key>'",
        code="missing_api_key",
    )
