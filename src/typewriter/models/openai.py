"""Any OpenAI-compatible server (vLLM, Ollama, Xinference, LM Studio, OpenAI) over httpx.

Before the first token a failure is somebody else's fault and worth another
try: a connect error, a timeout waiting for headers, 401/403 (that key is
benched), 429 (that key rests for ``Retry-After``) or a 5xx move on to the next
key or upstream, with capped exponential backoff, until a total deadline.
After the first token nothing is retried — the user has seen text — and a
failure becomes an ``error`` event with the text so far kept. Reading the
stream itself is ``openai_chunks.py``.

Stopping is closing: the generator holds the upstream response open, so when
the gateway closes the generator (Stop, disconnect, grace, timeout) the
response and its connection are closed, and the upstream stops generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from typewriter.errors import ModelError, ModelUnavailable
from typewriter.models.base import Chunk, ModelBackend, ModelRequest
from typewriter.models.keys import KeyPool, fingerprint
from typewriter.models.openai_chunks import error_message_of, read_chunks
from typewriter.upstreams import RetryPolicy, UpstreamConfig

__all__ = ["OpenAIBackend", "Upstream"]

log = logging.getLogger(__name__)

_RETRY_STATUSES = {408, 409, 425, 429}


@dataclass(slots=True)
class Upstream:
    """One configured upstream with its key pool; shared by every assistant using it."""

    config: UpstreamConfig
    keys: KeyPool

    @classmethod
    def from_config(cls, config: UpstreamConfig) -> Upstream:
        keys = [k.get_secret_value() for k in config.api_keys]
        return cls(config, KeyPool(keys, config.key_strategy))

    @property
    def url(self) -> str:
        return self.config.base_url.rstrip("/") + "/chat/completions"


class _Refused(Exception):
    """One attempt failed in a way worth trying elsewhere."""

    def __init__(self, reason: str, rest_until: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rest_until = rest_until


class OpenAIBackend(ModelBackend):
    """Streams from the first upstream (in order) that answers; see the module docstring."""

    def __init__(
        self, client: httpx.AsyncClient, upstreams: Sequence[Upstream], policy: RetryPolicy
    ) -> None:
        self._client = client
        self._upstreams = list(upstreams)
        self._policy = policy

    def _body(self, request: ModelRequest) -> dict[str, Any]:
        options = request.options
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for name in ("temperature", "top_p", "max_tokens"):
            value = getattr(options, name)
            if value is not None:
                body[name] = value
        return body

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        upstream, response = await self._open(self._body(request))
        try:
            chunks_of = read_chunks(response, upstream.config.max_event_chars)
            async with contextlib.aclosing(chunks_of) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            await response.aclose()  # before the end this closes the connection: upstream stops

    async def _open(self, body: dict[str, Any]) -> tuple[Upstream, httpx.Response]:
        """The first 200 response from any upstream and key, and its upstream; or
        ModelUnavailable."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._policy.deadline
        pause = self._policy.backoff_initial
        reasons: list[str] = []
        while True:
            tried_any = False
            for upstream in self._upstreams:
                tried: set[str] = set()
                while (key := upstream.keys.choose(time.time(), tried)) is not None:
                    tried.add(key)
                    tried_any = True
                    try:
                        return upstream, await self._attempt(upstream, key, body)
                    except _Refused as refused:
                        reasons.append(f"{upstream.config.name}: {refused.reason}")
                        if refused.rest_until:
                            upstream.keys.rest(key, refused.rest_until)
                    if loop.time() >= deadline:
                        raise _unavailable(reasons)
            now = time.time()
            wait = pause if tried_any else 0.0
            ready_at = min(u.keys.next_ready_at() for u in self._upstreams)
            wait = max(wait, ready_at - now)
            if loop.time() + wait >= deadline:
                raise _unavailable(reasons or ["every key is resting"])
            await asyncio.sleep(wait)
            pause = min(pause * 2 or self._policy.backoff_initial, self._policy.backoff_max)

    async def _attempt(self, upstream: Upstream, key: str, body: dict[str, Any]) -> httpx.Response:
        config = upstream.config
        headers = {"accept": "text/event-stream", **config.headers}
        if key:
            headers["authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(connect=config.connect_timeout, read=None, write=30.0, pool=30.0)
        request = self._client.build_request(
            "POST", upstream.url, json=body, headers=headers, timeout=timeout
        )
        try:
            async with asyncio.timeout(config.headers_timeout):
                response = await self._client.send(request, stream=True)
        except TimeoutError:
            raise _Refused(f"no response headers within {config.headers_timeout:g} s") from None
        except httpx.TimeoutException:
            raise _Refused(f"no connection within {config.connect_timeout:g} s") from None
        except httpx.TransportError as exc:
            raise _Refused(f"connection failed ({type(exc).__name__})") from None
        if response.status_code == 200:
            return response
        detail = await _error_detail(response)
        status = response.status_code
        if status in (401, 403):
            log.warning(
                "upstream %s refused key %s with %d; benched for %g s",
                config.name,
                fingerprint(key),
                status,
                config.bench_seconds,
            )
            raise _Refused(f"{status} {detail}", time.time() + config.bench_seconds)
        if status == 429:
            retry_after = _retry_after(response.headers.get("retry-after"))
            raise _Refused(f"429 {detail}", time.time() + retry_after)
        if status >= 500 or status in _RETRY_STATUSES:
            raise _Refused(f"{status} {detail}")
        raise ModelError(f"upstream {config.name} rejected the request: {status} {detail}")


def _retry_after(value: str | None) -> float:
    """Seconds from ``Retry-After`` (number form; dates and garbage count as 1 s)."""
    try:
        return min(max(float(value or 1.0), 0.0), 3600.0)
    except ValueError:
        return 1.0


async def _error_detail(response: httpx.Response) -> str:
    try:
        body = await response.aread()
    except httpx.HTTPError:
        return ""
    finally:
        await response.aclose()
    with contextlib.suppress(ValueError):
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            return error_message_of(parsed)
    text: str = body[:200].decode("utf-8", "replace")
    return text


def _unavailable(reasons: list[str]) -> ModelUnavailable:
    shown = "; ".join(reasons[-4:])
    return ModelUnavailable(f"no upstream could answer ({len(reasons)} attempts): {shown}")
