"""One settings object, read from flags, ``TYPEWRITER_*`` variables and a TOML file.

Precedence, highest first: command-line flags, environment, the TOML file
(``--config`` or ``TYPEWRITER_CONFIG``), built-in defaults. The defaults are the
embedded set-up: simulated model, in-process broker, loopback only, so that
``typewriter serve`` works on a fresh machine with nothing else running.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from typewriter.errors import ConfigError
from typewriter.upstreams import AssistantConfig, RetryPolicy, UpstreamConfig

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Every knob of the gateway; ``typewriter serve --help`` lists them."""

    model_config = SettingsConfigDict(env_prefix="TYPEWRITER_", extra="forbid")

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on (0 picks one)")
    broker: str = Field(
        "memory", description="where streams live: 'memory' or redis://host:port/db (replicas)"
    )
    lease_timeout: float = Field(
        15.0,
        ge=1,
        description="seconds after which an answer whose replica died is ended 'interrupted'",
    )
    heartbeat: float = Field(15.0, gt=0, description="seconds between ': ping' comments")
    retry_ms: int = Field(2000, ge=0, description="reconnection delay sent as 'retry:'")
    grace: float = Field(
        30.0, ge=0, description="seconds a detached answer keeps generating with no listener"
    )
    retention: float = Field(600.0, gt=0, description="seconds a finished stream stays readable")
    first_token_timeout: float = Field(
        60.0, gt=0, description="seconds to wait for the model's first token"
    )
    idle_timeout: float = Field(
        30.0, gt=0, description="seconds without a token before the answer ends 'timeout'"
    )
    max_body_bytes: int = Field(1 << 20, gt=0, description="largest accepted request body")
    max_header_bytes: int = Field(
        32 * 1024, gt=0, description="largest accepted request headers, all together (431)"
    )
    shutdown_timeout: float = Field(
        5.0, ge=0, description="seconds open streams get to close on shutdown"
    )
    total_timeout: float = Field(600.0, gt=0, description="longest an answer may take, seconds")
    log_level: str = Field("info", description="debug, info, warning or error")
    data_dir: Path = Field(Path("data"), description="where the SQLite file lives")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL (postgresql+asyncpg://…); default: SQLite in data_dir; "
        "'none' keeps no history",
    )
    history_budget_chars: int = Field(
        24_000, gt=0, description="how much recent history the model gets, in characters"
    )
    checkpoint_interval: float = Field(
        2.0, gt=0, description="seconds between saves of an answer while it streams"
    )
    upstreams: list[UpstreamConfig] = Field(
        default_factory=list, description="OpenAI-compatible servers (TOML [[upstreams]])"
    )
    assistants: list[AssistantConfig] = Field(
        default_factory=list, description="assistants on those upstreams (TOML [[assistants]])"
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="failover policy")
    builtin_assistants: bool | None = Field(
        None, description="serve the simulated 'default' and 'echo' (default: when none configured)"
    )
    insecure: bool = Field(
        False, description="serve an address other than loopback without API keys (anyone is in)"
    )
    ticket_secret: SecretStr | None = Field(
        None,
        description="HMAC secret for events_url tickets; default: generated in data_dir "
        "(replicas must share one: set it)",
    )
    ticket_ttl: float = Field(
        1200.0, gt=0, description="seconds an events_url ticket stays valid for reconnects"
    )
    max_streams_per_user: int = Field(
        8, gt=0, description="answers one user may have generating at once (429 beyond)"
    )
    requests_per_minute: int = Field(
        120, gt=0, description="requests one user may make per minute (429 beyond)"
    )
    max_answer_chars: int = Field(
        100_000, gt=0, description="longest answer, in characters; it ends 'length' there"
    )
    max_message_chars: int = Field(
        32_000, gt=0, description="longest message a user may send, in characters (422 beyond)"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed to call the API from a browser"
    )
    default_assistant: str | None = Field(
        None,
        description="assistant used when a request names none (default: 'default' when "
        "served, else the first configured one)",
    )
    show_system_prompts: bool = Field(
        False, description="show each assistant's system prompt in GET /v1/assistants"
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="bearer token GET /metrics needs when auth is on (without it, /metrics "
        "answers only when auth is off)",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="log lines as plain text, or one JSON object per line"
    )
    upstream_check_interval: float = Field(
        5.0, gt=0, description="seconds an upstream's reachability check is reused by /readyz"
    )
    drain_timeout: float = Field(
        30.0,
        ge=0,
        description="seconds running answers may go on after SIGTERM before they end "
        "'interrupted'",
    )


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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"invalid settings: {problems}") from None
    except (OSError, ValueError) as exc:  # an unreadable or malformed TOML file
        raise ConfigError(f"cannot read settings from {toml_path}: {exc}") from None
    return loaded
