"""Who is calling: an API key, a ticket on an events URL, or the one local user.

The ``auth`` setting says whether keys are needed: ``on`` always, ``off`` never
(everyone is the local user), ``auto`` when an active user exists at start or
once one is added. Auth that is on never turns off while serving: revoking the
last user must lock the server, not open it. Every ``/v1`` router depends on one
of two dependencies, which put the caller's user id in ``request.state.user``
for ``Gateway.user_of``: :func:`require_key` (an API key) or, on the routers of
EventSource's URLs, which cannot send a header, :func:`key_or_ticket`.

Lookups are cached for a few seconds (a key → user, "is anyone configured"),
so a streaming page does not cost a database query per request; a revoked
key stops working within that time, and so do the event streams its user
has open (:meth:`Authenticator.end_revoked_streams`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from typing import Generic, Literal, Protocol, TypeVar
from urllib.parse import quote

from starlette.requests import Request
from starlette.types import Scope

from typewriter import tickets
from typewriter.errors import Unauthorized
from typewriter.store.users import UserStore

__all__ = [
    "CACHE_SECONDS",
    "LOCAL_USER",
    "AuthMode",
    "Authenticator",
    "key_or_ticket",
    "require_key",
    "signed_in_user",
]


class RevocableStreams(Protocol):
    """The open event-stream responses, as far as revoking users needs them
    (``event_stream.OpenStreams`` is one: auth names what it needs rather than import it)."""

    def users(self) -> set[str]: ...

    def end_for(self, users: set[str]) -> None: ...


LOCAL_USER = "local"
CACHE_SECONDS = 5.0
_CACHE_SIZE = 10_000
V = TypeVar("V")
AuthMode = Literal["auto", "on", "off"]


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
        self.put(key, value)
        return value

    def put(self, key: str, value: V) -> None:
        """What the store was just found to say, without asking it again."""
        if len(self._entries) >= _CACHE_SIZE:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), value)

    def drop_values(self, values: Collection[object]) -> None:
        """Forget every entry that answers one of ``values``: asked again, the store decides."""
        self._entries = {k: v for k, v in self._entries.items() if v[1] not in values}


class Authenticator:
    """Whether keys are needed, who a key or ticket is, and who was revoked since."""

    def __init__(
        self,
        users: UserStore | None,
        secret: Callable[[], bytes],
        ticket_ttl: float,
        mode: AuthMode = "auto",
    ) -> None:
        self.users = users
        self.mode: AuthMode = mode
        self._on = mode == "on"  # only ever set to True afterwards
        self._load_secret = secret  # loaded (or generated) only once auth is on
        self._secret: bytes | None = None
        self.ticket_ttl = ticket_ttl
        self._required: _Recent[bool] = _Recent()
        self._keys: _Recent[str | None] = _Recent()
        self._active: _Recent[bool] = _Recent()

    async def start(self) -> None:
        """``auto`` decides here, from the store as it is now, not at the first request:
        a user revoked in between must not leave the server open."""
        if self.mode == "auto" and self.users is not None and await self.users.active_count():
            self._on = True

    async def required(self) -> bool:
        if self._on:
            return True
        users = self.users
        if self.mode == "off" or users is None:
            return False
        if await self._required.get("", lambda: _positive(users.active_count())):
            self._on = True  # the first user was added: on for good
        return self._on

    async def user_for_key(self, key: str) -> str | None:
        users = self.users
        if users is None:  # auth on without a store: no key can exist
            return None
        return await self._keys.get(key, lambda: users.user_for_key(key))

    async def still_active(self, user_id: str) -> bool:
        users = self.users
        if users is None:
            return False
        return await self._active.get(user_id, lambda: users.is_active(user_id))

    async def end_revoked_streams(self, open_streams: RevocableStreams) -> None:
        """End the open responses of users revoked since they signed in.

        One query for the users of all open responses, run every ``CACHE_SECONDS``
        by the gateway: a stream opened with a key lives on after the key's cache
        entry expires, so without this a revoked user would keep reading. Their
        cached keys and tickets are dropped too, so the reconnect gets 401 at once.
        Once auth is on the local user is nobody: the streams opened before, with no
        key, end as well.
        """
        users = self.users
        if users is None or not await self.required():
            return
        following = open_streams.users()
        revoked = following & {LOCAL_USER}
        keyed = following - revoked
        if keyed:
            revoked |= keyed - await users.active_among(keyed)
        if not revoked:
            return
        for user in revoked:
            self._active.put(user, False)
        self._keys.drop_values(revoked)
        open_streams.end_for(revoked)

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


def signed_in_user(scope: Scope) -> str | None:
    """The user the auth dependency signed in for this request (``request.state.user``
    lives in the scope's state), or None before it ran."""
    state = scope.get("state") or {}
    user = state.get("user")
    return user if isinstance(user, str) else None


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
