"""Configuration of real models: upstream servers and the assistants that use them.

An upstream is any server speaking OpenAI's Chat Completions API (vLLM,
Ollama, Xinference, LM Studio, OpenAI). An assistant is what clients choose: a
public name mapped to a chain of models, each on one or more upstreams (tried
in order before the first token: the first model's upstreams, then each
fallback's), a system prompt, default sampling options and the bounds within
which a request may override them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = [
    "PASSED_FIELDS",
    "STANDARD_FIELDS",
    "AssistantConfig",
    "FallbackConfig",
    "RetryPolicy",
    "UpstreamConfig",
]

PASSED_FIELDS = (
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
)
"""Standard fields sent upstream as the client gave them, when given (the typed ones,
temperature, top_p and the token limit, go through the assistant's defaults)."""

STANDARD_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "n",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        *PASSED_FIELDS,
    }
)
"""The Chat Completions fields the gateway validates and sends itself: ``pass_fields``
may not name one, so a vendor field can never replace what the gateway checked."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpstreamConfig(_Config):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    base_url: str = Field(
        description="e.g. http://127.0.0.1:8001/v1 (the part before /chat/completions)"
    )
    api_keys: list[SecretStr] = Field(default_factory=list, description="none: no Authorization")
    key_strategy: Literal["round_robin", "random"] = "round_robin"
    models: list[str] = Field(default_factory=list, description="models served; empty: any")
    connect_timeout: float = Field(5.0, gt=0, description="seconds to open a connection")
    headers_timeout: float = Field(30.0, gt=0, description="seconds until response headers")
    bench_seconds: float = Field(300.0, ge=0, description="how long a refused key (401/403) rests")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    max_event_chars: int = Field(
        4 << 20, ge=1024, description="longest SSE event read from it, in characters"
    )
    """One streamed event is one small JSON chunk: a token or a few, under a kilobyte even
    with logprobs. 4 Mi characters still fits a server that sends a whole long answer (128k
    tokens, every character ``\\u``-escaped) as one chunk, and bounds what a broken or
    hostile upstream can make the gateway hold for one stream: past it the answer ends with
    ``upstream_event_too_large`` and the connection is closed."""

    pass_fields: list[str] = Field(
        default_factory=list,
        description="vendor request fields sent to it as the client gave them (e.g. top_k)",
    )
    """Fields outside OpenAI's standard mean something only to one kind of server
    (vLLM's ``top_k``, ``repetition_penalty``, ``chat_template_kwargs``) and may be
    refused, or worse misread, by another: each upstream names those it takes."""

    continuous_usage: bool = Field(
        False, description="ask for usage on every chunk (vLLM's continuous_usage_stats)"
    )
    """An upstream that counts only at the end leaves an answer ended early (Stop, a
    timeout, a broken connection) with an estimate; vLLM can send its running count on
    every chunk instead, and the last one seen is then the answer's exact usage."""

    prefix_style: Literal["none", "vllm", "deepseek"] = Field(
        "none", description="how it is asked to continue another upstream's partial answer"
    )
    """An answer whose upstream fails mid-way is continued by the next upstream of its chain
    from the text shown so far. A server that extends a final assistant message token for
    token continues it best: vLLM with ``continue_final_message`` (``vllm``), DeepSeek and
    Mistral with ``"prefix": true`` on that message (``deepseek``). Whether a server does
    cannot be detected, so it is said here; ``none`` (any server) sends the partial answer
    followed by a short instruction to continue it."""

    breaker_cooldown: float = Field(
        1.0, gt=0, description="seconds a failed upstream is skipped after one failure"
    )
    breaker_cooldown_max: float = Field(
        30.0, gt=0, description="longest skip: the cooldown doubles per consecutive failure"
    )
    """The circuit breaker (``models/health.py``): after a connection error, a timeout
    or a 5xx the upstream is skipped for ``breaker_cooldown`` seconds, doubled with each
    further consecutive failure up to ``breaker_cooldown_max``; then one probe is let
    through, whose success closes it."""

    @model_validator(mode="after")
    def _cooldowns_ordered(self) -> UpstreamConfig:
        if self.breaker_cooldown_max < self.breaker_cooldown:
            raise ValueError("breaker_cooldown_max must be at least breaker_cooldown")
        return self

    @model_validator(mode="after")
    def _http_url(self) -> UpstreamConfig:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {self.base_url!r} must start with http:// or https://")
        return self

    @model_validator(mode="after")
    def _vendor_fields_only(self) -> UpstreamConfig:
        standard = sorted(set(self.pass_fields) & STANDARD_FIELDS)
        if standard:
            raise ValueError(
                f"pass_fields may not name standard fields the gateway sends itself: {standard}"
            )
        return self

    def serves(self, model: str) -> bool:
        return not self.models or model in self.models


class RetryPolicy(_Config):
    """Failover before the first token: which failures retry, and for how long."""

    deadline: float = Field(30.0, gt=0, description="total seconds spent on attempts")
    backoff_initial: float = Field(0.2, ge=0, description="first pause between attempts")
    backoff_max: float = Field(5.0, ge=0, description="longest pause between attempts")


class FallbackConfig(_Config):
    """One further link of an assistant's chain: a model, and the upstreams serving it."""

    model: str = Field(min_length=1, description="the model name these upstreams know")
    upstreams: list[str] = Field(
        default_factory=list, description="upstream names in failover order; empty: all serving it"
    )


class AssistantConfig(_Config):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    model: str = Field(min_length=1, description="the model name the upstream knows")
    upstreams: list[str] = Field(
        default_factory=list, description="upstream names in failover order; empty: all serving it"
    )
    fallbacks: list[FallbackConfig] = Field(
        default_factory=list,
        description="further models tried in order when every upstream of the one before failed",
    )
    """The rest of the chain after ``model``/``upstreams`` (e.g. a local model first, a
    hosted one next): a failure before the first token moves through the first model's
    upstreams, then down the chain, each link sending its own model name."""
    continue_on_failure: bool = Field(
        True, description="continue an answer on the next upstream when its upstream fails"
    )
    """When the upstream fails after the answer's response began (a reset, an error
    mid-stream, a stall past ``idle_timeout``), the next upstream of the chain is asked to
    continue from the text shown, and the listener reads one answer; off, the answer ends
    with the failure, as an answer whose chain has no further upstream does."""
    max_switches: int = Field(
        2, ge=0, description="most upstream switches one answer may make mid-way"
    )
    """Past it, the next failure ends the answer: a chain failing over and over is better
    told to the user than patched together from many models."""
    description: str = ""
    system_prompt: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_tokens_limit: int | None = Field(
        None, ge=1, description="largest max_tokens a request may ask"
    )
    temperature_limit: float = Field(
        2.0, ge=0, le=2, description="highest temperature a request may ask"
    )
    first_token_timeout: float | None = Field(None, gt=0)
    idle_timeout: float | None = Field(None, gt=0)
    total_timeout: float | None = Field(None, gt=0)
    reasoning: Literal["show", "hide"] = Field(
        "show", description="whether clients get the model's reasoning (it is stored either way)"
    )
    think_tags: bool = Field(
        False, description="the model writes its reasoning in <think>…</think> inside the content"
    )
    """A model served as plain text (a reasoning model behind a server with no reasoning
    parser) writes its thinking into the answer between ``<think>`` and ``</think>``.
    Nothing in the stream tells that apart from an answer that merely quotes the tags,
    so the operator says it, per assistant."""

    accepts_images: bool = Field(
        False, description="its model reads image_url content parts (a vision model)"
    )
