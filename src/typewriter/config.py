"""One settings object, read from flags, ``TYPEWRITER_*`` variables and a TOML file.

Precedence, highest first: command-line flags, environment, the TOML file
(``--config`` or ``TYPEWRITER_CONFIG``), built-in defaults. The defaults are the
embedded set-up: simulated model, in-process broker, loopback only, SQLite in
the platform's data directory, so that ``typewriter serve`` works on a fresh
machine with nothing else running, from any directory.

Each field carries its help group (a :class:`Group` in its annotation): the
``serve`` flags and docs/configuration.md are made from the fields, so a new
setting is one field here. A wrong value of any source is one line naming the
setting (:class:`~typewriter.errors.ConfigError`), never a traceback.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from typewriter.errors import ConfigError
from typewriter.upstreams import AssistantConfig, RetryPolicy, UpstreamConfig

__all__ = [
    "DATABASE_URL_FORMS",
    "ENV_PREFIX",
    "GROUPS",
    "Group",
    "Settings",
    "default_data_dir",
    "group_of",
    "load_settings",
]

ENV_PREFIX = "TYPEWRITER_"
DATABASE_URL_FORMS = (
    "postgresql+asyncpg://user:password@host:5432/db, sqlite+aiosqlite:///path/file.db, or none"
)
_ASYNC_DRIVERS = ("postgresql+asyncpg://", "sqlite+aiosqlite://")
_UNSHOWN = {"ticket_secret", "metrics_token", "database_url"}  # secrets, passwords in URLs


@dataclass(frozen=True)
class Group:
    """Where a setting is listed in ``serve --help`` and docs/configuration.md."""

    title: str


NETWORK = Group("Network")
STREAMS = Group("Streams")
TIMEOUTS = Group("Timeouts")
LIMITS = Group("Limits")
ASSISTANTS = Group("Assistants")
STORAGE = Group("Storage")
AUTH = Group("Auth")
OPERATIONS = Group("Operations")
GROUPS = (NETWORK, STREAMS, TIMEOUTS, LIMITS, ASSISTANTS, STORAGE, AUTH, OPERATIONS)


def default_data_dir() -> Path:
    """The platform's per-user data directory (``~/.local/share/typewriter`` on Linux),
    so that every command finds the same database whatever directory it runs in."""
    return Path(user_data_dir("typewriter", appauthor=False))


class Settings(BaseSettings):
    """Every knob of the gateway; typewriter serve --help lists them."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    host: Annotated[str, NETWORK] = Field("127.0.0.1", description="address to listen on")
    port: Annotated[int, NETWORK] = Field(
        8000, ge=0, le=65535, description="port to listen on (0 picks one)"
    )
    broker: Annotated[str, STREAMS] = Field(
        "memory", description="where streams live: 'memory' or redis://host:port/db (replicas)"
    )
    lease_timeout: Annotated[float, STREAMS] = Field(
        15.0,
        ge=1,
        description="seconds after which an answer whose replica died is ended 'interrupted'",
    )
    heartbeat: Annotated[float, STREAMS] = Field(
        15.0, gt=0, description="seconds between ': ping' comments"
    )
    retry_ms: Annotated[int, STREAMS] = Field(
        2000, ge=0, description="reconnection delay sent as 'retry:'"
    )
    grace: Annotated[float, STREAMS] = Field(
        30.0, ge=0, description="seconds a detached answer keeps generating with no listener"
    )
    retention: Annotated[float, STREAMS] = Field(
        600.0, gt=0, description="seconds a finished stream stays readable"
    )
    first_token_timeout: Annotated[float, TIMEOUTS] = Field(
        60.0, gt=0, description="seconds to wait for the model's first token"
    )
    idle_timeout: Annotated[float, TIMEOUTS] = Field(
        30.0, gt=0, description="seconds without a token before the answer ends 'timeout'"
    )
    max_body_bytes: Annotated[int, LIMITS] = Field(
        1 << 20, gt=0, description="largest accepted request body"
    )
    max_header_bytes: Annotated[int, LIMITS] = Field(
        32 * 1024, gt=0, description="largest accepted request headers, all together (431)"
    )
    shutdown_timeout: Annotated[float, OPERATIONS] = Field(
        5.0,
        ge=0,
        description="seconds the requests still open get once the drain is over and the "
        "socket closed (0: none)",
    )
    total_timeout: Annotated[float, TIMEOUTS] = Field(
        600.0, gt=0, description="longest an answer may take, seconds"
    )
    log_level: Annotated[Literal["debug", "info", "warning", "error"], OPERATIONS] = Field(
        "info", description="least important log lines shown"
    )
    data_dir: Annotated[Path, STORAGE] = Field(
        default_factory=default_data_dir,
        description="where the SQLite file and the generated ticket secret live",
    )
    database_url: Annotated[str | None, STORAGE] = Field(
        None,
        description="SQLAlchemy URL with an async driver (postgresql+asyncpg://…); "
        "default: SQLite in data_dir; 'none' keeps no history",
    )
    history_budget_chars: Annotated[int, ASSISTANTS] = Field(
        24_000, gt=0, description="how much recent history the model gets, in characters"
    )
    checkpoint_interval: Annotated[float, STORAGE] = Field(
        0.5,
        gt=0,
        description="seconds between saves of the running answers (all in one write)",
    )
    upstreams: Annotated[list[UpstreamConfig], ASSISTANTS] = Field(
        default_factory=list, description="OpenAI-compatible servers (TOML [[upstreams]])"
    )
    assistants: Annotated[list[AssistantConfig], ASSISTANTS] = Field(
        default_factory=list, description="assistants on those upstreams (TOML [[assistants]])"
    )
    retry: Annotated[RetryPolicy, ASSISTANTS] = Field(
        default_factory=RetryPolicy, description="failover policy (TOML [retry])"
    )
    builtin_assistants: Annotated[bool | None, ASSISTANTS] = Field(
        None, description="serve the simulated 'default' and 'echo' (default: when none configured)"
    )
    auth: Annotated[Literal["auto", "on", "off"], AUTH] = Field(
        "auto",
        description="API keys: 'on', 'off', or 'auto' (on when a user exists at start, and "
        "on for good once a user is added; never off again while serving)",
    )
    insecure: Annotated[bool, AUTH] = Field(
        False, description="serve an address other than loopback without API keys (anyone is in)"
    )
    ticket_secret: Annotated[SecretStr | None, AUTH] = Field(
        None,
        description="HMAC secret for events_url tickets; default: generated in data_dir "
        "(replicas must share one: set it, better as the variable than as a flag)",
    )
    ticket_ttl: Annotated[float, AUTH] = Field(
        1200.0, gt=0, description="seconds an events_url ticket stays valid for reconnects"
    )
    max_streams_per_user: Annotated[int, LIMITS] = Field(
        8, gt=0, description="answers one user may have generating at once (429 beyond)"
    )
    max_listeners_per_user: Annotated[int, LIMITS] = Field(
        100,
        gt=0,
        description="event listeners one user may hold open on a replica; beyond it a new one "
        "replaces an older one (of the same stream first)",
    )
    requests_per_minute: Annotated[int, LIMITS] = Field(
        120, gt=0, description="requests one user may make per minute (429 beyond)"
    )
    max_answer_chars: Annotated[int, LIMITS] = Field(
        100_000, gt=0, description="longest answer, in characters; it ends 'length' there"
    )
    max_reasoning_chars: Annotated[int, LIMITS] = Field(
        100_000, gt=0, description="longest reasoning kept and relayed, in characters"
    )
    max_image_bytes: Annotated[int, LIMITS] = Field(
        20 << 20,
        gt=0,
        description="largest request body that carries images (beyond max_body_bytes)",
    )
    max_message_chars: Annotated[int, LIMITS] = Field(
        32_000, gt=0, description="longest message a user may send, in characters (422 beyond)"
    )
    cors_origins: Annotated[list[str], NETWORK] = Field(
        default_factory=list, description="origins allowed to call the API from a browser"
    )
    default_assistant: Annotated[str | None, ASSISTANTS] = Field(
        None,
        description="assistant used when a request names none (default: 'default' when "
        "served, else the first configured one)",
    )
    show_system_prompts: Annotated[bool, ASSISTANTS] = Field(
        False, description="show each assistant's system prompt in GET /v1/assistants"
    )
    metrics_token: Annotated[SecretStr | None, AUTH] = Field(
        None,
        description="bearer token GET /metrics needs when auth is on (without it, /metrics "
        "answers only when auth is off; better as the variable than as a flag)",
    )
    log_format: Annotated[Literal["text", "json"], OPERATIONS] = Field(
        "text", description="log lines as plain text, or one JSON object per line"
    )
    upstream_check_interval: Annotated[float, ASSISTANTS] = Field(
        5.0, gt=0, description="seconds an upstream's reachability check is reused by /readyz"
    )
    drain_timeout: Annotated[float, OPERATIONS] = Field(
        30.0,
        ge=0,
        description="seconds running answers may go on after SIGTERM (socket open, new asks "
        "refused with 503) before they end 'interrupted'; then shutdown_timeout applies",
    )

    header_timeout: Annotated[float, TIMEOUTS] = Field(
        10.0,
        gt=0,
        description="seconds a client gets to send a request's head; an idle kept-alive "
        "connection waits no longer for its next request (408, or closed when nothing came)",
    )
    body_timeout: Annotated[float, TIMEOUTS] = Field(
        30.0, gt=0, description="seconds a request's body may take to arrive in full (408)"
    )
    max_header_lines: Annotated[int, LIMITS] = Field(
        100, gt=0, description="most header lines in one request (431 beyond)"
    )
    max_url_bytes: Annotated[int, LIMITS] = Field(
        8192, gt=0, description="longest request line (method, path and query) (414 beyond)"
    )
    max_connections: Annotated[int, LIMITS] = Field(
        10_000,
        gt=0,
        description="open client connections at most (beyond: 503 and closed); lowered at "
        "start to what the descriptor limit allows",
    )
    max_retained_bytes: Annotated[int, LIMITS] = Field(
        256 * 1024 * 1024,
        gt=0,
        description="memory the in-process broker may spend on streams' events; beyond it the "
        "oldest finished streams are dropped (410, as if expired)",
    )
    max_retained_bytes_per_user: Annotated[int, LIMITS] = Field(
        32 * 1024 * 1024,
        gt=0,
        description="share of max_retained_bytes one user's streams may hold; beyond it that "
        "user's oldest finished streams are dropped first",
    )
    trusted_proxies: Annotated[list[str], NETWORK] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="peer addresses (or networks) whose X-Forwarded-For names the client, "
        "e.g. an nginx in front",
    )
    limit_loopback: Annotated[bool, LIMITS] = Field(
        False,
        description="with auth off, apply the per-client limits to clients connecting "
        "directly from loopback too (by default they are exempt)",
    )
    redis_timeout: Annotated[float, STREAMS] = Field(
        3.0,
        gt=0,
        description="seconds a Redis command may take before it counts as failed (an ask "
        "then gets 503 and nothing is recorded)",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        """Checked at start, one line for the first bad entry: a proxy written wrong would
        otherwise be silently untrusted, and every client would look like the proxy."""
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (like 10.0.0.5 or 10.0.0.0/8)"
                ) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        """The store runs on asyncio: a URL without an async driver (``postgresql://``)
        would fail deep inside SQLAlchemy at start-up, so it is refused here."""
        if value is None or value == "none" or value.startswith(_ASYNC_DRIVERS):
            return value
        scheme = value.partition("://")[0] or value
        raise ValueError(f"{scheme!r} is not a supported async driver; use {DATABASE_URL_FORMS}")


def group_of(name: str) -> Group:
    """The help group of the setting ``name``."""
    (group,) = (m for m in Settings.model_fields[name].metadata if isinstance(m, Group))
    return group


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from all sources; ``overrides`` (flags) win over everything else."""
    toml_path = config_file or (
        Path(os.environ["TYPEWRITER_CONFIG"]) if os.environ.get("TYPEWRITER_CONFIG") else None
    )

    class _FromSources(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if toml_path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
            return tuple(sources)

    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        loaded = _FromSources(**given)
    except ValidationError as exc:
        raise ConfigError(_invalid(exc)) from None
    except SettingsError as exc:  # a variable that is not JSON where JSON is needed
        raise ConfigError(_unparsable(exc)) from None
    except (OSError, ValueError) as exc:  # an unreadable or malformed TOML file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot read settings from {toml_path}: {reason}") from None
    return loaded


def _invalid(exc: ValidationError) -> str:
    """Every problem on one line: ``invalid setting port: … (got 70000)``."""
    problems = []
    for error in exc.errors(include_url=False):
        where = _dotted(error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown setting {where}")
            continue
        got = "" if where.split(".")[0] in _UNSHOWN else f" (got {_shown(error['input'])})"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"invalid setting {where}: {message}{got}")
    return "; ".join(problems)


def _unparsable(exc: SettingsError) -> str:
    match = re.search(r'field "(\w+)"', str(exc))
    if match is None:
        return f"invalid settings: {exc}"
    name = match.group(1)
    cause = exc.__cause__
    reason = f"not valid JSON ({cause})" if isinstance(cause, json.JSONDecodeError) else str(exc)
    return f"invalid setting {name} ({ENV_PREFIX}{name.upper()}): {reason}"


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
