"""Assistants: a public name mapped to a backend, a model, a system prompt and defaults.

Clients choose an assistant, never a backend, so an operator can move an
assistant to another model without any client noticing. The catalog is built
once from settings; a wrong reference (an assistant or one of its fallbacks
naming an upstream that does not exist, or that does not serve that model, a
model no upstream serves, or a ``default_assistant`` that is not served) stops
start-up with its name.

The catalog also names the default assistant, the one that answers when a
request names none: configuring assistants of one's own must not leave every
client that relies on a default (the README's curl, ``typewriter chat``, the
page) asking for a ``default`` that is no longer served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from typewriter.config import Settings
from typewriter.errors import ConfigError
from typewriter.models.base import GenerationOptions, ModelBackend
from typewriter.models.health import QUIET, UpstreamEvents
from typewriter.models.simulated import SimulatedModel
from typewriter.upstreams import AssistantConfig

if TYPE_CHECKING:
    from typewriter.models.openai import Link, Upstream, UpstreamClient

__all__ = ["Assistant", "Catalog", "Timeouts", "build_catalog"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    first_token: float
    idle: float
    total: float


@dataclass(frozen=True, slots=True)
class Assistant:
    name: str
    model: str
    backend: ModelBackend
    timeouts: Timeouts
    description: str = ""
    system_prompt: str | None = None
    defaults: GenerationOptions = field(default_factory=GenerationOptions)
    max_tokens_limit: int | None = None
    temperature_limit: float = 2.0
    reasoning: str = "show"  # "show" | "hide": whether clients get the model's reasoning
    think_tags: bool = False  # the model writes its reasoning in <think>…</think> in the text
    accepts_images: bool = False  # its model reads image_url parts; others are refused them
    continue_on_failure: bool = True  # an upstream failing mid-answer hands it to the next
    max_switches: int = 2  # most such hand-overs in one answer

    def out_of_bounds(self, options: GenerationOptions) -> list[dict[str, str]]:
        """Field errors for per-request options beyond what this assistant allows."""
        problems = []
        limit = self.max_tokens_limit
        if limit is not None and options.max_tokens is not None and options.max_tokens > limit:
            problems.append(
                {"field": "max_tokens", "message": f"at most {limit} for assistant {self.name!r}"}
            )
        if options.temperature is not None and options.temperature > self.temperature_limit:
            problems.append(
                {
                    "field": "temperature",
                    "message": f"at most {self.temperature_limit:g} for assistant {self.name!r}",
                }
            )
        return problems

    def public(self, *, show_system_prompt: bool = False) -> dict[str, Any]:
        """What ``GET /v1/assistants`` shows: never the backend's credentials, and the
        system prompt only when the operator says so (``show_system_prompts``): a prompt
        may hold instructions its author would not hand to every user."""
        shown: dict[str, Any] = {
            "name": self.name,
            "model": self.model,
            "description": self.description,
            "accepts_images": self.accepts_images,
        }
        if show_system_prompt:
            shown["system_prompt"] = self.system_prompt
        return shown | {
            "defaults": {
                "temperature": self.defaults.temperature,
                "top_p": self.defaults.top_p,
                "max_tokens": self.defaults.max_tokens,
            },
            "limits": {
                "max_tokens": self.max_tokens_limit,
                "temperature": self.temperature_limit,
            },
        }


@dataclass(slots=True)
class Catalog:
    """The assistants, the name of the one that answers when a request names none, and the
    HTTP client their upstreams share (closed on shutdown)."""

    assistants: Mapping[str, Assistant]
    default: str
    http: UpstreamClient | None = None

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()


def build_catalog(settings: Settings, events: UpstreamEvents = QUIET) -> Catalog:
    default_timeouts = Timeouts(
        settings.first_token_timeout, settings.idle_timeout, settings.total_timeout
    )
    assistants: dict[str, Assistant] = {}
    builtin = settings.builtin_assistants
    if builtin or (builtin is None and not settings.assistants):
        assistants.update(_simulated(default_timeouts))
    http = None
    if settings.assistants:
        from typewriter.models.openai import UpstreamClient

        http = UpstreamClient()  # its session is made on first use, in the server's loop
        assistants.update(_configured(settings, http, default_timeouts, events))
    return Catalog(assistants, _default_name(settings, assistants), http)


def _default_name(settings: Settings, assistants: Mapping[str, Assistant]) -> str:
    """``default_assistant`` if set (it must be served); else ``default`` while the simulated
    one is served, else the first configured assistant."""
    served = list(assistants)
    chosen = settings.default_assistant
    if chosen is not None:
        if chosen not in assistants:
            raise ConfigError(
                f"default_assistant {chosen!r} is not a served assistant; served: {served}"
            )
        return chosen
    if not served:
        raise ConfigError(
            "no assistant is served: builtin_assistants is off and no [[assistants]] are configured"
        )
    return "default" if "default" in assistants else served[0]


def _simulated(timeouts: Timeouts) -> dict[str, Assistant]:
    model = SimulatedModel()
    return {
        "default": Assistant(
            "default",
            "default",
            model,
            timeouts,
            "A canned multi-line answer typed at a human pace.",
        ),
        "echo": Assistant(
            "echo",
            "echo",
            model,
            timeouts,
            "Answers with your message verbatim, a few characters at a time.",
            # Takes images (answering with the text), so the page and tests can send some
            # with no vision model at hand; echo_history shows what reached the model.
            accepts_images=True,
        ),
    }


def _configured(
    settings: Settings, http: UpstreamClient, defaults: Timeouts, events: UpstreamEvents
) -> dict[str, Assistant]:
    from typewriter.models.openai import OpenAIBackend, Upstream

    upstreams = {
        u.name: Upstream.from_config(u, settings.upstream_check_interval)
        for u in settings.upstreams
    }
    if len(upstreams) != len(settings.upstreams):
        raise ConfigError("two upstreams have the same name")
    built: dict[str, Assistant] = {}
    for config in settings.assistants:
        if config.name in built:
            raise ConfigError(f"assistant {config.name!r} is configured twice")
        backend = OpenAIBackend(http, _chain(config, upstreams), settings.retry, events)
        built[config.name] = Assistant(
            name=config.name,
            model=config.model,
            backend=backend,
            timeouts=Timeouts(
                config.first_token_timeout or defaults.first_token,
                config.idle_timeout or defaults.idle,
                config.total_timeout or defaults.total,
            ),
            description=config.description,
            system_prompt=config.system_prompt,
            defaults=GenerationOptions(
                temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens
            ),
            max_tokens_limit=config.max_tokens_limit,
            temperature_limit=config.temperature_limit,
            reasoning=config.reasoning,
            think_tags=config.think_tags,
            accepts_images=config.accepts_images,
            continue_on_failure=config.continue_on_failure,
            max_switches=config.max_switches,
        )
    return built


def _chain(config: AssistantConfig, upstreams: Mapping[str, Upstream]) -> list[Link]:
    """The assistant's links in order: its own model, then each fallback."""
    from typewriter.models.openai import Link

    links = [(config.model, config.upstreams)]
    links += [(fallback.model, fallback.upstreams) for fallback in config.fallbacks]
    chain = []
    for i, (model, names) in enumerate(links):
        where = f"assistant {config.name!r}" + (f" fallbacks[{i - 1}] ({model!r})" if i else "")
        chain.append(Link(model, tuple(_route(where, model, names, upstreams))))
    return chain


def _route(
    where: str, model: str, names: list[str], upstreams: Mapping[str, Upstream]
) -> list[Upstream]:
    names = names or [n for n, u in upstreams.items() if u.config.serves(model)]
    missing = [n for n in names if n not in upstreams]
    if missing:
        raise ConfigError(
            f"{where} names unknown upstream(s) {missing}; configured: {sorted(upstreams)}"
        )
    if not names:
        raise ConfigError(f"{where}: no upstream serves model {model!r}")
    elsewhere = [n for n in names if not upstreams[n].config.serves(model)]
    if elsewhere:
        raise ConfigError(f"{where}: upstream(s) {elsewhere} do not serve model {model!r}")
    return [upstreams[n] for n in names]
