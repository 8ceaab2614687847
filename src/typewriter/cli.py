"""The typewriter command: serve the gateway, chat from a terminal, manage users and keys."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer

from typewriter import tickets
from typewriter.cli_conversations import conversations_app
from typewriter.cli_help import Typer, _Group
from typewriter.cli_settings import given_flags, with_setting_flags
from typewriter.config import Settings, load_settings
from typewriter.errors import ConfigError
from typewriter.observe.logs import configure_logging
from typewriter.terminal.options import DEFAULT_URL, ApiKey, Url

__all__ = ["app", "main"]

_LAZY = {"users": "typewriter.cli_users:users_app", "keys": "typewriter.cli_keys:keys_app"}
"""Command groups imported only when run (or listed by --help): they open the store, whose
imports (SQLAlchemy, the drivers) would make every ``typewriter chat`` start half a second
later."""


class _Commands(_Group):  # plain-flag help, as every command of Typer
    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *_LAZY]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in _LAZY:
            return super().get_command(ctx, cmd_name)
        module, name = _LAZY[cmd_name].split(":")
        command = typer.main.get_command(getattr(importlib.import_module(module), name))
        command.name = cmd_name  # as a subcommand: without the completion options of a root
        command.params = [p for p in command.params if "completion" not in (p.name or "")]
        return command


app = Typer(add_completion=False, no_args_is_help=True, help=__doc__, cls=_Commands)
app.add_typer(conversations_app, name="conversations")

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@app.command()
@with_setting_flags
def serve(
    config: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="TOML settings file (also TYPEWRITER_CONFIG)"),
    ] = None,
    **flags: Any,
) -> None:
    """Serve the gateway and its page.

    Every flag is also a TYPEWRITER_<NAME> variable and a key of the TOML file;
    docs/configuration.md explains each.
    """
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"no such file: {config}", param_hint="--config")
    try:  # settings errors are the operator's to fix: say which, without a traceback
        settings = load_settings(config, **given_flags(flags))
        users = _check_exposure(settings)
        if settings.auth == "auto" and users:  # decided now: what is printed is what runs
            settings = settings.model_copy(update={"auth": "on"})
        _check_ticket_secret(settings)
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
    typer.echo(_auth_line(settings, users))
    server.run()
    if not server.started:  # uvicorn said why (a port in use, a failed start-up)
        raise typer.Exit(2)


def _check_exposure(settings: Settings) -> int:
    """Refuse to serve the network with auth off, unless told ``--insecure``; returns how
    many users can sign in (0 with ``auth = off``, where they do not matter)."""
    if settings.auth == "on" and settings.database_url == "none":
        raise ConfigError(
            "auth = on needs users, and database_url = none keeps none: every /v1 call "
            "would answer 401. Give it a database, or set auth to auto or off"
        )
    from typewriter.cli_users import active_users

    users = 0 if settings.auth == "off" else active_users(settings)
    exposed = settings.host not in _LOOPBACK and not settings.insecure
    if exposed and settings.auth != "on" and users == 0:
        fix = (
            "set auth to auto or on (TYPEWRITER_AUTH)"
            if settings.auth == "off"
            else "add a user first (typewriter users add NAME)"
        )
        raise ConfigError(
            f"refusing to serve {settings.host} without API keys (auth = {settings.auth}): "
            f"anyone who can reach it would use the model as the one local user. To fix: "
            f"{fix}, serve on 127.0.0.1, or pass --insecure (TYPEWRITER_INSECURE=1) to "
            "serve it open anyway"
        )
    return users


def _auth_line(settings: Settings, users: int) -> str:
    """What ``serve`` says of auth: the mode in effect, and what it means for a caller."""
    if settings.auth == "on":
        if users:
            return f"auth: on, {users} user(s); every /v1 call needs 'Authorization: Bearer <key>'"
        return (
            "auth: on, no user yet: every /v1 call answers 401 until one is added "
            "(typewriter users add NAME)"
        )
    exposed = "" if settings.host in _LOOPBACK else " -- on a non-loopback address (--insecure)"
    if settings.auth == "off":
        return f"auth: off (auth = off): everyone is the one local user{exposed}"
    return (
        f"auth: off for now (auto, no user yet): everyone is the one local user{exposed}; "
        "it turns on for good when one is added: typewriter users add NAME"
    )


def _check_ticket_secret(settings: Settings) -> None:
    """With auth on, the generated ticket secret is made now, not on the first request."""
    if settings.auth != "on" or settings.ticket_secret is not None:
        return
    try:
        tickets.load_secret(None, settings.data_dir)
    except OSError as exc:
        raise ConfigError(
            f"data_dir {settings.data_dir} cannot keep the ticket secret ({exc.strerror}): "
            "make it writable or set ticket_secret (TYPEWRITER_TICKET_SECRET)"
        ) from None


@app.command(no_args_is_help=False)
def chat(
    question: Annotated[
        str | None,
        typer.Argument(
            metavar="QUESTION",
            help="what to ask, once; '-' (or a pipe) reads it from standard input; "
            "none: a conversation at a prompt",
        ),
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    assistant: Annotated[
        str | None,
        typer.Option(
            "-a",
            "--assistant",
            metavar="NAME",
            help="assistant name (default: the conversation's, else the server's default)",
        ),
    ] = None,
    continue_last: Annotated[
        bool, typer.Option("-c", "--continue", help="go on with your newest conversation")
    ] = False,
    conversation: Annotated[
        str | None, typer.Option("--conversation", metavar="ID", help="go on with this one")
    ] = None,
    list_assistants: Annotated[
        bool, typer.Option("--list-assistants", help="list the server's assistants and exit")
    ] = False,
    options: Annotated[
        str | None,
        typer.Option(
            metavar="JSON",
            help='request options, a JSON object: \'{"temperature": 0.2, "max_tokens": 300}\'',
        ),
    ] = None,
) -> None:
    """Chat from a terminal: the answer types itself as Markdown; Ctrl+C stops it on the server.

    Without a question, a conversation at a prompt (/help lists its commands; Ctrl+D
    leaves). With one, it asks once and prints the answer, plain text when standard
    output is not a terminal. A dropped connection resumes by itself.

    Exit codes: 0 answered (stop or length), 1 the answer failed or the gateway refused
    the request, 2 a wrong command line, 3 the gateway could not be reached, 130 stopped
    with Ctrl+C, 141 the pipe it wrote to was closed. docs/terminal.md has the rest.
    """
    from typewriter.terminal.chat import ChatArgs, parse_options, run

    args = ChatArgs(
        question=question,
        url=url,
        api_key=api_key,
        assistant=assistant,
        continue_last=continue_last,
        conversation=conversation,
        list_assistants=list_assistants,
        options=parse_options(options),
    )
    raise typer.Exit(run(args))


def main() -> None:
    app()
