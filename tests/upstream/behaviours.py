"""What a test can script for the upstream (``server.py``), and what the replies are made of.

The behaviour keys are documented in ``control.py``; here they are validated when scripted (so a
typo fails the test that wrote it, not a later request) and turned into reply text and OpenAI's
error bodies.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_REPLY = "Hello from the test upstream."
DEFAULT_MODELS = ("test-model",)
DEFAULT_TOKENS_PER_SECOND = 1000.0
ECHO_PIECE = 4
ECHO_MESSAGES_PIECE = 16
MALFORMED_EVENT = b"data: {not json\n\n"
KEEPALIVE = b": ping\n\n"  # the comment OpenAI-compatible servers send while idle
OVERSIZE_BYTES = 100 * 2**20

TRIGGERS = (
    "drop_after_tokens",
    "stall_after_tokens",
    "malformed_after_tokens",
    "error_after_tokens",
    "oversize_after_tokens",
)
TEXT_SOURCES = ("tokens", "echo", "echo_messages")
# ``chunks`` is the whole streamed body, verbatim: every key that shapes a generated stream (or
# answers without one) contradicts it. The stall and drop triggers count its items instead.
CHUNKS_EXCLUDES = (
    *TEXT_SOURCES,
    "status",
    "body",
    "retry_after",
    "error_message",
    "error_done",
    "finish_reason",
    "done",
    "keepalive",
    "usage",
    "oversize_bytes",
    "malformed_after_tokens",
    "error_after_tokens",
    "oversize_after_tokens",
)
BEHAVIOUR_KEYS = frozenset(
    {
        "status",
        "retry_after",
        "body",
        "content_type",
        "headers",
        "delay_headers_ms",
        "delay_first_token_ms",
        "tokens_per_second",
        "drop_mode",
        "error_message",
        "error_done",
        "finish_reason",
        "done",
        "keepalive",
        "usage",
        "oversize_bytes",
        "raw_utf8",
        "write_bytes",
        "chunks",
        *TRIGGERS,
        *TEXT_SOURCES,
    }
)

# OpenAI's error bodies for the statuses tests use most; others get a generic one.
ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to access this resource.", "permission_error", None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error",
          "model_not_found"),
    429: ("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!",
          "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}  # fmt: skip


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope, so the gateway's error parsing meets the real shape."""
    default_message, kind, code = ERRORS.get(
        status,
        (
            f"Upstream error {status}",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    return {
        "error": {
            "message": message if message is not None else default_message,
            "type": kind,
            "param": None,
            "code": code,
        }
    }


def validate_behaviour(raw: Any) -> dict[str, Any]:
    """Reject typos and contradictions when scripted, not when a request meets them later."""
    if not isinstance(raw, dict):
        raise ValueError(f"a behaviour must be an object, got {raw!r}")
    unknown = set(raw) - BEHAVIOUR_KEYS
    if unknown:
        raise ValueError(f"unknown behaviour keys: {sorted(unknown)}")
    triggers = [key for key in TRIGGERS if raw.get(key) is not None]
    if len(triggers) > 1:
        raise ValueError(f"at most one of {list(TRIGGERS)} per behaviour, got {triggers}")
    sources = [key for key in TEXT_SOURCES if raw.get(key) not in (None, False)]
    if len(sources) > 1:
        raise ValueError(f"at most one of {list(TEXT_SOURCES)} per behaviour, got {sources}")
    if "chunks" in raw:
        validate_chunks(raw)
    for key in (*TRIGGERS, "delay_headers_ms", "delay_first_token_ms", "tokens_per_second"):
        value = raw.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    for key, least in (("oversize_bytes", 0), ("write_bytes", 1)):
        value = raw.get(key)
        if value is not None and (type(value) is not int or value < least):
            raise ValueError(f"{key} must be an integer >= {least}, got {value!r}")
    for key in ("raw_utf8", "keepalive"):
        if not isinstance(raw.get(key, False), bool):
            raise ValueError(f"{key} must be true or false, got {raw[key]!r}")
    done = raw.get("done", True)
    if not (isinstance(done, bool) or done == "drop"):
        raise ValueError(f"done must be true, false or 'drop', got {raw['done']!r}")
    reason = raw.get("finish_reason", "stop")
    if reason is not None and not isinstance(reason, str):
        raise ValueError(f"finish_reason must be a string or null, got {reason!r}")
    if "status" in raw and not (isinstance(raw["status"], int) and 100 <= raw["status"] < 600):
        raise ValueError(f"status must be an HTTP status code, got {raw['status']!r}")
    tokens = raw.get("tokens")
    if tokens is not None and not (
        isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
    ):
        raise ValueError("tokens must be a list of strings")
    if raw.get("drop_mode", "fin") not in ("fin", "rst"):
        raise ValueError("drop_mode must be 'fin' or 'rst'")
    headers = raw.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError("headers must map names to string values")
    usage = raw.get("usage", {})
    if usage is not None and not isinstance(usage, dict):
        raise ValueError("usage must be an object or null")
    return dict(raw)


def validate_chunks(raw: dict[str, Any]) -> None:
    chunks = raw["chunks"]
    if not isinstance(chunks, list) or not all(isinstance(c, dict | str) for c in chunks):
        raise ValueError("chunks must be a list of JSON objects and strings")
    clashing = [key for key in CHUNKS_EXCLUDES if key in raw]
    if clashing:
        raise ValueError(f"chunks is the whole stream; it cannot go with {clashing}")


def encode_chunk(item: dict[str, Any] | str, *, ascii_only: bool = True) -> bytes:
    """One ``chunks`` item as it goes on the wire: an object as ``data: <json>``, text as is."""
    if isinstance(item, str):
        return item.encode("utf-8")
    return b"data: " + dumps(item, ascii_only=ascii_only) + b"\n\n"


def split_words(text: str) -> list[str]:
    """Words with their trailing whitespace: how the default reply is cut into deltas."""
    return re.findall(r"\S+\s*", text)


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def content_text(content: Any) -> str:
    """A message's text, whether content is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def reply_tokens(behaviour: dict[str, Any], body: dict[str, Any]) -> list[str]:
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    if behaviour.get("tokens") is not None:
        return list(behaviour["tokens"])
    if behaviour.get("echo"):
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return pieces(content_text(users[-1].get("content")) if users else "", ECHO_PIECE)
    if behaviour.get("echo_messages"):
        return pieces(json.dumps(messages), ECHO_MESSAGES_PIECE)
    return split_words(DEFAULT_REPLY)


def prompt_token_count(body: dict[str, Any]) -> int:
    """A deterministic stand-in for a tokenizer: words across all message contents."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    return sum(len(content_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


def dumps(value: Any, *, ascii_only: bool = True) -> bytes:
    """Compact JSON; ``ascii_only=False`` leaves non-ASCII text as raw UTF-8 (as vLLM does)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only).encode()
