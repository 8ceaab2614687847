"""The API's calls without any I/O: each method builds a ``Call`` (the request to send and
how to read its reply); a transport sends it and hands the reply back.

This is the client's sans-I/O core for everything but following a stream (``follow.py``).
It is why ``Client`` and ``AsyncClient`` are thin: the paths, bodies, query parameters,
which fields are left out when None, and the decoding of every reply (errors included,
through ``errors.api_error``) are written once, here, and tested once. A transport's
whole job is ``reply = send(call.request); return call.result(reply)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote, urljoin

from typewriter.client.errors import ProtocolError, api_error
from typewriter.client.records import Asked, Assistants

__all__ = ["DEFAULT_URL", "Api", "Call", "Reply", "Request"]

DEFAULT_URL = "http://127.0.0.1:8000"
T = TypeVar("T")
ExportFormat = Literal["markdown", "json"]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, absolute URL included, ready for any transport."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: status, headers, the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A request and how to read its successful reply; errors are read the same for all."""

    request: Request
    read: Callable[[Reply], T]

    def result(self, reply: Reply) -> T:
        if reply.status >= 400:
            raise api_error(reply.status, reply.headers, reply.body)
        return self.read(reply)


class Api:
    """The base URL, the key, and a builder per endpoint of the contract (docs/api.md).

    ``base_url`` None reads ``TYPEWRITER_URL``, then the local default; ``api_key``
    None reads ``TYPEWRITER_API_KEY``, then goes without (a server with auth off).
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None) -> None:
        url = base_url or os.environ.get("TYPEWRITER_URL") or DEFAULT_URL
        self.base_url = url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get("TYPEWRITER_API_KEY")
        self.headers: dict[str, str] = {"accept": "application/json"}
        if key:
            self.headers["authorization"] = f"Bearer {key}"

    def url(self, path: str) -> str:
        """An absolute URL: a path of the API, or an ``events_url`` as the server gave it."""
        return urljoin(self.base_url + "/", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: Mapping[str, object] | None = None,
    ) -> Request:
        headers = dict(self.headers)
        body = None
        if json_body is not None:
            headers["content-type"] = "application/json"
            body = json.dumps(json_body, ensure_ascii=False).encode()
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        return Request(method, self.url(path), headers, query, body)

    # -- asking ---------------------------------------------------------------------------

    def ask(
        self,
        message: str,
        *,
        conversation_id: str | None = None,
        parent_id: str | None = None,
        assistant: str | None = None,
        options: dict[str, Any] | None = None,
        images: list[str] | None = None,
    ) -> Call[Asked]:
        body = _ask_body(message, conversation_id, parent_id, assistant, options, images)
        return Call(self.request("POST", "/v1/chat", json_body=body), _asked)

    def ask_direct(
        self,
        message: str,
        *,
        conversation_id: str | None = None,
        parent_id: str | None = None,
        assistant: str | None = None,
        options: dict[str, Any] | None = None,
        images: list[str] | None = None,
    ) -> Request:
        """The same ask answered in its own response (``Accept: text/event-stream``): one
        round trip less before the first token. ``on_disconnect: continue`` keeps the
        answer going if that response is cut, so it can be resumed by its ``X-Stream-Id``
        like any other; Stop stays the explicit cancel."""
        body = _ask_body(message, conversation_id, parent_id, assistant, options, images)
        body["on_disconnect"] = "continue"
        request = self.request("POST", "/v1/chat", json_body=body)
        request.headers["accept"] = "text/event-stream"
        return request

    def regenerate(
        self,
        message_id: str,
        *,
        assistant: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> Call[Asked]:
        body = _fields(assistant=assistant, options=options)
        path = f"/v1/messages/{_segment(message_id)}/regenerate"
        return Call(self.request("POST", path, json_body=body), _asked)

    def edit(
        self,
        message_id: str,
        message: str,
        *,
        assistant: str | None = None,
        options: dict[str, Any] | None = None,
        images: list[str] | None = None,
    ) -> Call[Asked]:
        body = _fields(
            message=message, assistant=assistant, options=options, images=_images(images)
        )
        path = f"/v1/messages/{_segment(message_id)}/edit"
        return Call(self.request("POST", path, json_body=body), _asked)

    def cancel(self, stream_id: str) -> Call[bool]:
        path = f"/v1/streams/{_segment(stream_id)}/cancel"
        return Call(self.request("POST", path), lambda r: bool(_object(r).get("finished")))

    def ticket(self, stream_id: str | None = None) -> Call[dict[str, Any]]:
        body = _fields(stream_id=stream_id)
        return Call(self.request("POST", "/v1/tickets", json_body=body), _object)

    def assistants(self) -> Call[Assistants]:
        return Call(self.request("GET", "/v1/assistants"), _assistants)

    # -- conversations --------------------------------------------------------------------

    def conversations(self, **query: object) -> Call[list[dict[str, Any]]]:
        return Call(self.request("GET", "/v1/conversations", params=query), _data)

    def conversation(self, conversation_id: str) -> Call[dict[str, Any]]:
        path = f"/v1/conversations/{_segment(conversation_id)}"
        return Call(self.request("GET", path), _object)

    def branch(self, conversation_id: str, *, through: str | None = None) -> Call[dict[str, Any]]:
        path = f"/v1/conversations/{_segment(conversation_id)}/branch"
        return Call(self.request("GET", path, params={"through": through}), _object)

    def create_conversation(
        self, *, title: str | None = None, assistant: str | None = None
    ) -> Call[dict[str, Any]]:
        body = _fields(title=title, assistant=assistant)
        return Call(self.request("POST", "/v1/conversations", json_body=body), _object)

    def rename_conversation(self, conversation_id: str, title: str) -> Call[dict[str, Any]]:
        path = f"/v1/conversations/{_segment(conversation_id)}"
        return Call(self.request("PATCH", path, json_body={"title": title}), _object)

    def delete_conversation(self, conversation_id: str) -> Call[None]:
        path = f"/v1/conversations/{_segment(conversation_id)}"
        return Call(self.request("DELETE", path), _nothing)

    def clear_messages(self, conversation_id: str) -> Call[None]:
        path = f"/v1/conversations/{_segment(conversation_id)}/messages"
        return Call(self.request("DELETE", path), _nothing)

    def export(
        self,
        conversation_id: str,
        *,
        format: ExportFormat = "markdown",
        through: str | None = None,
    ) -> Call[str]:
        path = f"/v1/conversations/{_segment(conversation_id)}/export"
        params = {"format": format, "through": through}
        return Call(self.request("GET", path, params=params), _text)

    def feedback(
        self, message_id: str, rating: int, comment: str | None = None
    ) -> Call[dict[str, Any]]:
        body = _fields(rating=rating, comment=comment)
        path = f"/v1/messages/{_segment(message_id)}/feedback"
        return Call(self.request("POST", path, json_body=body), _object)

    def usage(
        self,
        *,
        from_: str | date | None = None,
        to: str | date | None = None,
        assistant: str | None = None,
    ) -> Call[dict[str, Any]]:
        params = {"from": from_, "to": to, "assistant": assistant}
        return Call(self.request("GET", "/v1/usage", params=params), _object)


def _ask_body(
    message: str,
    conversation_id: str | None,
    parent_id: str | None,
    assistant: str | None,
    options: dict[str, Any] | None,
    images: list[str] | None,
) -> dict[str, Any]:
    """The body of ``POST /v1/chat``, for both ways of receiving the answer."""
    return _fields(
        message=message,
        conversation_id=conversation_id,
        parent_id=parent_id,
        assistant=assistant,
        options=options,
        images=_images(images),
    )


def _fields(**values: Any) -> dict[str, Any]:
    """The body's fields, without those left None: the server's defaults apply to them."""
    return {k: v for k, v in values.items() if v is not None}


def _images(images: list[str] | None) -> list[dict[str, str]] | None:
    return None if images is None else [{"data_url": url} for url in images]


def _segment(value: str) -> str:
    """An id as one path segment: a stray ``/`` or ``?`` cannot reach another route."""
    return quote(value, safe="")


def _param(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _object(reply: Reply) -> dict[str, Any]:
    try:
        value = json.loads(reply.body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProtocolError(f"expected a JSON object, got {reply.body[:80]!r}")
    return value


def _asked(reply: Reply) -> Asked:
    body = _object(reply)
    try:
        return Asked.of(body)
    except KeyError as exc:
        raise ProtocolError(f"the ask's answer lacks {exc}: {reply.body[:200]!r}") from None


def _assistants(reply: Reply) -> Assistants:
    body = _object(reply)
    default = body.get("default")
    return Assistants(_list(body), default if isinstance(default, str) else None)


def _data(reply: Reply) -> list[dict[str, Any]]:
    return _list(_object(reply))


def _list(body: dict[str, Any]) -> list[dict[str, Any]]:
    data = body.get("data")
    if not isinstance(data, list):
        raise ProtocolError(f"expected a 'data' list, got {str(body)[:80]!r}")
    return [item for item in data if isinstance(item, dict)]


def _text(reply: Reply) -> str:
    return reply.body.decode("utf-8")


def _nothing(reply: Reply) -> None:
    return None
