"""``typewriter chat QUESTION``: print one answer as it types; Ctrl+C stops generating."""

from __future__ import annotations

from typewriter.client.errors import ClientError
from typewriter.client.sync import Client
from typewriter.events import Delta, End, Error

__all__ = ["ask_and_print"]


def ask_and_print(
    url: str, question: str, assistant: str | None = None, api_key: str | None = None
) -> int:
    """Print the answer as it types; exit code 0 when it ended ``stop`` or ``length``.

    With no ``assistant`` the request names none and the server's default answers:
    the client cannot know which assistants an operator serves. Ctrl+C cancels the
    answer on the server (a separate request, so it also works when the connection
    is the thing that broke) and returns 130.
    """
    from rich.console import Console

    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    with Client(url, api_key=api_key) as client:
        try:
            started = client.ask(question, assistant=assistant)
        except ClientError as exc:
            err.print(f"typewriter: {exc}", style="red", markup=False, soft_wrap=True)
            return 1
        try:
            for item in client.follow(started):
                event = item.event
                if isinstance(event, Delta):
                    console.print(event.text, end="", soft_wrap=True, markup=False)
                elif isinstance(event, Error):
                    err.print(
                        f"\nerror: {event.message}", style="red", markup=False, soft_wrap=True
                    )
                elif isinstance(event, End):
                    console.print()
                    return 0 if event.finish_reason in ("stop", "length") else 1
        except KeyboardInterrupt:
            try:
                client.cancel(started.stream_id)
            except ClientError as exc:
                err.print(
                    f"\ntypewriter: could not stop the answer: {exc}", markup=False, soft_wrap=True
                )
            err.print("\n[yellow]stopped[/yellow]")
            return 130
        except ClientError as exc:
            err.print(f"\ntypewriter: {exc}", style="red", markup=False, soft_wrap=True)
            return 1
    return 0
