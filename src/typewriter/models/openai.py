"""Any OpenAI-compatible server (vLLM, Ollama, Xinference, LM Studio, OpenAI) over aiohttp.

Before the first token a failure is somebody else's fault and worth another
try: a connect error, a timeout waiting for headers, 401/403 (that key is
benched), 429 (that key rests for ``Retry-After``) or a 5xx move on to the next
key or upstream, with capped exponential backoff, until a total deadline.
Once a response began nothing is retried on it — the user has seen text —
but the generation may ask for the rest (``continue_answer``): the upstreams
after the failed one are tried once each, sent the text shown so far in the
form their ``prefix_style`` says, and the first to answer continues it, with
any repetition of the shown text's end dropped at the seam. Reading the
stream itself is ``openai_chunks.py``.

An assistant's upstreams form a chain of links (:class:`Link`): its model on
its upstreams, then each fallback model on its own. Attempts go down the chain
in order, each link's upstreams in order, each sending its link's model name.

Every attempt tells the upstream's ``UpstreamHealth`` how it went, and that
record is also the upstream's circuit breaker: an upstream whose breaker is
open is skipped while some other upstream of the chain may be tried, so a dead
first upstream costs an answer nothing during its cooldown. When every
upstream of the chain is known down as a request arrives (open, or probed by
another request right now), the request neither waits for a cooldown nor
retries until the deadline: it tries once the upstream whose cooldown ends
first, and gives up if that fails (see ``_last_chance``). A request that meets
the failures itself keeps its retry policy: after a round in which every
upstream failed, it pauses and goes round again until the deadline, open
breakers or not. The user sees one plain sentence; the upstreams' names and
errors go to the log, one WARNING per request given up.

Stopping is closing: the generator holds the upstream response open, so when
the gateway closes the generator (Stop, disconnect, grace, timeout) the
response and its connection are closed, and the upstream stops generating.

The HTTP client is aiohttp's (:class:`UpstreamClient`): on the relay path it
costs a fraction of httpx's CPU per chunk. The session keeps connections alive
for reuse without a cap (an answer waits for no pool), has no total or read
timeout (a long answer is not cut; idleness is watched by the gateway), asks
for and reads bodies as sent (no compression), and is made on first use,
inside the running loop aiohttp binds it to.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp

from typewriter.errors import ModelError, ModelUnavailable
from typewriter.messages import ChatMessage, wire_content
from typewriter.models.base import Chunk, Continuation, ModelBackend, ModelRequest, Source
from typewriter.models.continuation import PrefixStyle, SeamTrimmer, continuation_request
from typewriter.models.health import (
    QUIET,
    Breaker,
    UpstreamEvents,
    UpstreamHealth,
    UpstreamState,
)
from typewriter.models.keys import KeyPool, fingerprint
from typewriter.models.openai_chunks import error_message_of, read_chunks
from typewriter.models.upstream_route import UpstreamRoute
from typewriter.observe import timing
from typewriter.upstreams import RetryPolicy, UpstreamConfig

__all__ = ["Link", "OpenAIBackend", "Upstream", "UpstreamClient"]

log = logging.getLogger(__name__)

_RETRY_STATUSES = {408, 409, 425, 429}
_CHECK_SECONDS = 2.0
"""Longest a readiness check of one upstream may take: a load balancer waits for it."""
_ERROR_BYTES = 64 << 10
"""Most of an error response's body read for its message; the rest is left unread."""
_NO_TOTAL = aiohttp.ClientTimeout(total=None)


class UpstreamClient:
    """The one HTTP session every upstream shares, made on first use.

    aiohttp binds a session to the event loop running when it is made, and the
    catalog is built before the server's loop runs, so the session waits for the
    first request (or readiness check). Its connector keeps connections alive for
    reuse with no cap on their number: a cap would close the connections of the
    streams beyond it after every answer, and open new ones for the next.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, ssl=_ssl_context())
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=_NO_TOTAL,  # aiohttp's default would cut an answer at 5 minutes
                auto_decompress=False,  # bodies are read as sent; identity is asked for
                # HTTP(S)_PROXY, NO_PROXY and .netrc are read once per upstream instead
                # (UpstreamRoute): aiohttp would read them in a thread for every request.
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _ssl_context() -> ssl.SSLContext:
    """The system's trusted certificates, and certifi's where it is installed (httpx,
    the client before, trusted certifi's alone), so neither set of upstreams is lost."""
    context = ssl.create_default_context()
    with contextlib.suppress(ImportError, OSError):
        import certifi

        context.load_verify_locations(certifi.where())
    return context


@dataclass(slots=True)
class Upstream:
    """One configured upstream with its key pool; shared by every assistant using it."""

    config: UpstreamConfig
    keys: KeyPool
    health: UpstreamHealth
    route: UpstreamRoute

    @classmethod
    def from_config(cls, config: UpstreamConfig, check_interval: float) -> Upstream:
        keys = [k.get_secret_value() for k in config.api_keys]
        breaker = Breaker(config.breaker_cooldown, config.breaker_cooldown_max)
        health = UpstreamHealth(config.name, check_interval, breaker)
        route = UpstreamRoute.from_environment(config.base_url)
        return cls(config, KeyPool(keys, config.key_strategy), health, route)

    @property
    def url(self) -> str:
        return self.config.base_url.rstrip("/") + "/chat/completions"

    @property
    def models_url(self) -> str:
        return self.config.base_url.rstrip("/") + "/models"

    def headers(self, key: str) -> dict[str, str]:
        """The configured headers, and the key as a bearer token (none for ``""``: then
        the host's .netrc login, if it has one)."""
        headers = dict(self.config.headers)
        if key:
            headers["authorization"] = f"Bearer {key}"
        return self.route.authorize(headers)


@dataclass(frozen=True, slots=True)
class Link:
    """One link of an assistant's chain: a model name, and the upstreams serving it in
    failover order."""

    model: str
    upstreams: tuple[Upstream, ...]


class _Attempt(NamedTuple):
    """One place in an assistant's order of attempts: its number (a continuation is asked
    of those after it), its link and one of the link's upstreams."""

    place: int
    link: Link
    upstream: Upstream


def _distinct(attempts: Sequence[_Attempt]) -> list[Upstream]:
    """The upstreams of ``attempts``, each once, in order."""
    return list({id(a.upstream): a.upstream for a in attempts}.values())


@dataclass(frozen=True, slots=True)
class _Opened:
    """A response that began: the attempt's place in the chain, its link and upstream."""

    index: int
    link: Link
    upstream: Upstream
    response: aiohttp.ClientResponse


class _Refused(Exception):
    """One attempt failed in a way worth trying elsewhere.

    ``rest_until`` set: only that key was refused (401/403, 429), and the upstream
    itself answered; otherwise the upstream is down or failing (an outage).
    ``kind`` is the metrics' label: ``headers_timeout``, ``connect``, ``auth``,
    ``rate_limited`` or ``server_error``.
    """

    def __init__(self, reason: str, kind: str, rest_until: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.rest_until = rest_until


class OpenAIBackend(ModelBackend):
    """Streams from the first upstream of the chain (in order) that answers; see the
    module docstring."""

    def __init__(
        self,
        client: UpstreamClient,
        chain: Sequence[Link],
        policy: RetryPolicy,
        events: UpstreamEvents = QUIET,
    ) -> None:
        self._client = client
        self._chain = list(chain)
        # Each link's upstream in the order attempts go; an upstream may serve two links.
        self._attempts = [
            _Attempt(index, link, upstream)
            for index, (link, upstream) in enumerate(
                (link, u) for link in self._chain for u in link.upstreams
            )
        ]
        self._upstreams = _distinct(self._attempts)
        self._policy = policy
        self._events = events

    def passable_fields(self) -> frozenset[str]:
        return frozenset(name for u in self._upstreams for name in u.config.pass_fields)

    def _body(self, request: ModelRequest) -> dict[str, Any]:
        """What every upstream gets; ``_attempt`` adds the vendor fields each one takes.

        The client's parameters go as given, except ``stream`` and
        ``include_usage``, which the gateway needs on (it streams every answer and
        counts its tokens) whatever the client asked for itself.
        """
        options = request.options
        params = dict(options.params)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_wire_message(m) for m in request.messages],
            "stream": True,
            "stream_options": {**params.pop("stream_options", {}), "include_usage": True},
        }
        for name in ("temperature", "top_p"):
            value = getattr(options, name)
            if value is not None:
                body[name] = value
        if options.max_tokens is not None:
            body[options.max_tokens_name] = options.max_tokens
        return {**params, **body}

    async def check_upstreams(self) -> list[UpstreamState]:
        checks = (u.health.check(functools.partial(self._probe, u)) for u in self._upstreams)
        states = list(await asyncio.gather(*checks))
        for state in states:
            self._tell(state)
        return states

    def _tell(self, state: UpstreamState) -> None:
        """The metrics follow the record: up or down, and the breaker's state."""
        if state.up is not None:
            self._events.upstream_up(state.name, state.up)
        self._events.upstream_breaker(state.name, state.breaker)

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        body = self._body(request)
        opened = await self._open(self._attempts, lambda _: body, request.options.vendor)
        async for chunk in self._relay(opened):
            yield chunk

    def continue_answer(
        self, request: ModelRequest, partial: str, after: Continuation
    ) -> AsyncIterator[Chunk] | None:
        rest = self._attempts[after.failed.index + 1 :]
        if not rest:
            return None
        return self._continue(request, partial, after, rest)

    async def _continue(
        self,
        request: ModelRequest,
        partial: str,
        after: Continuation,
        rest: list[_Attempt],
    ) -> AsyncIterator[Chunk]:
        """The continuation, from the first of ``rest`` that answers (one pass: the user is
        waiting mid-answer), with any repetition of the shown text's end dropped.

        The failed upstream counts the failure against its breaker: the next answers skip
        it for its cooldown, as they skip one that refused a connection.
        """
        failed = self._attempts[after.failed.index].upstream
        failed.health.failed(f"failed mid-answer ({after.failure})")
        self._tell(failed.health.state)
        styles: dict[PrefixStyle, tuple[dict[str, Any], bool]] = {}

        def body_of(upstream: Upstream) -> dict[str, Any]:
            style = PrefixStyle(upstream.config.prefix_style)
            if style not in styles:
                asked = continuation_request(request.messages, partial, style)
                wire = [_wire_message(m) for m in asked.messages]
                wire[-1].update(asked.final_message_fields)
                body = {**self._body(request), **asked.fields, "messages": wire}
                styles[style] = (body, asked.fresh_start)
            return styles[style][0]

        opened = await self._open(rest, body_of, request.options.vendor, one_pass=True)
        style = PrefixStyle(opened.upstream.config.prefix_style)
        self._events.upstream_failover(after.failed.upstream, opened.upstream.config.name)
        trimmer = SeamTrimmer(partial, fresh_start=styles[style][1])
        async for chunk in self._relay(opened):
            if chunk.text or chunk.finish_reason is not None:
                text = trimmer.feed(chunk.text)
                if chunk.finish_reason is not None:
                    text += trimmer.finish()
                if text != chunk.text:
                    chunk = dataclasses.replace(chunk, text=text, logprobs=None)
            yield chunk

    async def _relay(self, opened: _Opened) -> AsyncIterator[Chunk]:
        """The opened response's pieces, led by a chunk naming their source."""
        upstream, response = opened.upstream, opened.response
        try:
            yield Chunk(source=Source(upstream.config.name, opened.link.model, opened.index))
            body = response.content.iter_any()  # each read as it arrives
            chunks_of = read_chunks(response.headers, body, upstream.config.max_event_chars)
            async with contextlib.aclosing(chunks_of) as chunks:
                async for chunk in chunks:
                    yield chunk
        except ModelError as exc:
            cause = f" ({type(exc.__cause__).__name__})" if exc.__cause__ else ""
            log.warning("upstream %s failed mid-answer: %s%s", upstream.config.name, exc, cause)
            self._events.upstream_error(upstream.config.name, "mid_answer")
            raise
        finally:
            # Before the end this closes the connection (it is not pooled): upstream stops.
            # A body read to its end has already given its connection back for reuse.
            response.close()

    async def _open(
        self,
        attempts: list[_Attempt],
        body_of: Callable[[Upstream], dict[str, Any]],
        vendor: Mapping[str, Any],
        *,
        one_pass: bool = False,
    ) -> _Opened:
        """The first 200 response from ``attempts``, each upstream sent ``body_of(upstream)``;
        or ModelUnavailable (at once when every upstream is known down, after one pass with
        ``one_pass``)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._policy.deadline
        upstreams = _distinct(attempts)
        one_round = not any(u.health.available() for u in upstreams)
        models = ", ".join(dict.fromkeys(a.link.model for a in attempts))
        failures = _Failures(models, started, one_round)
        if one_round:
            return await self._last_chance(attempts, body_of, vendor, failures)
        pause = self._policy.backoff_initial
        refused_by: list[str] = []  # the upstream of the last failed attempt, if any
        while True:
            # While some upstream of the chain may be tried, open ones are skipped; once
            # this request has seen every one fail, it retries them all, as its policy says.
            skip_open = any(_ready(u, time.time()) for u in upstreams)
            tried_any = False
            for index, link, upstream in attempts:
                health = upstream.health
                probe = health.breaker_state() == "half_open"
                if skip_open and not health.admit():
                    continue
                if skip_open and probe:
                    self._tell(health.state)  # this attempt is the half-open breaker's probe
                body = body_of(upstream)
                try:
                    opened = await self._keys(link, upstream, body, vendor, failures, refused_by)
                finally:
                    if skip_open and probe:
                        health.settle()  # a probe that gave no verdict frees its slot
                tried, response = opened
                tried_any = tried_any or tried
                if response is not None:
                    return _Opened(index, link, upstream, response)
                if loop.time() >= deadline:
                    raise failures.give_up(loop.time())
            if one_pass:
                raise failures.give_up(loop.time(), "no further upstream answered")
            now = time.time()
            wait = pause if tried_any else 0.0
            ready_at = min(u.keys.next_ready_at() for u in upstreams)
            wait = max(wait, ready_at - now)
            if loop.time() + wait >= deadline:
                raise failures.give_up(loop.time(), "every key is resting")
            await asyncio.sleep(wait)
            pause = min(pause * 2 or self._policy.backoff_initial, self._policy.backoff_max)

    async def _last_chance(
        self,
        attempts: list[_Attempt],
        body_of: Callable[[Upstream], dict[str, Any]],
        vendor: Mapping[str, Any],
        failures: _Failures,
    ) -> _Opened:
        """Every upstream of the chain is known down: one attempt, at the upstream whose
        cooldown ends first, and the user's error at once if it fails.

        Not waiting is the point of knowing: the answer fails in the time of one attempt
        (milliseconds on a refused connection) instead of a cooldown or a retry deadline.
        Not giving up without any attempt keeps one upstream's blip from refusing every
        answer of a one-upstream assistant for a whole cooldown: the attempt is the probe
        that closes the breaker as soon as the upstream is back.
        """
        index, link, upstream = min(attempts, key=lambda a: a.upstream.health.opens_in())
        body = body_of(upstream)
        _, response = await self._keys(link, upstream, body, vendor, failures, [], once=True)
        if response is None:
            raise failures.give_up(asyncio.get_running_loop().time())
        return _Opened(index, link, upstream, response)

    async def _keys(
        self,
        link: Link,
        upstream: Upstream,
        body: dict[str, Any],
        vendor: Mapping[str, Any],
        failures: _Failures,
        refused_by: list[str],
        *,
        once: bool = False,
    ) -> tuple[bool, aiohttp.ClientResponse | None]:
        """Attempts at one upstream with its link's model, one per ready key (one in all
        with ``once``), until one answers or the upstream fails as a whole: whether any
        attempt was made, and the response. A rejected request raises ModelError."""
        name = upstream.config.name
        body = {**body, "model": link.model}
        events = self._events
        tried: set[str] = set()
        while (key := upstream.keys.choose(time.time(), tried)) is not None:
            tried.add(key)
            if refused_by and refused_by[0] == name:
                events.upstream_retry(name)
            elif refused_by:
                events.upstream_failover(refused_by[0], name)
            try:
                response = await self._attempt(upstream, key, body, vendor)
            except _Refused as refused:
                refused_by[:] = [name]
                failures.add(name, refused.reason)
                events.upstream_error(name, refused.kind)
                if refused.rest_until:
                    upstream.keys.rest(key, refused.rest_until)
                else:
                    upstream.health.failed(refused.reason)
                    self._tell(upstream.health.state)
                    return True, None  # the upstream failed, not a key: on down the chain
            except ModelError:
                upstream.health.reached()  # it answered: what it refuses is the request
                events.upstream_error(name, "rejected")
                self._tell(upstream.health.state)
                raise
            else:
                upstream.health.reached()
                self._tell(upstream.health.state)
                return True, response
            if once:
                return True, None
        return bool(tried), None

    async def _attempt(
        self, upstream: Upstream, key: str, body: dict[str, Any], vendor: Mapping[str, Any]
    ) -> aiohttp.ClientResponse:
        config = upstream.config
        passed = {name: vendor[name] for name in config.pass_fields if name in vendor}
        body = {**passed, **body}  # never over a field the gateway set
        if config.continuous_usage:
            options = {**body["stream_options"], "continuous_usage_stats": True}
            body = {**body, "stream_options": options}
        headers = {
            "accept": "text/event-stream",
            "accept-encoding": "identity",  # no header at all would allow any coding
            "content-type": "application/json",
            **upstream.headers(key),
        }
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        # The connect timeout covers the DNS lookup, the TCP and TLS handshakes; nothing
        # bounds the body's reading (the gateway watches idleness), the headers have theirs.
        timeout = aiohttp.ClientTimeout(total=None, connect=config.connect_timeout)
        timing.upstream_request_sent(config.name)
        self._events.upstream_request(config.name)
        try:
            async with asyncio.timeout(config.headers_timeout):
                response = await self._client.session.post(
                    upstream.url,
                    data=data.encode(),
                    headers=headers,
                    timeout=timeout,
                    proxy=upstream.route.proxy,
                    proxy_headers=upstream.route.proxy_headers,
                )
        except aiohttp.ClientError as exc:  # first: aiohttp's own timeouts are TimeoutErrors
            raise _Refused(_transport_failure(exc, config.connect_timeout), "connect") from None
        except TimeoutError:
            reason = f"no response headers within {config.headers_timeout:g} s"
            raise _Refused(reason, "headers_timeout") from None
        if response.status == 200:
            return response
        detail = await _error_detail(response)
        status = response.status
        if status in (401, 403):
            log.warning(
                "upstream %s refused key %s with %d; benched for %g s",
                config.name,
                fingerprint(key),
                status,
                config.bench_seconds,
            )
            raise _Refused(f"{status} {detail}", "auth", time.time() + config.bench_seconds)
        if status == 429:
            retry_after = _retry_after(response.headers.get("retry-after"))
            raise _Refused(f"429 {detail}", "rate_limited", time.time() + retry_after)
        if status >= 500 or status in _RETRY_STATUSES:
            raise _Refused(f"{status} {detail}", "server_error")
        log.warning("upstream %s rejected a request: %d %s", config.name, status, detail)
        raise ModelError(f"the model rejected the request: {status} {detail}")

    async def _probe(self, upstream: Upstream) -> str | None:
        """``GET {base_url}/models`` with a key that is not resting: None if it answers.

        Any answer below 500 but 401/403 counts as reachable (a server without
        ``/models`` answers 404, and still serves chat completions).
        """
        key = upstream.keys.choose(time.time(), set())
        if key is None:
            return "every key is resting (refused or rate limited)"
        connect = min(_CHECK_SECONDS, upstream.config.connect_timeout)
        timeout = aiohttp.ClientTimeout(total=None, connect=connect)
        try:
            async with (
                asyncio.timeout(_CHECK_SECONDS),
                self._client.session.get(
                    upstream.models_url,
                    headers=upstream.headers(key),
                    timeout=timeout,
                    proxy=upstream.route.proxy,
                    proxy_headers=upstream.route.proxy_headers,
                ) as response,
            ):
                status = response.status
                text = await _text(response, 200) if status >= 500 else ""
        except aiohttp.ClientError as exc:
            return _transport_failure(exc, connect)
        except TimeoutError:
            return f"no answer within {_CHECK_SECONDS:g} s"
        if status in (401, 403):
            return f"the key was refused ({status})"
        if status >= 500:
            return f"{status} {text}"
        return None


def _ready(upstream: Upstream, now: float) -> bool:
    """Its breaker lets an attempt through and one of its keys is not resting."""
    return upstream.health.available() and upstream.keys.next_ready_at() <= now


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    """One message in OpenAI's form: the tool parts only where the client gave them, so
    a plain turn is ``{"role", "content"}`` as before. An assistant turn that only calls
    tools has ``content: null``, as OpenAI writes it (some chat templates read ``""``
    as a text turn to render)."""
    wire: dict[str, Any] = {"role": message.role, "content": wire_content(message)}
    if message.name is not None:
        wire["name"] = message.name
    if message.tool_calls:
        wire["tool_calls"] = list(message.tool_calls)
        if not message.content:
            wire["content"] = None
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    return wire


def _transport_failure(exc: aiohttp.ClientError, connect_timeout: float) -> str:
    """The reason an exchange failed below HTTP, for the log and ``/readyz``.

    A connection that could not be made is ``ConnectError`` whatever the library
    calls it (refused, unreachable, name not resolved): the words ``/readyz`` and
    the log have always used.
    """
    if isinstance(exc, aiohttp.ServerTimeoutError):  # only connecting is timed here
        return f"no connection within {connect_timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection failed (ConnectError)"
    return f"connection failed ({type(exc).__name__})"


class _Failures:
    """The failed attempts of one request, for the one WARNING line that gives up."""

    def __init__(self, model: str, started: float, one_round: bool) -> None:
        self._model = model
        self._started = started
        self._one_round = one_round
        self._count = 0
        self._last: dict[str, tuple[str, int]] = {}  # upstream → (last reason, attempts)

    def add(self, upstream: str, reason: str) -> None:
        self._count += 1
        _, attempts = self._last.get(upstream, ("", 0))
        self._last[upstream] = (reason, attempts + 1)

    def give_up(self, now: float, why: str = "") -> ModelUnavailable:
        """The user's error; the log gets each upstream's last error."""
        shown = "; ".join(f"{u}: {r} (x{n})" for u, (r, n) in self._last.items()) or why
        how = "one attempt: every upstream known down" if self._one_round else "retried"
        log.warning(
            "no upstream answered model %s: %d attempt(s) in %.1f s (%s): %s",
            self._model,
            self._count,
            now - self._started,
            how,
            shown,
        )
        return ModelUnavailable()


def _retry_after(value: str | None) -> float:
    """Seconds from ``Retry-After`` (number form; dates and garbage count as 1 s)."""
    try:
        return min(max(float(value or 1.0), 0.0), 3600.0)
    except ValueError:
        return 1.0


async def _error_detail(response: aiohttp.ClientResponse) -> str:
    """The upstream's error message, from at most ``_ERROR_BYTES`` of its body; the
    response is closed (with its connection, if the body was not read to its end)."""
    try:
        body = await _read_at_most(response, _ERROR_BYTES)
    except aiohttp.ClientError:
        return ""
    finally:
        response.close()
    with contextlib.suppress(ValueError):
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            return error_message_of(parsed)
    text: str = body[:200].decode("utf-8", "replace")
    return text


async def _text(response: aiohttp.ClientResponse, limit: int) -> str:
    return (await _read_at_most(response, limit)).decode("utf-8", "replace")


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body up to ``limit`` bytes (all of it when shorter)."""
    pieces: list[bytes] = []
    size = 0
    while size < limit and (piece := await response.content.read(limit - size)):
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)
