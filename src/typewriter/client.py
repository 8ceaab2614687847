"""The Python client: ask, follow the answer, resume on its own after a network blip.

It asks in the detached way and follows ``events_url``: if the connection
drops, it reconnects with the id of the last event it actually received, so
the answer continues with no gap and no duplicate. Stop is an explicit cancel,
which also works when the connection is the thing that broke.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from typewriter import events, sse

__all__ = ["AnswerEvent", "Client", "ask_and_print"]


@dataclass(frozen=True, slots=True)
class AnswerEvent:
    id: int
    event: str
    data: dict[str, Any]


class Client:
    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=httpx.Timeout(30.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ask(self, message: str, **fields: Any) -> dict[str, Any]:
        """Start an answer; returns ``stream_id``, ``events_url`` and the ids."""
        response = self._http.post("/v1/chat", json={"message": message, **fields})
        _raise_for_error(response)
        result: dict[str, Any] = response.json()
        return result

    def cancel(self, stream_id: str) -> None:
        _raise_for_error(self._http.post(f"/v1/streams/{stream_id}/cancel"))

    def follow(self, events_url: str, *, after: int = 0, retries: int = 5) -> Iterator[AnswerEvent]:
        """Every event after ``after``, across reconnects, until ``end``."""
        last = after
        failures = 0
        while True:
            try:
                headers = {"last-event-id": str(last)} if last else {}
                with self._http.stream("GET", events_url, headers=headers, timeout=None) as r:
                    if r.status_code == 204:
                        return
                    _raise_for_error(r)
                    parser = sse.Parser()
                    for chunk in r.iter_bytes():
                        for event in parser.feed(chunk):
                            last = int(event.id) if event.id else last
                            failures = 0
                            yield AnswerEvent(last, event.event, _loads(event.event, event.data))
                            if event.event == "end":
                                return
            except httpx.TransportError:
                failures += 1
                if failures > retries:
                    raise
                time.sleep(min(0.2 * 2**failures, 5.0))


def _loads(name: str, data: str) -> dict[str, Any]:
    """An answer's event through the one decoder (a malformed one raises
    ``EventDecodeError``, a ``ValueError``), as a dict; any other event as its JSON."""
    if name in events.KINDS:
        return events.decode(name, data).fields()
    value = json.loads(data)
    return value if isinstance(value, dict) else {"value": value}


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    response.read()
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    raise httpx.HTTPStatusError(
        f"{response.status_code}: {message}", request=response.request, response=response
    )


def ask_and_print(
    url: str, question: str, assistant: str | None = None, api_key: str | None = None
) -> int:
    """``typewriter chat``: print the answer as it types; Ctrl+C stops generating.

    With no ``assistant`` the request names none and the server's default answers:
    the client cannot know which assistants an operator serves.
    """
    from rich.console import Console

    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    with Client(url, api_key=api_key) as client:
        try:
            named = {"assistant": assistant} if assistant is not None else {}
            started = client.ask(question, **named)
        except (httpx.HTTPError, httpx.HTTPStatusError) as exc:
            err.print(f"[red]typewriter: {exc}[/red]")
            return 1
        try:
            for event in client.follow(started["events_url"]):
                if event.event == "delta":
                    console.print(event.data["text"], end="", soft_wrap=True, markup=False)
                elif event.event == "error":
                    err.print(f"\n[red]error: {event.data.get('message')}[/red]")
                elif event.event == "end":
                    console.print()
                    return 0 if event.data.get("finish_reason") in ("stop", "length") else 1
        except KeyboardInterrupt:
            client.cancel(started["stream_id"])
            err.print("\n[yellow]stopped[/yellow]")
            return 130
        except httpx.HTTPError as exc:
            err.print(f"\n[red]typewriter: {exc}[/red]")
            return 1
    return 0
