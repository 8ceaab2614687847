"""The chunk sequences real servers stream, as ``chunks`` lists for the scripted upstream.

A gateway that only ever met the test upstream's own stream would be tested against one
server's habits. Each function here returns the body another server sends, written from that
server's public documentation, source or a recorded stream quoted in an issue (its docstring
says which), for ``Upstream.script({"chunks": ...})``: an object item goes on the wire as
``data: <compact json>\\n\\n``, a string item as given (comments, ``[DONE]``, CRLF events, JSON
encoded another way). :func:`wire` gives the exact bytes the upstream then sends.

Ids, timestamps and fingerprints are fixed, so a test can compare bytes; token counts are the
number of pieces given (``prompt_tokens`` is a parameter). Text arguments are sequences of
pieces, one delta each: a test chooses where a stream is cut into events, and ``write_bytes``
where the wire bytes are cut (mid-JSON, mid-character).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from upstream.behaviours import encode_chunk, error_body

Chunk = dict[str, Any] | str
ToolCall = tuple[str, Sequence[str]]
"""A streamed tool call: the function's name and its arguments as the pieces sent."""

DONE = "data: [DONE]\n\n"
CREATED = 1_733_400_000
DEEPSEEK_KEEPALIVE = ": keep-alive\n\n"
OPENROUTER_PROCESSING = ": OPENROUTER PROCESSING\n\n"


def wire(chunks: Sequence[Chunk], *, raw_utf8: bool = False) -> bytes:
    """The body the upstream sends for ``chunks`` (``raw_utf8`` as scripted)."""
    return b"".join(encode_chunk(item, ascii_only=not raw_utf8) for item in chunks)


def split(text: str, at: Sequence[int]) -> list[str]:
    """``text`` cut at the given character offsets, e.g. mid-JSON: ``split('{"a":1}', [3])``."""
    cuts = sorted({0, *(a for a in at if 0 < a < len(text)), len(text)})
    return [text[start:end] for start, end in zip(cuts, cuts[1:], strict=False)]


# --- OpenAI ------------------------------------------------------------------------------------

OPENAI_ID = "chatcmpl-BwoiPTGRbKkY5rncfaM0s9KtWrq5N"
OPENAI_MODEL = "gpt-4.1-2025-04-14"
OPENAI_FINGERPRINT = "fp_51e1070cf2"


def _openai(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": OPENAI_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": OPENAI_MODEL,
        "service_tier": "default",
        "system_fingerprint": OPENAI_FINGERPRINT,
        "choices": choices,
        "usage": usage,
    }


def _openai_choice(
    delta: dict[str, Any], finish_reason: str | None = None, logprobs: Any = None
) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}


def openai_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """OpenAI's usage object, with the detail objects its API reference lists."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _logprob(token: str) -> dict[str, Any]:
    entry = {"token": token, "logprob": -0.25, "bytes": list(token.encode("utf-8"))}
    return {**entry, "top_logprobs": [dict(entry)]}


def _openai_ending(
    finish_reason: str, completion_tokens: int, include_usage: bool, prompt_tokens: int
) -> list[Chunk]:
    ending: list[Chunk] = [_openai([_openai_choice({}, finish_reason)])]
    if include_usage:
        ending.append(_openai([], openai_usage(prompt_tokens, completion_tokens)))
    ending.append(DONE)
    return ending


def openai_text(
    tokens: Sequence[str],
    *,
    include_usage: bool = True,
    logprobs: bool = False,
    finish_reason: str = "stop",
    prompt_tokens: int = 9,
) -> list[Chunk]:
    """OpenAI's own stream: a role chunk, content deltas, a finish chunk, usage, ``[DONE]``.

    Shape of a gpt-4.1 stream in coder/coder's test fixture
    ``aibridge/fixtures/openai/chatcompletions/stream_error.txtar``: ``service_tier`` and
    ``system_fingerprint`` on every chunk, the first delta ``{"role": "assistant", "content": "",
    "refusal": null}``, ``"logprobs": null`` on every choice and ``"usage": null`` on every
    chunk. With ``include_usage`` a last chunk has ``"choices": []`` and the usage
    (API reference, ``stream_options.include_usage``:
    https://platform.openai.com/docs/api-reference/chat/create). With ``logprobs`` each content
    chunk's choice carries ``{"content": [{"token", "logprob", "bytes", "top_logprobs"}],
    "refusal": null}`` as the chunk object's reference describes
    (https://platform.openai.com/docs/api-reference/chat-streaming), with the chosen token as
    the one top alternative (``top_logprobs: 1``); the role and finish chunks keep ``null``.
    """
    chunks: list[Chunk] = [
        _openai([_openai_choice({"role": "assistant", "content": "", "refusal": None})])
    ]
    for token in tokens:
        probs = {"content": [_logprob(token)], "refusal": None} if logprobs else None
        chunks.append(_openai([_openai_choice({"content": token}, logprobs=probs)]))
    return chunks + _openai_ending(finish_reason, len(tokens), include_usage, prompt_tokens)


def openai_tool_calls(
    calls: Sequence[ToolCall],
    *,
    parallel: bool = True,
    content: Sequence[str] = (),
    include_usage: bool = False,
    prompt_tokens: int = 60,
) -> list[Chunk]:
    """OpenAI's streamed tool calls, one call after another, then ``finish_reason: tool_calls``.

    A call's first fragment has ``index``, ``id``, ``type: "function"`` and ``function.name``
    with ``arguments: ""``; every later fragment only ``index`` and a piece of
    ``function.arguments`` (the function-calling guide's streaming section,
    https://platform.openai.com/docs/guides/function-calling#streaming; gpt-4o chunks recorded in
    vllm-project/vllm#18412). With no ``content`` the first call rides on the role delta, whose
    ``content`` is ``null`` (as OpenAI sends it); with ``content`` the role delta carries ``""``,
    the text comes first and the calls follow in deltas of their own (as deepseek-chat streams
    "I'll check ..." then a call: a recorded stream in neuraxes/neurouter
    ``internal/data/upstream/deepseek/deepseek_test.go``). ``parallel=False`` stands for a
    request with ``parallel_tool_calls: false``: exactly one call. Ids are ``call_0``,
    ``call_1``, ... Cut arguments with :func:`split` to send a piece that ends mid-JSON.
    """
    if not calls:
        raise ValueError("a tool-call stream needs at least one call")
    if not parallel and len(calls) > 1:
        raise ValueError("parallel=False: OpenAI streams at most one call")
    role: dict[str, Any] = {"role": "assistant", "content": "" if content else None}
    chunks: list[Chunk] = []
    if content:
        role["refusal"] = None
        chunks.append(_openai([_openai_choice(role)]))
        chunks += [_openai([_openai_choice({"content": piece})]) for piece in content]
    pieces = 0
    for index, (name, arguments) in enumerate(calls):
        opening = {
            "index": index,
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        if index == 0 and not content:
            delta: dict[str, Any] = {**role, "tool_calls": [opening], "refusal": None}
        else:
            delta = {"tool_calls": [opening]}
        chunks.append(_openai([_openai_choice(delta)]))
        for piece in arguments:
            fragment = {"index": index, "function": {"arguments": piece}}
            chunks.append(_openai([_openai_choice({"tool_calls": [fragment]})]))
            pieces += 1
    completion = len(content) + len(calls) + pieces
    return chunks + _openai_ending("tool_calls", completion, include_usage, prompt_tokens)


# --- vLLM --------------------------------------------------------------------------------------

VLLM_ID = "chatcmpl-2e46f7e56d474ad8874756df2b358a10"
VLLM_MODEL = "Qwen/Qwen3-8B"


def _vllm(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": VLLM_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": VLLM_MODEL,
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _vllm_stream(
    deltas: Sequence[dict[str, Any]], include_usage: bool, prompt_tokens: int
) -> list[Chunk]:
    def choice(delta: dict[str, Any]) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}

    chunks: list[Chunk] = [_vllm([choice({"role": "assistant", "content": ""})])]
    chunks += [_vllm([choice(delta)]) for delta in deltas]
    finish = {**choice({"content": ""}), "finish_reason": "stop", "stop_reason": None}
    chunks.append(_vllm([finish]))
    if include_usage:
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + len(deltas),
            "completion_tokens": len(deltas),
        }
        chunks.append(_vllm([], usage))
    chunks.append(DONE)
    return chunks


def vllm_reasoning(
    reasoning: Sequence[str],
    answer: Sequence[str],
    *,
    field: str = "reasoning_content",
    include_usage: bool = True,
    prompt_tokens: int = 12,
) -> list[Chunk]:
    """vLLM with a reasoning parser: reasoning deltas in ``delta.reasoning_content``, then content.

    vLLM's reasoning outputs (https://docs.vllm.ai/en/latest/features/reasoning_outputs.html)
    stream the model's thinking apart from its answer; until late 2025 the delta field was
    ``reasoning_content``, DeepSeek's name (vllm-project/vllm#27755 proposed ``reasoning``,
    #27752 renamed it, #33402 removed ``reasoning_content``). Chunk shape as vLLM's
    ``vllm/entrypoints/openai/serving_chat.py`` writes it (pydantic
    ``model_dump_json(exclude_unset=True)``, so unset fields are absent): a ``{"role":
    "assistant", "content": ""}`` first delta, ``"logprobs": null`` on each choice, a finish
    chunk with an empty content delta and ``"stop_reason": null``, no ``usage`` key on ordinary
    chunks, and with ``include_usage`` a last chunk with ``"choices": []`` and usage in vLLM's
    key order (prompt, total, completion).
    """
    deltas = [{field: piece} for piece in reasoning] + [{"content": piece} for piece in answer]
    return _vllm_stream(deltas, include_usage, prompt_tokens)


def vllm_reasoning_field(
    reasoning: Sequence[str],
    answer: Sequence[str],
    *,
    include_usage: bool = True,
    prompt_tokens: int = 12,
) -> list[Chunk]:
    """Newer vLLM (and OpenRouter, Ollama): the reasoning deltas in ``delta.reasoning``.

    vllm-project/vllm#27752 (merged November 2025) renamed the field, following OpenAI's
    guidance for chain of thought in Chat Completions; clients that only read
    ``reasoning_content`` lost the reasoning (BerriAI/litellm#20246, strands-agents/harness-sdk
    #2191). OpenRouter's streaming deltas also name it ``reasoning``
    (https://openrouter.ai/docs/use-cases/reasoning-tokens). Otherwise as :func:`vllm_reasoning`.
    """
    return vllm_reasoning(
        reasoning,
        answer,
        field="reasoning",
        include_usage=include_usage,
        prompt_tokens=prompt_tokens,
    )


THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def think_text(reasoning: str, answer: str, *, opening_tag: bool = True) -> str:
    """The content a thinking model writes when no reasoning parser takes the tags out."""
    return f"{THINK_OPEN if opening_tag else ''}\n{reasoning}\n{THINK_CLOSE}\n\n{answer}"


def think_in_content(
    reasoning: str,
    answer: str,
    split_points: Sequence[int],
    *,
    opening_tag: bool = True,
    include_usage: bool = True,
) -> list[Chunk]:
    """``<think>`` ... ``</think>`` inside the content, cut into deltas at ``split_points``.

    Served without a reasoning parser (vLLM without ``--reasoning-parser``, Ollama's older
    versions, llama.cpp with ``--reasoning-format none``) Qwen3 and DeepSeek-R1 write their
    thinking into the content as ``<think>\\n...\\n</think>\\n\\n`` before the answer (vLLM's
    DeepSeek-R1 parser documents the tags,
    https://docs.vllm.ai/en/latest/api/vllm/reasoning/deepseek_r1_reasoning_parser.html). The
    tags arrive split across deltas like any text, which clients meet as raw ``<think>`` text
    (anomalyco/opencode#47881 added tests for tags split across stream chunks).
    ``opening_tag=False``: the chat template already opened the block, so the model writes only
    the closing tag, the case vLLM's DeepSeek-R1 parser handles. ``split_points`` are offsets
    in :func:`think_text`, e.g. ``[4]`` cuts ``"<thi" + "nk>..."``. vLLM's chunk shape.
    """
    text = think_text(reasoning, answer, opening_tag=opening_tag)
    deltas = [{"content": piece} for piece in split(text, split_points)]
    return _vllm_stream(deltas, include_usage, prompt_tokens=12)


# --- DeepSeek ----------------------------------------------------------------------------------

DEEPSEEK_ID = "f802c271-d4da-4773-b8b3-b1e4dfbf14f3"
DEEPSEEK_FINGERPRINT = "fp_ffc7281d48_prod0820_fp8_kvcache"


def deepseek_reasoning(
    reasoning: Sequence[str],
    answer: Sequence[str],
    *,
    prompt_tokens: int = 6,
    cache_hit_tokens: int = 0,
) -> list[Chunk]:
    """DeepSeek API's deepseek-reasoner: ``reasoning_content`` deltas, then content, usage last.

    DeepSeek's reasoning-model guide (https://api-docs.deepseek.com/guides/reasoning_model) and
    API reference (https://api-docs.deepseek.com/api/create-chat-completion): the chain of
    thought streams in ``delta.reasoning_content`` beside ``content``. As the API sends it (a
    recorded deepseek-reasoner stream in neuraxes/neurouter
    ``internal/data/upstream/deepseek/deepseek_test.go``): the first delta ``{"role":
    "assistant", "content": null, "reasoning_content": ""}``, reasoning deltas with ``"content":
    null``, answer deltas with ``"reasoning_content": null``, and the finish chunk (empty
    content) carrying the usage itself, with ``completion_tokens_details.reasoning_tokens`` and
    ``prompt_cache_hit_tokens``/``prompt_cache_miss_tokens``; no ``usage`` key on other chunks,
    then ``[DONE]``.
    """

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": DEEPSEEK_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": "deepseek-reasoner",
            "system_fingerprint": DEEPSEEK_FINGERPRINT,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    chunks: list[Chunk] = [chunk({"role": "assistant", "content": None, "reasoning_content": ""})]
    chunks += [chunk({"content": None, "reasoning_content": piece}) for piece in reasoning]
    chunks += [chunk({"content": piece, "reasoning_content": None}) for piece in answer]
    completion = len(reasoning) + len(answer)
    finish = chunk({"content": "", "reasoning_content": None}, "stop")
    finish["usage"] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": cache_hit_tokens},
        "completion_tokens_details": {"reasoning_tokens": len(reasoning)},
        "prompt_cache_hit_tokens": cache_hit_tokens,
        "prompt_cache_miss_tokens": prompt_tokens - cache_hit_tokens,
    }
    return [*chunks, finish, DONE]


# --- Ollama ------------------------------------------------------------------------------------

OLLAMA_ID = "chatcmpl-412"
OLLAMA_MODEL = "qwen3:8b"


def go_json(value: Any) -> str:
    """JSON as Go's ``encoding/json`` writes it: raw UTF-8, but ``<``, ``>``, ``&``, U+2028 and
    U+2029 escaped (its HTML-safe default), so ``<think>`` reaches the wire as
    ``\\u003cthink\\u003e``."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def ollama_openai(
    answer: Sequence[str],
    *,
    reasoning: Sequence[str] = (),
    calls: Sequence[tuple[str, str]] = (),
    include_usage: bool = True,
    prompt_tokens: int = 11,
) -> list[Chunk]:
    """Ollama's OpenAI-compatible ``/v1/chat/completions`` stream, as its Go code writes it.

    From ollama/ollama ``openai/openai.go`` (``ChatCompletionChunk``, ``ToChunk``) and
    ``middleware/openai.go`` (``ChatWriter``): every chunk has ``system_fingerprint:
    "fp_ollama"``, no ``logprobs`` and no ``usage`` key; every delta repeats ``"role":
    "assistant"`` and ``content`` (``""`` while thinking); a thinking model's reasoning is in
    ``delta.reasoning`` (omitted when empty; reported in anomalyco/opencode#46061 and
    QwenLM/Qwen-Agent#843); a tool call comes whole in one delta (``id``, ``index``, ``type``,
    ``function``) and the finish reason is then ``tool_calls``; the last chunk has an empty
    content and the finish reason; with ``include_usage`` a copy of it with ``"choices": []``
    and the usage (prompt, completion, total only) follows; then ``data: [DONE]``. Items are
    strings because Go's encoder escapes ``<``, ``>`` and ``&`` (:func:`go_json`).
    ``calls`` are ``(name, arguments JSON)``.
    """

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": OLLAMA_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": OLLAMA_MODEL,
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    objects = [chunk({"role": "assistant", "content": "", "reasoning": r}) for r in reasoning]
    objects += [chunk({"role": "assistant", "content": piece}) for piece in answer]
    for index, (name, arguments) in enumerate(calls):
        call = {
            "id": f"call_{index}",
            "index": index,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        objects.append(chunk({"role": "assistant", "content": "", "tool_calls": [call]}))
    last = chunk({"role": "assistant", "content": ""}, "tool_calls" if calls else "stop")
    objects.append(last)
    if include_usage:
        completion = len(reasoning) + len(answer) + len(calls)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }
        objects.append({**last, "choices": [], "usage": usage})
    encoded: list[Chunk] = [f"data: {go_json(item)}\n\n" for item in objects]
    return [*encoded, DONE]


# --- endings and interruptions -------------------------------------------------------------------


def error_mid_stream(
    tokens: Sequence[str], message: str = "Provider disconnected unexpectedly", *, style: str
) -> list[Chunk]:
    """Content deltas, then an error event inside the 200 stream; ``style`` says whose.

    ``"openai"``: OpenAI's own, as in a gpt-4.1 stream in coder/coder's test fixture
    ``aibridge/fixtures/openai/chatcompletions/stream_error.txtar``: ``data: {"error":
    {"message": ..., "type": "server_error"}}`` spelled with spaces, then the body ends
    without ``[DONE]``.
    ``"openrouter"``: a chunk with the usual fields, a top-level ``error`` (``code``,
    ``message``) and a choice with ``finish_reason: "error"``, then the body ends
    (https://openrouter.ai/docs/api-reference/streaming, "Handling errors during streaming").
    ``"vllm"``: an error object (``message``, ``type``, ``param``, ``code``) and then
    ``[DONE]`` (vllm-project/vllm#40986; block/goose#8031 for the shape).
    """
    chunks = openai_text(tokens, include_usage=False)[: 1 + len(tokens)]
    if style == "openai":
        error = {"error": {"message": message, "type": "server_error"}}
        return [*chunks, f"data: {json.dumps(error)}\n\n"]
    if style == "openrouter":
        failed: dict[str, Any] = {
            "id": "cmpl-abc123",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": "gpt-3.5-turbo",
            "provider": "openai",
            "error": {"code": "server_error", "message": message},
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        }
        return [*chunks, failed]
    if style == "vllm":
        return [*chunks, error_body(500, message), DONE]
    raise ValueError(f"unknown style {style!r}: openai, openrouter or vllm")


def no_done(tokens: Sequence[str], *, finish_reason: str | None = "stop") -> list[Chunk]:
    """OpenAI's shape ending without ``data: [DONE]``: after the finish chunk, or with
    ``finish_reason=None`` right after the last delta (no finish reason at all).

    Servers seen ending so: gpustack/llama-box#2, ikawrakow/ik_llama.cpp#467,
    huggingface/text-generation-inference#2221 (TGI before it added ``[DONE]``); with no finish
    reason either, anomalyco/opencode#43882.
    """
    chunks = openai_text(tokens, include_usage=False)
    if finish_reason is None:
        return chunks[: 1 + len(tokens)]
    ending = _openai([_openai_choice({}, finish_reason)])
    return [*chunks[: 1 + len(tokens)], ending]


def sse_starlette_ping(at: str = "2024-12-05 12:00:00.000000+00:00") -> str:
    """The keep-alive comment of sse-starlette (the SSE library of llama-cpp-python's server and
    other Python servers): ``: ping - <utc time>`` with CRLF line ends, its default separator
    (sysid/sse-starlette ``sse_starlette/event.py``, ``DEFAULT_SEPARATOR = "\\r\\n"``)."""
    return f": ping - {at}\r\n\r\n"


def keepalive_comments(
    tokens: Sequence[str],
    *,
    comment: str = DEEPSEEK_KEEPALIVE,
    before: int = 2,
    between: bool = True,
) -> list[Chunk]:
    """OpenAI's shape with SSE comments: ``before`` of them ahead of the first chunk (a request
    still queued, a model still thinking) and, with ``between``, one before every content delta
    (DeepSeek documents its comments only while a request waits: ``between=False``).

    DeepSeek sends ``: keep-alive`` while a request waits under load
    (https://api-docs.deepseek.com/quick_start/rate_limit); OpenRouter ``: OPENROUTER
    PROCESSING`` (https://openrouter.ai/docs/api-reference/streaming); sse-starlette servers
    :func:`sse_starlette_ping`.
    """
    stream = openai_text(tokens)
    chunks: list[Chunk] = [comment] * before
    chunks.append(stream[0])
    for item in stream[1 : 1 + len(tokens)]:
        chunks += [comment, item] if between else [item]
    return chunks + stream[1 + len(tokens) :]
