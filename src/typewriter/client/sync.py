"""``Client``: the API over ``httpx.Client``, following streams with automatic resume.

A thin transport: each method sends the ``Call`` that ``calls.Api`` builds and returns
its result; ``follow`` drives a ``follow.Follower``. No decision about requests, errors
or resuming is made here (see those modules), so ``AsyncClient`` cannot drift from it.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from datetime import date
from typing import Any, TypeVar

import httpx

from typewriter.client import httpx_glue as http_glue
from typewriter.client.calls import Api, Call, ExportFormat, Reply
from typewriter.client.errors import ConnectionFailed
from typewriter.client.follow import Follower, ResumePolicy
from typewriter.client.records import Asked, Assistants, StreamEvent

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """The gateway's API, synchronously. See docs/client.md.

    ``base_url`` None reads ``TYPEWRITER_URL`` (else ``http://127.0.0.1:8000``);
    ``api_key`` None reads ``TYPEWRITER_API_KEY`` (else no key). ``max_reconnects``
    consecutive reconnects that deliver nothing make ``follow`` give up.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_reconnects: int = 10,
        transport: httpx.BaseTransport | None = None,
        resume: ResumePolicy | None = None,
    ) -> None:
        self._api = Api(base_url, api_key)
        self._timeout = timeout
        self._resume = resume or ResumePolicy(max_reconnects=max_reconnects)
        self._http = httpx.Client(transport=transport, timeout=http_glue.timeout(timeout))

    @property
    def base_url(self) -> str:
        return self._api.base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        request = call.request
        try:
            response = self._http.request(
                request.method,
                request.url,
                headers=request.headers,
                params=request.params,
                content=request.body,
            )
        except httpx.TransportError as exc:
            raise ConnectionFailed(self._api.base_url, http_glue.reason(exc)) from None
        return call.result(Reply(response.status_code, response.headers, response.content))

    # -- asking and following -------------------------------------------------------------

    def ask(
        self,
        message: str,
        *,
        conversation_id: str | None = None,
        parent_id: str | None = None,
        assistant: str | None = None,
        options: dict[str, Any] | None = None,
        images: list[str] | None = None,
    ) -> Asked:
        """Start an answer (detached): the stream to follow, the ids of what was stored."""
        return self._send(
            self._api.ask(
                message,
                conversation_id=conversation_id,
                parent_id=parent_id,
                assistant=assistant,
                options=options,
                images=images,
            )
        )

    def follow(self, target: Asked | str, *, after: int = 0) -> Generator[StreamEvent, None, None]:
        """Every event after ``after`` until ``end``, resuming across dropped connections."""
        yield from self._drive(Follower(self._api, target, after=after, policy=self._resume))

    def _drive(self, follower: Follower) -> Generator[StreamEvent, None, None]:
        """Make the connections ``follower`` asks for and feed it what they give."""
        while not follower.done:
            request = follower.request()
            try:
                with self._http.stream(
                    request.method,
                    request.url,
                    headers=request.headers,
                    content=request.body,
                    timeout=http_glue.follow_timeout(self._timeout),
                ) as response:
                    if not follower.accepts(response.status_code, response.headers):
                        follower.refused(response.status_code, response.headers, response.read())
                    else:
                        for chunk in response.iter_bytes():
                            yield from follower.feed(chunk)
                            if follower.done:
                                return
                        follower.closed()
            except httpx.TransportError as exc:
                follower.lost(http_glue.reason(exc))
            if not follower.done:
                time.sleep(follower.delay)

    def stream(
        self,
        message: str,
        *,
        conversation_id: str | None = None,
        parent_id: str | None = None,
        assistant: str | None = None,
        options: dict[str, Any] | None = None,
        images: list[str] | None = None,
        direct: bool = False,
    ) -> Generator[StreamEvent, None, None]:
        """Ask, then follow the answer (its first event, ``start``, names the stream).

        ``direct`` asks for the answer in the ask's own response (one round trip less);
        a cut is resumed all the same once the response has named its stream.
        """
        if direct:
            ask = self._api.ask_direct(
                message,
                conversation_id=conversation_id,
                parent_id=parent_id,
                assistant=assistant,
                options=options,
                images=images,
            )
            yield from self._drive(Follower.asking(self._api, ask, policy=self._resume))
            return
        asked = self.ask(
            message,
            conversation_id=conversation_id,
            parent_id=parent_id,
            assistant=assistant,
            options=options,
            images=images,
        )
        yield from self.follow(asked)

    def regenerate(
        self,
        message_id: str,
        *,
        assistant: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> Asked:
        return self._send(self._api.regenerate(message_id, assistant=assistant, options=options))

    def edit(
        self,
        message_id: str,
        message: str,
        *,
        assistant: str | None = None,
        options: dict[str, Any] | None = None,
        images: list[str] | None = None,
    ) -> Asked:
        return self._send(
            self._api.edit(message_id, message, assistant=assistant, options=options, images=images)
        )

    def cancel(self, stream_id: str) -> bool:
        """Stop generating; True if the stream had already ended."""
        return self._send(self._api.cancel(stream_id))

    def ticket(self, stream_id: str | None = None) -> dict[str, Any]:
        return self._send(self._api.ticket(stream_id))

    def assistants(self) -> Assistants:
        return self._send(self._api.assistants())

    # -- conversations --------------------------------------------------------------------

    def conversations(self, **query: object) -> list[dict[str, Any]]:
        return self._send(self._api.conversations(**query))

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        return self._send(self._api.conversation(conversation_id))

    def branch(self, conversation_id: str, *, through: str | None = None) -> dict[str, Any]:
        return self._send(self._api.branch(conversation_id, through=through))

    def create_conversation(
        self, *, title: str | None = None, assistant: str | None = None
    ) -> dict[str, Any]:
        return self._send(self._api.create_conversation(title=title, assistant=assistant))

    def rename_conversation(self, conversation_id: str, title: str) -> dict[str, Any]:
        return self._send(self._api.rename_conversation(conversation_id, title))

    def delete_conversation(self, conversation_id: str) -> None:
        self._send(self._api.delete_conversation(conversation_id))

    def clear_messages(self, conversation_id: str) -> None:
        self._send(self._api.clear_messages(conversation_id))

    def export(
        self,
        conversation_id: str,
        *,
        format: ExportFormat = "markdown",
        through: str | None = None,
    ) -> str:
        return self._send(self._api.export(conversation_id, format=format, through=through))

    def feedback(self, message_id: str, rating: int, comment: str | None = None) -> dict[str, Any]:
        return self._send(self._api.feedback(message_id, rating, comment))

    def usage(
        self,
        *,
        from_: str | date | None = None,
        to: str | date | None = None,
        assistant: str | None = None,
    ) -> dict[str, Any]:
        return self._send(self._api.usage(from_=from_, to=to, assistant=assistant))
