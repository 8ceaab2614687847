"""Drive the scriptable upstream (``server.py``) from tests: start it, script it, read its log.

The server runs as a separate process so that what the gateway meets is a real HTTP server on a
loopback port, with real connection breaks and real client disconnects, and so that a stuck
gateway cannot stall the server's event loop (or the other way round).

Behaviours (dicts passed to :meth:`Upstream.script`, consumed one per accepted chat request, in
order; with none queued a request gets a plain success at 1000 tokens/s):

``status`` (+ ``retry_after``, ``body``, ``error_message``, ``content_type``)
    Answer at once (after ``delay_headers_ms``) with this status. ``body`` (object or string)
    replaces the default, which is OpenAI's error envelope for statuses >= 400 and ``{}`` below.
``delay_headers_ms``
    Wait before sending response headers (applies to every kind of answer).
``delay_first_token_ms``
    Streaming: after headers, wait before the first content delta (the role chunk goes out with
    the first delta, so nothing at all follows the headers meanwhile). Non-streaming: added to
    the time before the (single) response.
``tokens_per_second``
    Pacing of content deltas, default 1000; 0 means no pacing.
``tokens`` | ``echo`` | ``echo_messages``
    The reply: explicit deltas; the last user message in 4-character pieces; or
    ``json.dumps(messages)`` in 16-character pieces. Default: ``"Hello from the test
    upstream."`` as words with their trailing space (5 deltas).
``drop_after_tokens: N`` (+ ``drop_mode``: ``"fin"`` default or ``"rst"``)
    After N deltas close the TCP connection with no terminating chunk. ``fin`` flushes what was
    sent first, so the client reads N deltas and then fails (httpx: ``RemoteProtocolError``);
    ``rst`` resets the connection (httpx: ``ReadError`` or ``RemoteProtocolError``, and data not
    yet read may be lost). Non-streaming: the connection closes without any response.
``stall_after_tokens: N``
    After N deltas send nothing more, ever, until the client goes away. Non-streaming: never
    answer.
``malformed_after_tokens: N``
    After N deltas send ``data: {not json`` and then carry on with the rest of the stream as if
    nothing happened (remaining deltas, finish chunk, usage, ``[DONE]``). Non-streaming: a 200
    whose body is ``{not json``.
``error_after_tokens: N`` (+ ``error_message``, ``error_done``)
    After N deltas send ``data: {"error": {"message", "type": "server_error", "param": null,
    "code": null}}`` and end the response properly, without ``[DONE]`` unless ``error_done`` is
    true (vLLM sends ``[DONE]`` after such an error). Non-streaming: a 500 with that error.
``oversize_after_tokens: N`` (+ ``oversize_bytes``, default 100 MiB)
    After N deltas send one delta whose content is ``oversize_bytes`` of ``x``, written in
    64 KiB pieces so the server never holds it whole, then carry on with the rest of the
    stream; a client leaving stops it mid-event. Non-streaming: a 200 whose message content is
    that filler.
``finish_reason``
    Default ``"stop"``; ``None``: no chunk carries one (the stream goes from its last delta
    to the usage chunk, if any, and ``[DONE]``).
``done``
    False: the response ends properly (its last chunk) but without ``data: [DONE]``, as some
    servers end their streams. ``"drop"``: the connection breaks (``drop_mode``) where
    ``[DONE]`` would come, after the finish reason and usage.
``keepalive``
    True: a ``: ping`` comment before every content delta, as servers send while idle.
``usage``
    Merged over the computed usage (prompt_tokens = words in all message contents,
    completion_tokens = deltas sent); ``None`` means no usage at all (as servers that ignore
    ``include_usage``).
    A request with ``stream_options.continuous_usage_stats`` gets usage on every chunk, the
    count so far with the chunk's own token, as vLLM sends it.
``headers``
    Extra response headers, ``{name: value}``.
``raw_utf8``
    True: JSON with non-ASCII text as raw UTF-8, as vLLM sends it (so U+2028, U+2029 and NEL
    reach the wire as themselves), instead of ``\\uXXXX`` escapes.
``write_bytes: N``
    Cut every body write into writes of at most N bytes. A streamed response is chunked, one
    HTTP chunk per write, and httpx never merges two chunks into one read: a reader sees the
    stream in pieces of at most N bytes (1: byte by byte), split anywhere, mid-character too.
``chunks: [...]``
    The streamed body, replayed verbatim, for the shapes real servers send (``shapes.py`` builds
    them, each from its public source). An object goes out as ``data: <json>\\n\\n`` (compact,
    ``raw_utf8`` honoured); a string goes out as given, raw SSE text, so a test can write
    ``": ping\\n\\n"``, ``"data: [DONE]\\n\\n"``, an event split across two items, or a
    stream ending without ``[DONE]`` (it simply is not in the list). Then the response ends
    properly. Each item counts as one token: ``tokens_per_second`` paces the items (0: none),
    ``tokens_sent`` counts those sent, and ``stall_after_tokens``/``drop_after_tokens`` fire after
    N items. ``delay_headers_ms``, ``delay_first_token_ms``, ``write_bytes`` (cutting the wire
    bytes anywhere, mid-JSON or mid-character), ``headers`` and ``content_type`` apply as usual.
    The request's own ``stream`` and ``stream_options`` are ignored: the script is what is sent.
    Every other key that shapes a stream (``tokens``, ``echo``, ``echo_messages``, ``status``,
    ``body``, ``finish_reason``, ``done``, ``keepalive``, ``usage``, the other triggers and
    their options) contradicts it and is refused.

For the ``*_after_tokens`` triggers N is capped at the number of reply tokens (or ``chunks``
items): the trigger always fires. Unknown keys and contradictory combinations are rejected when
scripted.

Before a behaviour is consumed the server checks ``valid_keys`` (401, see :meth:`configure`),
that the body is a JSON object (400) and, with ``strict_models``, the model (404); requests
refused there do not consume a behaviour but are logged.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import Any, Self, TypeVar

import httpx

SERVER_PATH = Path(__file__).with_name("server.py")
T = TypeVar("T")

Behaviour = Mapping[str, Any]
RequestRecord = dict[str, Any]
"""One chat request as the server saw it; keys:

``index`` (position in the log since the last reset), ``method``, ``path``, ``model`` (from the
body, or None), ``key`` (bearer token or None; a non-bearer Authorization value verbatim),
``headers`` (request headers, lower-cased names), ``body`` (parsed JSON, or None), ``stream``
(bool), ``behaviour`` (the one consumed, or None), ``status`` (sent, or None), ``started``
(``time.time()`` on arrival), ``headers_sent`` (time or None), ``first_token_sent`` (time or
None), ``tokens_sent`` (content deltas sent; with ``chunks``, items sent), ``completed`` (the
HTTP response ended properly, including error statuses and a stream ended after an error event),
``disconnected`` (time the server noticed its client went away, or None), ``dropped`` (time the
server broke the connection itself for ``drop_after_tokens``, or None; a drop does not set
``disconnected``).
"""


class UpstreamError(RuntimeError):
    """The upstream process failed to start, or a control call failed."""


class Upstream:
    """A scriptable OpenAI-compatible upstream server running in a child process."""

    def __init__(self, *, server_path: str | os.PathLike[str] | None = None) -> None:
        self.server_path = Path(server_path) if server_path is not None else SERVER_PATH
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._http: httpx.Client | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:PORT``."""
        if self.port is None:
            raise UpstreamError("upstream not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What a gateway is configured with: the part before ``/chat/completions``."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 15.0) -> Self:
        """Spawn the server and wait for its ``LISTENING <port>`` line."""
        if self.running:
            raise UpstreamError("upstream already running")
        # stdin is a pipe we never write to: when this process dies, however abruptly, the
        # server sees end of file there and shuts down instead of lingering as an orphan.
        process = subprocess.Popen(
            [sys.executable, str(self.server_path), "--port", "0", "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.process = process
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
            if not ready:
                self._terminate()
                raise UpstreamError(f"upstream did not announce itself within {timeout} s")
            byte = os.read(process.stdout.fileno(), 1)  # unbuffered: never read past the line
            if not byte:
                self._terminate()
                raise UpstreamError(f"upstream exited before listening: {line!r}")
            line += byte
        word, _, port = line.decode().strip().partition(" ")
        if word != "LISTENING" or not port.isdigit():
            self._terminate()
            raise UpstreamError(f"unexpected first line from upstream: {line!r}")
        self.port = int(port)
        # trust_env=False: a proxy from the environment must not come between us and loopback.
        self._http = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM and wait (SIGKILL if it lingers). The port stops accepting connections."""
        if self._http is not None:
            self._http.close()
            self._http = None
        self._terminate(timeout)

    def kill(self) -> None:
        """SIGKILL: the upstream dies as in a crash, open connections break at once."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self._close_pipe()

    def _terminate(self, timeout: float = 5.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.process is not None:
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- control ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        if self._http is None:
            raise UpstreamError("upstream not started")
        response = self._http.request(method, f"/_control/{path}", json=payload)
        if response.status_code != 200:
            raise UpstreamError(
                f"{method} /_control/{path}: {response.status_code} {response.text}"
            )
        return response.json()

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next chat requests, one each, after any already queued."""
        self._call("POST", "script", {"behaviours": [dict(b) for b in behaviours]})

    def reset(self) -> None:
        """Forget queued behaviours, the request log and configuration."""
        self._call("POST", "reset")

    def configure(
        self,
        *,
        valid_keys: Sequence[str] | None | EllipsisType = ...,
        models: Sequence[str] | EllipsisType = ...,
        strict_models: bool | EllipsisType = ...,
    ) -> dict[str, Any]:
        """Change only what is given. ``valid_keys=None`` accepts any key (and no key)."""
        update: dict[str, Any] = {}
        if valid_keys is not ...:
            update["valid_keys"] = None if valid_keys is None else list(valid_keys)
        if models is not ...:
            update["models"] = list(models)
        if strict_models is not ...:
            update["strict_models"] = strict_models
        result: dict[str, Any] = self._call("POST", "config", update)
        return result

    def requests(self) -> list[RequestRecord]:
        """The log: one record per chat request, in arrival order (see ``RequestRecord``)."""
        records: list[RequestRecord] = self._call("GET", "requests")
        return records

    def pending(self) -> list[dict[str, Any]]:
        """Behaviours still queued, e.g. to check that all were consumed."""
        queued: list[dict[str, Any]] = self._call("GET", "queue")
        return queued

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RequestRecord]:
        """Poll until at least ``count`` chat requests have arrived; return the log."""
        return self._poll(
            lambda log: log if len(log) >= count else None,
            timeout,
            f"{count} request(s)",
        )

    def wait_for_disconnect(self, index: int, timeout: float = 2.0) -> RequestRecord:
        """Poll until request ``index`` has ``disconnected`` set; return its record."""

        def check(log: list[RequestRecord]) -> RequestRecord | None:
            if index < len(log) and log[index]["disconnected"] is not None:
                return log[index]
            return None

        return self._poll(check, timeout, f"request {index} to see its client disconnect")

    def _poll(
        self, check: Callable[[list[RequestRecord]], T | None], timeout: float, what: str
    ) -> T:
        deadline = time.monotonic() + timeout
        while True:
            log = self.requests()
            found = check(log)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"waited {timeout} s for {what}; log: {log!r}")
            time.sleep(0.02)
