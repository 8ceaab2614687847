"""The ``typewriter`` command: ``serve`` the gateway, ``chat`` from a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from typewriter.cli_keys import keys_app
from typewriter.cli_users import active_users, users_app
from typewriter.config import Settings, load_settings
from typewriter.errors import ConfigError
from typewriter.observe.logs import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port [8000]")] = None,
    broker: Annotated[
        str | None,
        typer.Option(help="where streams live: memory, or redis://host:port/db for replicas"),
    ] = None,
    lease_timeout: Annotated[
        float | None,
        typer.Option(help="seconds before a dead replica's answers end 'interrupted' [15]"),
    ] = None,
    heartbeat: Annotated[float | None, typer.Option(help="seconds between pings [15]")] = None,
    grace: Annotated[
        float | None, typer.Option(help="seconds a detached answer runs unheard [30]")
    ] = None,
    retention: Annotated[
        float | None, typer.Option(help="seconds a finished stream is kept [600]")
    ] = None,
    first_token_timeout: Annotated[
        float | None, typer.Option(help="seconds to wait for the first token [60]")
    ] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="seconds without a token before 'timeout' [30]")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug|info|warning|error")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="postgresql+asyncpg://… (default: SQLite in data dir)")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="where the SQLite file lives [data]")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML settings file (also TYPEWRITER_CONFIG)")
    ] = None,
    insecure: Annotated[
        bool | None,
        typer.Option("--insecure", help="serve a non-loopback address without API keys"),
    ] = None,
) -> None:
    """Serve the gateway and its page. Every flag also reads TYPEWRITER_<FLAG>."""
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"no such file: {config}", param_hint="--config")
    try:  # settings errors are the operator's to fix: say which, without a traceback
        settings = load_settings(
            config,
            host=host,
            port=port,
            broker=broker,
            lease_timeout=lease_timeout,
            heartbeat=heartbeat,
            grace=grace,
            retention=retention,
            first_token_timeout=first_token_timeout,
            idle_timeout=idle_timeout,
            log_level=log_level,
            database_url=database_url,
            data_dir=data_dir,
            insecure=insecure,
        )
        users = _check_exposure(settings)
        from typewriter.server import build_server

        server = build_server(settings)
    except ConfigError as exc:
        typer.echo(f"typewriter: {exc.message}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings)
    gateway = server.app.state.gateway
    store = gateway.store
    kept = "not kept (database_url = none)" if store is None else store.describe()
    where = f"http://{settings.host}:{settings.port}/"
    typer.echo(f"typewriter on {where} (broker: {gateway.broker.describe()})")
    typer.echo(f"conversations: {kept}")
    if users:
        typer.echo(f"auth: on, {users} user(s); every /v1 call needs 'Authorization: Bearer <key>'")
    else:
        typer.echo(
            "auth: off (no API keys): everyone is the one local user"
            + ("" if settings.host in _LOOPBACK else " -- on a non-loopback address (--insecure)")
            + "; add one with: typewriter users add NAME"
        )
    server.run()


def _check_exposure(settings: Settings) -> int:
    """Refuse to serve the network with nobody signed in, unless told ``--insecure``."""
    users = active_users(settings)
    if users == 0 and settings.host not in _LOOPBACK and not settings.insecure:
        raise ConfigError(
            f"refusing to serve {settings.host} without API keys: anyone who can reach it "
            "would use the model as the one local user. Add a user first "
            "(typewriter users add NAME), serve on 127.0.0.1, or pass --insecure "
            "(TYPEWRITER_INSECURE=1) to serve it open anyway"
        )
    return users


@app.command()
def chat(
    question: Annotated[str, typer.Argument(help="what to ask")],
    url: Annotated[str, typer.Option(help="the gateway")] = "http://127.0.0.1:8000",
    assistant: Annotated[str, typer.Option(help="assistant name")] = "default",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="TYPEWRITER_API_KEY", help="API key, when the gateway has users"),
    ] = None,
) -> None:
    """Ask from a terminal and watch the answer type itself; Ctrl+C stops generating."""
    from typewriter.client import ask_and_print

    raise typer.Exit(ask_and_print(url, question, assistant, api_key))


def main() -> None:
    app()
