"""A conversation from the terminal: ask, watch the answer type, stop it, ask again.

It speaks to the gateway only through the Python client, which resumes a
dropped connection by itself (``Last-Event-ID``): the session sees one unbroken
answer. Ctrl+C while an answer types stops it on the server (an explicit cancel,
so the stored answer ends ``cancelled`` with the text shown) and returns to the
prompt; when the connection is the thing that broke, the cancel cannot be sent
either, and the session says so in one line (the server stops an answer nobody
follows after its ``grace`` seconds anyway).

What goes where: the answer to standard output (see ``render``), everything
else (the banner, notices, errors) to standard error, so a pipe receives the
answer's text only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.text import Text

from typewriter.client import (
    AnswerInProgress,
    ApiError,
    Asked,
    Client,
    ClientError,
    ConnectionFailed,
    ConnectionLost,
    StreamEvent,
)
from typewriter.events import Delta, End, Error, Notice, Reasoning, Start
from typewriter.terminal import commands, show
from typewriter.terminal.commands import Command, Question, Unknown
from typewriter.terminal.connect import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    describe,
    exit_code_of,
    say_error,
)
from typewriter.terminal.prompt import Prompt
from typewriter.terminal.render import AnswerView, view_for

__all__ = ["PROMPT", "ChatSession"]

PROMPT = "> "
RECENT = 10
"""Conversations listed by ``/conversations``."""


@dataclass
class _Answer:
    """How the answer being shown went: the last event's id, its error, how it ended."""

    last_id: int = 0
    error: Error | None = None
    finish: str | None = None
    switches: list[Notice] = field(default_factory=list)  # other upstreams that took over


@dataclass
class ChatSession:
    client: Client
    out: Console
    err: Console
    assistant: str | None = None
    conversation_id: str | None = None
    options: dict[str, Any] | None = None
    last_question_id: str | None = field(default=None, init=False)
    last_answer_id: str | None = field(default=None, init=False)
    _unstopped: str | None = field(default=None, init=False)
    """An answer Ctrl+C stopped here but could not stop on the server (and its last event)."""
    _unstopped_after: int = field(default=0, init=False)

    # -- one answer -----------------------------------------------------------------------

    def ask(self, question: str) -> int:
        """Ask into the current conversation (a new one if none) and show the answer;
        returns the answer's exit code. The client's errors propagate."""
        try:
            asked = self._ask(question)
        except AnswerInProgress as exc:
            if exc.stream_id is None or exc.stream_id != self._unstopped:
                raise
            self._finish_unstopped(exc.stream_id)
            asked = self._ask(question)
        self.last_question_id = asked.question_id or self.last_question_id
        return self._answer(asked)

    def _ask(self, question: str) -> Asked:
        return self.client.ask(
            question,
            conversation_id=self.conversation_id,
            assistant=self.assistant,
            options=self.options,
        )

    def _finish_unstopped(self, stream_id: str) -> None:
        """The answer Ctrl+C could not stop (the network was down) still holds the
        conversation: stop it now, and wait for its end (the next ask would be refused
        until then)."""
        self.client.cancel(stream_id)
        for item in self.client.follow(stream_id, after=self._unstopped_after):
            if isinstance(item.event, End):
                break
        self._unstopped = None
        self._note("(the answer stopped earlier is stopped on the server now)")

    def regenerate(self) -> int:
        target = self.last_answer_id or self.last_question_id
        if target is None:
            self._note("nothing to regenerate yet: ask something first")
            return EXIT_OK
        asked = self.client.regenerate(target, assistant=self.assistant, options=self.options)
        return self._answer(asked)

    def _answer(self, target: Asked | str) -> int:
        if isinstance(target, Asked) and target.conversation_id:
            self.conversation_id = target.conversation_id
        if isinstance(target, Asked) and target.message_id:
            self.last_answer_id = target.message_id
        stream_id = target.stream_id if isinstance(target, Asked) else target
        view = view_for(self.out)
        state = _Answer()
        try:
            try:
                self._feed(self.client.follow(target), view, state)
            except KeyboardInterrupt:
                said = self._stop(stream_id, view, state)
                view.close()
                said()
                return EXIT_INTERRUPTED
            except BrokenPipeError:  # the reader of a pipe left (`| head`): nobody reads on
                with contextlib.suppress(ClientError):
                    self.client.cancel(stream_id)
                raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                view.close()
        for notice in state.switches:  # said once the answer is whole, below it
            self._note(f"(continued by {notice.model} on {notice.to} after {notice.from_} failed)")
        if state.error is not None:
            say_error(self.err, f"the answer failed: {state.error.message} ({state.error.code})")
        if state.finish in ("stop", "length", None):  # None: it had ended, all was delivered
            if state.finish == "length":
                self._note("(cut at the length limit)")
            return EXIT_OK
        if state.finish == "cancelled":
            self._note("(stopped)")
        return EXIT_ERROR

    def _feed(self, events: Iterator[StreamEvent], view: AnswerView, state: _Answer) -> None:
        for item in events:
            state.last_id = item.id
            event = item.event
            if isinstance(event, Delta):
                view.delta(event.text)
            elif isinstance(event, Reasoning):
                view.reasoning(event.text)
            elif isinstance(event, Start):
                self.conversation_id = event.conversation_id
                self.last_answer_id = event.message_id
            elif isinstance(event, Notice) and event.code == "failover":
                state.switches.append(event)
            elif isinstance(event, Error):
                state.error = event
            elif isinstance(event, End):
                state.finish = event.finish_reason
                self.last_answer_id = event.message_id

    def _stop(self, stream_id: str, view: AnswerView, state: _Answer) -> Callable[[], None]:
        """Ctrl+C while the answer types: cancel it on the server, then take what it wrote
        until the cancel reached it, so the screen shows the text stored. Returns how to say
        it, in one line, once the answer is off the live screen."""
        try:
            self.client.cancel(stream_id)
        except ClientError as exc:
            self._unstopped, self._unstopped_after = stream_id, state.last_id
            reason = describe(exc)
            return lambda: say_error(
                self.err,
                f"stopped here, but the server was not told: {reason} "
                "(it stops an answer nobody follows by itself)",
            )
        except KeyboardInterrupt:
            self._unstopped, self._unstopped_after = stream_id, state.last_id
            return lambda: self.err.print("stopped here (the server was not told)", style="yellow")
        with contextlib.suppress(ClientError, KeyboardInterrupt):  # a second Ctrl+C: enough
            self._feed(self.client.follow(stream_id, after=state.last_id), view, state)
        return lambda: self.err.print("stopped", style="yellow", highlight=False)

    # -- the conversation -----------------------------------------------------------------

    def open(self, conversation_id: str) -> None:
        """Go on with a stored conversation: its last exchange is shown, and an answer still
        being written is followed to its end."""
        branch = self.client.branch(conversation_id)
        self.conversation_id = str(branch["id"])
        messages: list[dict[str, Any]] = list(branch.get("messages") or [])
        questions = [m for m in messages if m.get("role") == "user"]
        answers = [m for m in messages if m.get("role") == "assistant"]
        self.last_question_id = str(questions[-1]["id"]) if questions else None
        self.last_answer_id = str(answers[-1]["id"]) if answers else None
        title = branch.get("title") or "untitled"
        self._note(f"conversation {self.conversation_id}: {title} ({len(messages)} messages)")
        running = messages[-1] if messages else None
        for stored in messages[-2:]:
            if stored is running and stored.get("status") == "streaming":
                break
            show.message(self.err, stored)
        if running and running.get("status") == "streaming" and running.get("stream_id"):
            self._note("(its answer is still being written: following it)")
            self._answer(str(running["stream_id"]))

    def interact(self, prompt: Prompt) -> int:
        """The prompt loop; returns the exit code (0 when the user leaves)."""
        try:
            while True:
                line = self._read(prompt)
                if line is None:
                    return EXIT_OK
                try:
                    if self._do(commands.parse(line)):
                        return EXIT_OK
                except (ConnectionFailed, ConnectionLost) as exc:
                    say_error(self.err, describe(exc))
                    if self.conversation_id:
                        self._note(
                            f"conversation {self.conversation_id}: "
                            "`typewriter chat -c` goes on with it"
                        )
                    return exit_code_of(exc)
                except ApiError as exc:
                    say_error(self.err, describe(exc))
                except KeyboardInterrupt:  # while asking, listing, switching: back to the prompt
                    self.err.print("interrupted", style="yellow")
        finally:
            prompt.save()

    def _read(self, prompt: Prompt) -> str | None:
        """One question; a line ending with ``\\`` goes on on the next."""
        lines: list[str] = []
        while True:
            line = prompt.read(PROMPT if not lines else "… ")
            if line is None:  # Ctrl+D or Ctrl+C, even mid-question: leave
                return None
            if not line.endswith("\\"):
                return "\n".join([*lines, line])
            lines.append(line[:-1])

    def _do(self, what: Question | Command | Unknown | None) -> bool:
        """Carry out one line; ``True`` to leave."""
        if what is None:
            return False
        if isinstance(what, Question):
            self.ask(what.text)
            self.err.print()  # a blank line between an answer and the next prompt
        elif isinstance(what, Unknown):
            say_error(self.err, f"no command {what.name}: /help lists them")
        elif what.name == "quit":
            return True
        elif what.name == "help":
            self.err.print(commands.help_text(), markup=False, highlight=False)
        elif what.name == "new":
            self.conversation_id = self.last_question_id = self.last_answer_id = None
            self._note("new conversation: the next question starts it")
        elif what.name == "regenerate":
            self.regenerate()
            self.err.print()
        elif what.name == "assistant":
            self._assistant(what.argument)
        elif what.name == "conversations":
            if what.argument:
                self.open(what.argument)
            else:
                show.conversation_table(self.err, self.client.conversations(limit=RECENT))
        return False

    def _assistant(self, name: str) -> None:
        served = self.client.assistants()
        names = [str(a.get("name")) for a in served.data]
        if name and name in names:
            self.assistant = name
            self._note(f"assistant: {name}")
            return
        if name:
            say_error(self.err, f"no assistant {name!r} here")
        current = (
            self.assistant or f"the conversation's, else the server's default ({served.default})"
        )
        self._note(f"assistant: {current}; served here: {', '.join(names)}")

    def banner(self) -> None:
        who = self.assistant or "the server's default"
        self._note(
            f"typewriter chat on {self.client.base_url}, assistant: {who}. "
            "/help lists the commands; Ctrl+C stops an answer, Ctrl+D leaves."
        )

    def _note(self, text: str) -> None:
        self.err.print(Text(text, style="dim"))
