"""Hostile and malformed requests against a real server with two users.

Each case in ``CASES`` is one request an attacker or a broken client could send:
another user's ids on every endpoint that takes one, missing, wrong, revoked and
misplaced keys, forged, altered, expired and swapped tickets, oversized bodies
and headers, deeply nested JSON, control and path characters in ids, garbage
``Last-Event-ID``s. Each must get exactly its status, the contract's error
shape for its path family (OpenAI's on ``/v1/chat/completions`` and
``/v1/models``, ``{"error": {"code", "message"}}`` elsewhere), no stack trace,
no secret echoed, and leave ``/healthz`` answering. Another user's object is a
404 identical to a random id's. After the table, the server still answers
normally and alice's data is intact.

The limits (requests per minute, answers at once, message and answer length)
are flooded past on servers of their own with small settings, and expiry and
revocation are waited for in real time.

Users are made with the real CLI (``typewriter users add``) before each server
starts, in a data directory copied from one prepared once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from conftest import RunningServer, ServerFactory, read_events, start_server
from helpers import add_user, data_of, follow, last, text_of, typewriter_cli
from images import png_uri
from typewriter import tickets
from typewriter.config import load_settings

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

MIB = 1 << 20
NESTING = 100_000
TRACE_MARKS = ("Traceback", 'File "')

# --- users, made with the real CLI --------------------------------------------------


def revoke_user(data_dir: Path, name: str) -> None:
    done = typewriter_cli("users", "revoke", name, "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr


def user_id(data_dir: Path, name: str) -> str:
    listed = typewriter_cli("users", "list", "--data-dir", str(data_dir))
    assert listed.returncode == 0, listed.stderr
    for line in listed.stdout.splitlines():
        fields = line.split("\t")
        if fields[0] == name:
            return fields[1]
    raise AssertionError(f"no user {name} in {listed.stdout!r}")


@dataclass(frozen=True)
class Users:
    """A data directory holding alice and bob, and carol whose key was revoked."""

    data_dir: Path
    alice: str
    bob: str
    carol: str
    carol_id: str

    def copy(self, to: Path) -> Path:
        target = to / "data"
        shutil.copytree(self.data_dir, target)
        return target


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Users:
    data_dir = tmp_path_factory.mktemp("users")
    alice, bob, carol = (add_user(data_dir, name) for name in ("alice", "bob", "carol"))
    revoke_user(data_dir, "carol")
    return Users(data_dir, alice, bob, carol, user_id(data_dir, "carol"))


def signed(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


# --- the world the table runs in ------------------------------------------------------

# A fuzzing user is busy: the table must not trip the per-user limits by itself.
WORLD_SETTINGS: dict[str, Any] = {"requests_per_minute": 100_000, "max_streams_per_user": 1_000}


@dataclass
class World:
    server: RunningServer
    data_dir: Path
    values: dict[str, str]

    def fill(self, template: str) -> str:
        return Template(template).substitute(self.values)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def _ticket(events_url: str) -> str:
    return unquote(events_url.split("ticket=", 1)[1])


@pytest.fixture(scope="module")
def world(users: Users, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = users.copy(tmp_path_factory.mktemp("world"))
    server = start_server(
        load_settings(
            port=0, log_level="warning", data_dir=data_dir, broker="memory", **WORLD_SETTINGS
        )
    )
    try:
        with (
            httpx.Client(base_url=server.url, headers=signed(users.alice), timeout=30) as alice,
            httpx.Client(base_url=server.url, headers=signed(users.bob), timeout=30) as bob,
        ):
            # A: alice's answer still generating (slowly); B: one of hers that finished.
            slow = {"simulate": {"tokens_per_second": 1}}
            a = alice.post(
                "/v1/chat", json={"message": "a" * 400, "assistant": "echo", "options": slow}
            ).json()
            b = alice.post(
                "/v1/chat",
                json={
                    "message": "finished",
                    "assistant": "echo",
                    "images": [{"data_url": png_uri()}],
                },
            ).json()
            with alice.stream("GET", b["events_url"]) as response:
                assert response.status_code == 200
                response.read()  # to its end
            asked = alice.get(f"/v1/conversations/{b['conversation_id']}").json()["messages"][0]
            attachment = asked["attachments"][0]["id"]
            mine = bob.post("/v1/chat", json={"message": "bob's", "assistant": "echo"}).json()
            channel = alice.post("/v1/tickets", json={}).json()["events_url"]
        ticket_a, ticket_b = _ticket(a["events_url"]), _ticket(b["events_url"])
        payload, mac = ticket_b.split(".")
        alice_id = _unb64(payload).decode().split("|")[0]
        secret = (data_dir / "ticket-secret").read_text().strip().encode()
        values = {
            "alice_key": users.alice,
            "bob_key": users.bob,
            "carol_key": users.carol,
            "stream_a": a["stream_id"],
            "stream_b": b["stream_id"],
            "conv_a": a["conversation_id"],
            "conv_b": b["conversation_id"],
            "msg_b": b["message_id"],
            "att_b": attachment,
            "bob_stream": mine["stream_id"],
            "ticket_a": ticket_a,
            "ticket_b": ticket_b,
            "ticket_channel": _ticket(channel),
            "ticket_forged": f"{_b64(secrets.token_bytes(40))}.{_b64(secrets.token_bytes(16))}",
            "ticket_payload_flipped": f"{_flip(payload, 5)}.{mac}",
            "ticket_mac_flipped": f"{payload}.{_flip(mac, 0)}",
            "ticket_mac_cut": f"{payload}.{mac[:10]}",
            "ticket_no_dot": payload + mac,
            "ticket_expired": tickets.issue(
                secret, alice_id, tickets.stream_scope(b["stream_id"]), time.time() - 60
            ),
            "ticket_revoked_user": tickets.issue(
                secret, users.carol_id, tickets.CHANNEL, time.time() + 600
            ),
            "random_stream": "st_" + secrets.token_urlsafe(16),
            "random_conv": "conv_" + secrets.token_urlsafe(16),
            "random_msg": "msg_" + secrets.token_urlsafe(16),
            "random_att": "att_" + secrets.token_urlsafe(16),
        }
        yield World(server, data_dir, values)
    finally:
        server.stop()


# --- the table ----------------------------------------------------------------------

Body = bytes | str | Callable[[], Any] | None


@dataclass(frozen=True)
class Case:
    """One hostile request and what must come back.

    ``path``, ``headers`` and a ``str`` body are templates over the world's values
    (``$stream_a``, ``$bob_key``…). ``key`` names whose key signs it (``None``: no
    Authorization header unless ``headers`` has one). ``twin`` maps placeholders to
    random ones: the same request on a random id must answer identically.
    ``raw`` sends the bytes exactly (no client-side normalisation of ``..``).
    """

    name: str
    method: str
    path: str
    status: int
    code: str | None
    key: str | None = "alice"
    headers: dict[str, str] = field(default_factory=dict)
    body: Body = None
    twin: dict[str, str] | None = None
    raw: bool = False
    family: str = ""  # "contract", "openai", or "uvicorn" (the HTTP parser's own 400)

    @property
    def shape(self) -> str:
        if self.family:
            return self.family
        path = self.path.split("?")[0]
        if path == "/v1/chat/completions" or path.startswith("/v1/models"):
            return "openai"
        return "contract"


def big_json() -> bytes:
    return b'{"message": "' + b"x" * MIB + b'"}'


def big_chunked() -> Callable[[], AsyncIterator[bytes]]:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"message": "'
        for _ in range(1100):
            yield b"x" * 1024
        yield b'"}'

    return chunks


def nested_arrays() -> bytes:
    return b"[" * NESTING + b"]" * NESTING


def nested_objects() -> bytes:
    return b'{"a":' * NESTING + b"1" + b"}" * NESTING


def huge_int(prefix: bytes, suffix: bytes) -> Callable[[], bytes]:
    return lambda: prefix + b"1" * 5000 + suffix


COMPLETION = '{"model": "echo", "messages": [{"role": "user", "content": "hi"}]}'
XSS = "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"

# A table reads best as one row per case: ruff's formatter leaves it as written.
# fmt: off
NO_KEY: dict[str, Any] = {"key": None}
CASES: list[Case] = [
    # -- keys: missing, malformed, wrong, revoked, misplaced ---------------------------
    Case("no key, conversations", "GET", "/v1/conversations", 401, "missing_api_key", **NO_KEY),
    Case("no key, chat", "POST", "/v1/chat", 401, "missing_api_key", **NO_KEY,
         body='{"message": "x"}'),
    Case("no key, stream events", "GET", "/v1/streams/$stream_b/events", 401,
         "missing_api_key", **NO_KEY),
    Case("no key, models (OpenAI)", "GET", "/v1/models", 401, "missing_api_key", **NO_KEY),
    Case("no key, completions (OpenAI)", "POST", "/v1/chat/completions", 401,
         "missing_api_key", **NO_KEY, body=COMPLETION),
    Case("empty Bearer", "GET", "/v1/conversations", 401, "invalid_api_key", **NO_KEY,
         headers={"authorization": "Bearer"}),
    Case("Basic scheme with a real key", "GET", "/v1/conversations", 401, "invalid_api_key",
         **NO_KEY, headers={"authorization": "Basic $alice_key"}),
    Case("key without a scheme", "GET", "/v1/conversations", 401, "invalid_api_key", **NO_KEY,
         headers={"authorization": "$alice_key"}),
    Case("wrong key", "GET", "/v1/conversations", 401, "invalid_api_key", **NO_KEY,
         headers={"authorization": "Bearer tw_wrongwrongwrongwrongwrongwrongwrongwrong1"}),
    Case("wrong key, OpenAI path", "POST", "/v1/chat/completions", 401, "invalid_api_key",
         **NO_KEY, headers={"authorization": "Bearer sk-not-a-typewriter-key"},
         body=COMPLETION),
    Case("a key of 10 000 characters", "GET", "/v1/assistants", 401, "invalid_api_key",
         **NO_KEY, headers={"authorization": "Bearer tw_" + "a" * 10_000}),
    Case("revoked key", "GET", "/v1/conversations", 401, "invalid_api_key", key="carol"),
    Case("revoked key, models (OpenAI)", "GET", "/v1/models", 401, "invalid_api_key",
         key="carol"),
    Case("ticket sent as Bearer, stream events", "GET", "/v1/streams/$stream_b/events", 401,
         "invalid_api_key", **NO_KEY, headers={"authorization": "Bearer $ticket_b"}),
    Case("ticket sent as Bearer, conversations", "GET", "/v1/conversations", 401,
         "invalid_api_key", **NO_KEY, headers={"authorization": "Bearer $ticket_b"}),
    Case("key sent as ?ticket=, stream events", "GET",
         "/v1/streams/$stream_b/events?ticket=$alice_key", 401, "invalid_ticket", **NO_KEY),
    Case("key sent as ?ticket=, channel", "GET", "/v1/events?ticket=$alice_key", 401,
         "invalid_ticket", **NO_KEY),
    # -- tickets: forged, altered, expired, swapped, misplaced -------------------------
    Case("forged ticket", "GET", "/v1/streams/$stream_b/events?ticket=$ticket_forged", 401,
         "invalid_ticket", **NO_KEY),
    Case("ticket with a flipped payload character", "GET",
         "/v1/streams/$stream_b/events?ticket=$ticket_payload_flipped", 401, "invalid_ticket",
         **NO_KEY),
    Case("ticket with a flipped MAC character", "GET",
         "/v1/streams/$stream_b/events?ticket=$ticket_mac_flipped", 401, "invalid_ticket",
         **NO_KEY),
    Case("ticket with a truncated MAC", "GET",
         "/v1/streams/$stream_b/events?ticket=$ticket_mac_cut", 401, "invalid_ticket",
         **NO_KEY),
    Case("ticket without its dot", "GET",
         "/v1/streams/$stream_b/events?ticket=$ticket_no_dot", 401, "invalid_ticket", **NO_KEY),
    Case("empty ticket", "GET", "/v1/streams/$stream_b/events?ticket=", 401, "invalid_ticket",
         **NO_KEY),
    Case("ticket of 5 000 characters", "GET",
         "/v1/streams/$stream_b/events?ticket=" + "A" * 5000 + ".AAAA", 401, "invalid_ticket",
         **NO_KEY),
    Case("expired ticket", "GET", "/v1/streams/$stream_b/events?ticket=$ticket_expired", 401,
         "ticket_expired", **NO_KEY),
    Case("genuine ticket of a revoked user", "GET", "/v1/events?ticket=$ticket_revoked_user",
         401, "invalid_ticket", **NO_KEY),
    Case("alice's ticket for A used on her stream B", "GET",
         "/v1/streams/$stream_b/events?ticket=$ticket_a", 404, "stream_not_found", **NO_KEY),
    Case("alice's ticket for A used on bob's stream", "GET",
         "/v1/streams/$bob_stream/events?ticket=$ticket_a", 404, "stream_not_found", **NO_KEY),
    Case("stream ticket used on the channel", "GET", "/v1/events?ticket=$ticket_b", 401,
         "invalid_ticket", **NO_KEY),
    Case("channel ticket used on a stream", "GET",
         "/v1/streams/$stream_b/events?ticket=$ticket_channel", 404, "stream_not_found",
         **NO_KEY),
    Case("ticket on POST cancel", "POST", "/v1/streams/$stream_a/cancel?ticket=$ticket_a", 401,
         "missing_api_key", **NO_KEY),
    Case("ticket on GET conversations", "GET", "/v1/conversations?ticket=$ticket_channel", 401,
         "missing_api_key", **NO_KEY),
    Case("ticket on POST tickets", "POST", "/v1/tickets?ticket=$ticket_channel", 401,
         "missing_api_key", **NO_KEY, body="{}"),
    Case("ticket on GET usage", "GET", "/v1/usage?ticket=$ticket_channel", 401,
         "missing_api_key", **NO_KEY),
    Case("usage with a date that is SQL", "GET", "/v1/usage?from=2026-01-01%27%20OR%201=1--",
         422, "invalid_field"),
    Case("usage over more than a year", "GET", "/v1/usage?from=1900-01-01&to=2026-12-05", 422,
         "invalid_field"),
    Case("bob's key with alice's ticket on her stream", "GET",
         "/v1/streams/$stream_b/events?ticket=$ticket_b", 404, "stream_not_found", key="bob"),
    # -- another user's objects: 404, exactly as a random id ---------------------------
    Case("bob follows alice's running stream", "GET", "/v1/streams/$stream_a/events", 404,
         "stream_not_found", key="bob", twin={"stream_a": "random_stream"}),
    Case("bob replays alice's finished stream", "GET", "/v1/streams/$stream_b/events", 404,
         "stream_not_found", key="bob", headers={"last-event-id": "1"},
         twin={"stream_b": "random_stream"}),
    Case("bob cancels alice's stream", "POST", "/v1/streams/$stream_a/cancel", 404,
         "stream_not_found", key="bob", twin={"stream_a": "random_stream"}),
    Case("bob reads alice's conversation", "GET", "/v1/conversations/$conv_a", 404,
         "conversation_not_found", key="bob", twin={"conv_a": "random_conv"}),
    Case("bob renames alice's conversation", "PATCH", "/v1/conversations/$conv_a", 404,
         "conversation_not_found", key="bob", body='{"title": "pwned"}',
         twin={"conv_a": "random_conv"}),
    Case("bob deletes alice's conversation", "DELETE", "/v1/conversations/$conv_a", 404,
         "conversation_not_found", key="bob", twin={"conv_a": "random_conv"}),
    Case("bob clears alice's messages", "DELETE", "/v1/conversations/$conv_b/messages", 404,
         "conversation_not_found", key="bob", twin={"conv_b": "random_conv"}),
    Case("bob exports alice's conversation", "GET", "/v1/conversations/$conv_b/export", 404,
         "conversation_not_found", key="bob", twin={"conv_b": "random_conv"}),
    Case("bob regenerates alice's answer", "POST", "/v1/messages/$msg_b/regenerate", 404,
         "message_not_found", key="bob", body="{}", twin={"msg_b": "random_msg"}),
    Case("bob edits alice's message", "POST", "/v1/messages/$msg_b/edit", 404,
         "message_not_found", key="bob", body='{"message": "x"}', twin={"msg_b": "random_msg"}),
    Case("an answer edited as a question", "POST", "/v1/messages/$msg_b/edit", 422,
         "invalid_field", body='{"message": "x"}'),
    Case("bob reads a branch of alice's conversation", "GET",
         "/v1/conversations/$conv_b/branch", 404, "conversation_not_found", key="bob",
         twin={"conv_b": "random_conv"}),
    Case("a branch through an id that is SQL", "GET",
         "/v1/conversations/$conv_b/branch?through=x%27%20OR%201=1--", 404, "message_not_found"),
    Case("bob asks after alice's answer", "POST", "/v1/chat", 404, "message_not_found",
         key="bob", body='{"message": "x", "assistant": "echo", "parent_id": "$msg_b"}',
         twin={"msg_b": "random_msg"}),
    Case("bob rates alice's answer", "POST", "/v1/messages/$msg_b/feedback", 404,
         "message_not_found", key="bob", body='{"rating": -1, "comment": "bad"}',
         twin={"msg_b": "random_msg"}),
    Case("bob fetches alice's image", "GET", "/v1/attachments/$att_b", 404,
         "attachment_not_found", key="bob", twin={"att_b": "random_att"}),
    Case("an attachment id that is SQL", "GET", "/v1/attachments/x%27%20OR%201=1--", 404,
         "attachment_not_found"),
    Case("bob asks for a ticket to alice's stream", "POST", "/v1/tickets", 404,
         "stream_not_found", key="bob", body='{"stream_id": "$stream_a"}',
         twin={"stream_a": "random_stream"}),
    Case("bob asks inside alice's conversation", "POST", "/v1/chat", 404,
         "conversation_not_found", key="bob",
         body='{"message": "x", "assistant": "echo", "conversation_id": "$conv_a"}',
         twin={"conv_a": "random_conv"}),
    # -- bodies: too large, too deep, too big a number ---------------------------------
    Case("chat body over max_body_bytes", "POST", "/v1/chat", 413, "payload_too_large",
         body=big_json),
    Case("chat body over max_body_bytes, chunked", "POST", "/v1/chat", 413,
         "payload_too_large", body=big_chunked()),
    Case("completions body over max_body_bytes (OpenAI)", "POST", "/v1/chat/completions",
         413, "payload_too_large", body=big_json),
    Case("completions body over max_body_bytes, chunked (OpenAI)", "POST",
         "/v1/chat/completions", 413, "payload_too_large", body=big_chunked()),
    Case("new conversation body over max_body_bytes", "POST", "/v1/conversations", 413,
         "payload_too_large", body=big_json),
    Case("rename body over max_body_bytes, chunked", "PATCH", "/v1/conversations/$conv_a",
         413, "payload_too_large", body=big_chunked()),
    Case("feedback body over max_body_bytes", "POST", "/v1/messages/$msg_b/feedback", 413,
         "payload_too_large", body=big_json),
    Case("regenerate body over max_body_bytes, chunked", "POST",
         "/v1/messages/$msg_b/regenerate", 413, "payload_too_large", body=big_chunked()),
    Case("edit body over max_body_bytes, chunked", "POST", "/v1/messages/$msg_b/edit", 413,
         "payload_too_large", body=big_chunked()),
    Case("tickets body over max_body_bytes", "POST", "/v1/tickets", 413, "payload_too_large",
         body=big_json),
    Case("a Content-Length of 10^11 with no body", "POST", "/v1/chat", 413,
         "payload_too_large", raw=True,
         headers={"content-type": "application/json", "content-length": "99999999999"}),
    Case("arrays nested 100 000 deep (OpenAI)", "POST", "/v1/chat/completions", 400,
         "invalid_json", body=nested_arrays),
    Case("objects nested 100 000 deep, new conversation", "POST", "/v1/conversations", 400,
         "invalid_json", body=nested_objects),
    Case("arrays nested 100 000 deep, tickets", "POST", "/v1/tickets", 400, "invalid_json",
         body=nested_arrays),
    Case("objects nested 100 000 deep, feedback", "POST", "/v1/messages/$msg_b/feedback", 400,
         "invalid_json", body=nested_objects),
    Case("arrays nested 100 000 deep, rename", "PATCH", "/v1/conversations/$conv_a", 400,
         "invalid_json", body=nested_arrays),
    # Python refuses to parse an integer of more than 4300 digits (a ValueError that is
    # not a JSONDecodeError): bad input all the same, so 400.
    Case("a 5000-digit integer, feedback", "POST", "/v1/messages/$msg_b/feedback", 400,
         "invalid_json", body=huge_int(b'{"rating": ', b"}")),
    Case("a 5000-digit integer, chat", "POST", "/v1/chat", 400, "invalid_json",
         body=huge_int(b'{"message": "x", "options": {"max_tokens": ', b"}}")),
    Case("a 5000-digit integer, completions (OpenAI)", "POST", "/v1/chat/completions", 400,
         "invalid_json",
         body=huge_int(b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}], '
                       b'"seed": ', b"}")),
    Case("NaN temperature (OpenAI)", "POST", "/v1/chat/completions", 400, "invalid_field",
         body='{"model": "echo", "messages": [{"role": "user", "content": "x"}], '
              '"temperature": NaN}'),
    # -- headers -----------------------------------------------------------------------
    # The server refuses beyond max_header_bytes (32 KiB) or 100 lines with 431, and a
    # URL beyond max_url_bytes (8 KiB) with 414, in the contract's shape (or OpenAI's).
    Case("a 64 KiB header", "GET", "/v1/assistants", 431, "headers_too_large",
         headers={"x-padding": "a" * 65536}),
    Case("a 1 MiB header", "GET", "/v1/assistants", 431, "headers_too_large",
         headers={"x-padding": "a" * MIB}),
    Case("10 000 header lines", "GET", "/v1/assistants", 431, "headers_too_large", raw=True,
         headers={f"x-h{i}": "v" for i in range(10_000)}),
    Case("a 64 KiB header (OpenAI)", "GET", "/v1/models", 431, "headers_too_large",
         headers={"x-padding": "a" * 65536}),
    Case("a 100 000-character query string", "GET", "/v1/assistants?q=" + "a" * 100_000, 414,
         "url_too_long", raw=True),
    Case("a 100 000-character query string (OpenAI)", "GET", "/v1/models?q=" + "a" * 100_000,
         414, "url_too_long", raw=True),
    # -- control and path characters in ids --------------------------------------------
    Case("NUL in a stream id", "GET", "/v1/streams/st_%00/events", 404, "stream_not_found"),
    Case("ESC sequence in a stream id", "GET", "/v1/streams/st_%1b%5b31m/events", 404,
         "stream_not_found"),
    Case("CR LF header injection in a stream id", "POST",
         "/v1/streams/st_%0d%0aSet-Cookie:%20pwned=1/cancel", 404, "stream_not_found"),
    Case("../ in a stream id, raw", "GET", "/v1/streams/../streams/$stream_b/events", 404,
         "not_found", raw=True),
    Case("%2F in a stream id", "GET", "/v1/streams/..%2F..%2F$stream_b/events", 404,
         "not_found"),
    Case("NUL in a conversation id", "GET", "/v1/conversations/conv_%00", 404,
         "conversation_not_found"),
    Case("%2e%2e as a conversation id", "GET", "/v1/conversations/%2e%2e", 404,
         "conversation_not_found"),
    Case("../ to escape the conversations, raw", "DELETE",
         "/v1/conversations/../conversations/$conv_a", 404, "not_found", raw=True),
    Case("..%2F to a file", "GET", "/v1/conversations/..%2F..%2Fetc%2Fpasswd", 404,
         "not_found"),
    Case("CR LF in a conversation id to clear", "DELETE",
         "/v1/conversations/a%0d%0aX-Injected:%201/messages", 404, "conversation_not_found"),
    Case("markup in a conversation id to rename", "PATCH", f"/v1/conversations/{XSS}", 404,
         "conversation_not_found", body='{"title": "t"}'),
    Case("NUL in a message id to rate", "POST", "/v1/messages/msg_%00/feedback", 404,
         "message_not_found", body='{"rating": 1}'),
    Case("ESC in a message id to regenerate", "POST", "/v1/messages/%1b%5b2J/regenerate", 404,
         "message_not_found", body="{}"),
    Case("path characters in a model id (OpenAI)", "GET",
         "/v1/models/..%2F..%2Fetc%2Fpasswd", 404, "model_not_found"),
    Case("NUL in a model id (OpenAI)", "GET", "/v1/models/%00", 404, "model_not_found"),
    Case("an 8 000-character stream id", "GET", "/v1/streams/" + "s" * 8_000 + "/events",
         404, "stream_not_found"),
    Case("path characters in a ticket's stream_id", "POST", "/v1/tickets", 404,
         "stream_not_found", body='{"stream_id": "../../$stream_a"}'),
    Case("NUL in a chat conversation_id", "POST", "/v1/chat", 422, "invalid_field",
         body='{"message": "x", "conversation_id": "conv_\\u0000"}'),
    # Raw control characters never reach the app: the HTTP parser refuses the request.
    Case("raw NUL in the request line", "GET", "/v1/conversations/a\x00b", 400, None,
         raw=True, family="uvicorn"),
    Case("raw ESC in the request line", "GET", "/v1/streams/\x1b[31m/events", 400, None,
         raw=True, family="uvicorn"),
    Case("raw CR in the request line", "GET", "/v1/conversations/a\rb", 400, None, raw=True,
         family="uvicorn"),
    # -- Last-Event-ID garbage ---------------------------------------------------------
    Case("Last-Event-ID letters", "GET", "/v1/streams/$stream_b/events", 400,
         "invalid_last_event_id", headers={"last-event-id": "abc"}),
    Case("Last-Event-ID negative", "GET", "/v1/streams/$stream_b/events", 400,
         "invalid_last_event_id", headers={"last-event-id": "-1"}),
    Case("Last-Event-ID of 30 digits", "GET", "/v1/streams/$stream_b/events", 400,
         "invalid_last_event_id", headers={"last-event-id": "9" * 30}),
    Case("Last-Event-ID beyond the stream's end", "GET", "/v1/streams/$stream_b/events", 400,
         "invalid_last_event_id", headers={"last-event-id": "999"}),
    Case("Last-Event-ID in full-width digits", "GET", "/v1/streams/$stream_b/events", 400,
         "invalid_last_event_id", headers={"last-event-id": "\uff11\uff12"}),
    Case("last_event_id query with path characters", "GET",
         "/v1/streams/$stream_b/events?last_event_id=..%2F1", 400, "invalid_last_event_id"),
    Case("channel cursor of garbage", "GET", "/v1/events", 400, "invalid_last_event_id",
         headers={"last-event-id": "../../etc/passwd"}),
    # -- methods and content types -----------------------------------------------------
    Case("TRACE on chat", "TRACE", "/v1/chat", 405, "method_not_allowed"),
    Case("PUT on a conversation", "PUT", "/v1/conversations/$conv_a", 405,
         "method_not_allowed", body='{"title": "t"}'),
    Case("completions as text/plain (OpenAI)", "POST", "/v1/chat/completions", 415,
         "unsupported_media_type", headers={"content-type": "text/plain"}, body=COMPLETION),
]
# fmt: on

SECRET_VALUES = ("alice_key", "bob_key", "carol_key")


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    text: str


async def send_raw(world: World, case: Case) -> Answer:
    """The request's bytes exactly as written: no normalisation of ``..``, no validation."""
    assert case.body is None, "raw cases send headers only"
    port = int(world.server.url.rsplit(":", 1)[1])
    headers = {"host": "127.0.0.1", "connection": "close"}
    headers.update(signed(world.values[f"{case.key}_key"]) if case.key else {})
    headers.update({k: world.fill(v) for k, v in case.headers.items()})
    head = f"{case.method} {world.fill(case.path)} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode("latin-1"))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    raw_headers, _, body = rest.partition(b"\r\n\r\n")
    parsed = httpx.Headers(
        [tuple(line.split(b": ", 1)) for line in raw_headers.split(b"\r\n") if line]
    )
    return Answer(int(status_line.split()[1]), parsed, body.decode("utf-8", "replace"))


async def send(world: World, case: Case, values: dict[str, str] | None = None) -> Answer:
    if case.raw:
        return await send_raw(world, case)
    fill = world.fill if values is None else (lambda t: Template(t).substitute(values))
    headers = signed(world.values[f"{case.key}_key"]) if case.key else {}
    body: Any = case.body
    if isinstance(body, str):
        body = fill(body).encode()
    elif callable(body):
        body = body()
    if body is not None:
        headers["content-type"] = "application/json"
    headers.update({k: fill(v) for k, v in case.headers.items()})
    encoded = {k: v.encode("utf-8") for k, v in headers.items()}
    async with (
        httpx.AsyncClient(base_url=world.server.url, timeout=30) as client,
        client.stream(case.method, fill(case.path), headers=encoded, content=body) as response,
    ):
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            raise AssertionError(f"{case.name}: answered with an event stream")
        await response.aread()
        return Answer(response.status_code, response.headers, response.text)


def assert_answer(world: World, case: Case, answer: Answer) -> None:
    assert answer.status == case.status, (case.name, answer.status, answer.text[:300])
    assert answer.status < 500
    for mark in TRACE_MARKS:
        assert mark not in answer.text, (case.name, answer.text[:500])
    for name in SECRET_VALUES:
        assert world.values[name] not in answer.text, f"{case.name}: the response holds a key"
    assert "set-cookie" not in answer.headers and "x-injected" not in answer.headers
    if case.shape == "uvicorn":  # refused by the HTTP parser before the app sees it
        assert answer.headers["content-type"].startswith("text/plain")
        return
    body = json.loads(answer.text)
    if answer.status < 400:
        return
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str), body
    if case.shape == "openai":
        assert set(error) == {"message", "type", "param", "code"}, body
        assert isinstance(error["type"], str)
    else:
        assert set(error) <= {"code", "message", "fields"}, body
    if case.code is not None:
        assert error["code"] == case.code, (case.name, body)
    if case.code in ("missing_api_key", "invalid_api_key"):
        assert answer.headers["www-authenticate"].startswith("Bearer")
    if answer.status == 429:
        assert answer.headers["retry-after"].isdigit()


def _same_but_for(answer: Answer, twin: Answer, swaps: dict[str, str]) -> None:
    """Another user's object answers exactly as a random id does."""
    assert (answer.status, twin.status) == (404, 404)
    text = answer.text
    for real, random in swaps.items():
        text = text.replace(real, random)
    assert text == twin.text
    ignored = {"date", "content-length"}
    assert {k for k in answer.headers if k not in ignored} == {
        k for k in twin.headers if k not in ignored
    }


async def _healthy(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.server.url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200


def test_every_operation_of_the_api_is_attacked(world: World) -> None:
    """Each ``/v1`` operation the server documents gets hostile cases, so none can join
    the API without them. Ids in a case's path stand for any path segment."""
    assert len({case.name for case in CASES}) == len(CASES), "case names must be distinct"
    document = httpx.get(f"{world.server.url}/openapi.json", timeout=10).json()
    operations = {
        (method.upper(), path)
        for path, methods in document["paths"].items()
        if path.startswith("/v1")
        for method in methods
    }
    attacked = {
        (method, path)
        for case in CASES
        for method, path in operations
        if case.method == method and _segments_match(path, case.path.split("?")[0])
    }
    assert operations - attacked == set(), "operations no hostile case sends a request to"


def _segments_match(template: str, path: str) -> bool:
    """``/v1/streams/{stream_id}/events`` against ``/v1/streams/$stream_b/events``."""
    expected, given = template.split("/"), path.split("/")
    return len(expected) == len(given) and all(
        e == g or e.startswith("{") for e, g in zip(expected, given, strict=True)
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_hostile_request(world: World, case: Case) -> None:
    answer = await send(world, case)
    assert_answer(world, case, answer)
    if case.twin:
        values = {**world.values, **{k: world.values[v] for k, v in case.twin.items()}}
        twin = await send(world, case, values)
        assert_answer(world, case, twin)
        swaps = {world.values[k]: world.values[v] for k, v in case.twin.items()}
        _same_but_for(answer, twin, swaps)
    await _healthy(world)


async def test_bobs_channel_never_carries_alices_events(world: World, users: Users) -> None:
    v = world.values
    async with (
        httpx.AsyncClient(base_url=world.server.url, headers=signed(users.alice)) as alice,
        httpx.AsyncClient(base_url=world.server.url, headers=signed(users.bob)) as bob,
        httpx.AsyncClient(base_url=world.server.url) as anonymous,
    ):
        bobs_channel = (await bob.post("/v1/tickets", json={})).json()["events_url"]
        async with (
            bob.stream("GET", "/v1/events") as by_key,
            anonymous.stream("GET", bobs_channel) as by_ticket,
        ):
            assert by_key.status_code == by_ticket.status_code == 200
            for response in (by_key, by_ticket):
                assert (await read_events(response, limit=1))[0].event == "connected"
            secret = "alice's secret " + secrets.token_hex(8)
            theirs = [
                (await alice.post("/v1/chat", json={"message": secret, "assistant": "echo"}))
                for _ in range(3)
            ]
            assert all(r.status_code == 202 for r in theirs)
            started = await bob.post("/v1/chat", json={"message": "bob's", "assistant": "echo"})
            mine = started.json()["stream_id"]
            for response in (by_key, by_ticket):
                seen = []
                async with asyncio.timeout(30):
                    while not any(e.event == "end" for e in seen):
                        seen.extend(await read_events(response, limit=1))
                ids = {data_of(e)["stream_id"] for e in seen}
                assert ids == {mine}, ids
                assert all(secret not in e.data for e in seen)
        leaked = [r.json()["stream_id"] for r in theirs] + [v["stream_a"], v["stream_b"]]
        for stream in leaked:
            response = await bob.post("/v1/tickets", json={"stream_id": stream})
            assert response.status_code == 404


async def test_the_server_is_healthy_and_alices_data_intact_after_the_table(
    world: World, users: Users
) -> None:
    v = world.values
    async with (
        httpx.AsyncClient(base_url=world.server.url, headers=signed(users.alice)) as alice,
        httpx.AsyncClient(base_url=world.server.url, headers=signed(users.bob)) as bob,
    ):
        assert (await alice.get("/healthz")).status_code == 200
        assert (await alice.get("/readyz")).status_code == 200
        message = "still here \x00\x1b[31m\r\n✓"
        started = await alice.post("/v1/chat", json={"message": message, "assistant": "echo"})
        assert started.status_code == 202, started.text
        assert text_of(await follow(alice, started.json()["events_url"])) == message
        # Nothing bob did reached alice's things.
        conversation = await alice.get(f"/v1/conversations/{v['conv_b']}")
        assert conversation.status_code == 200, conversation.text
        texts = [m["text"] for m in conversation.json()["messages"]]
        assert texts == ["finished", "finished"], texts
        assert (await alice.get(f"/v1/conversations/{v['conv_a']}")).status_code == 200
        replay = await follow(alice, f"/v1/streams/{v['stream_b']}/events")
        assert text_of(replay) == "finished"
        assert last(replay, "end")["finish_reason"] == "stop"
        listed = (await bob.get("/v1/conversations")).json()["data"]
        assert {c["id"] for c in listed}.isdisjoint({v["conv_a"], v["conv_b"]})
        await alice.post(f"/v1/streams/{v['stream_a']}/cancel")


# --- limits, expiry and revocation, on servers of their own ---------------------------


def _limited(
    make_server: ServerFactory, users: Users, tmp_path: Path, **limits: Any
) -> RunningServer:
    return make_server(data_dir=users.copy(tmp_path), **limits)


def _assert_limit_error(response: httpx.Response, status: int, code: str, openai: bool) -> None:
    assert response.status_code == status, response.text
    assert not any(mark in response.text for mark in TRACE_MARKS)
    error = response.json()["error"]
    assert set(response.json()) == {"error"}
    assert error["code"] == code, error
    if openai:
        assert set(error) == {"message", "type", "param", "code"}, error
    if status == 429:
        retry_after = response.headers.get("retry-after", "")
        assert retry_after.isdigit() and 1 <= int(retry_after) <= 60, retry_after


async def test_flood_past_requests_per_minute(
    make_server: ServerFactory, users: Users, tmp_path: Path
) -> None:
    server = _limited(make_server, users, tmp_path, requests_per_minute=5)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=signed(users.alice)) as alice,
        httpx.AsyncClient(base_url=server.url, headers=signed(users.bob)) as bob,
    ):
        for _ in range(5):
            assert (await alice.get("/v1/assistants")).status_code == 200
        _assert_limit_error(await alice.get("/v1/assistants"), 429, "rate_limited", False)
        _assert_limit_error(await alice.get("/v1/models"), 429, "rate_limited", True)
        flooded = await alice.post("/v1/chat", json={"message": "x", "assistant": "echo"})
        _assert_limit_error(flooded, 429, "rate_limited", False)
        assert (await bob.get("/v1/assistants")).status_code == 200  # per user
        assert (await alice.get("/healthz")).status_code == 200


async def test_flood_past_max_streams_per_user(
    make_server: ServerFactory, users: Users, tmp_path: Path
) -> None:
    server = _limited(make_server, users, tmp_path, max_streams_per_user=1)
    slow = {"simulate": {"tokens_per_second": 5}}
    async with (
        httpx.AsyncClient(base_url=server.url, headers=signed(users.alice)) as alice,
        httpx.AsyncClient(base_url=server.url, headers=signed(users.bob)) as bob,
    ):
        first = await alice.post(
            "/v1/chat", json={"message": "x" * 200, "assistant": "echo", "options": slow}
        )
        assert first.status_code == 202, first.text
        again = await alice.post("/v1/chat", json={"message": "y", "assistant": "echo"})
        _assert_limit_error(again, 429, "too_many_streams", False)
        completion = await alice.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "z"}]},
        )
        _assert_limit_error(completion, 429, "too_many_streams", True)
        regenerate = await alice.post(
            f"/v1/messages/{first.json()['message_id']}/regenerate", json={}
        )
        _assert_limit_error(regenerate, 429, "too_many_streams", False)
        theirs = await bob.post("/v1/chat", json={"message": "b", "assistant": "echo"})
        assert theirs.status_code == 202, theirs.text  # per user
        await alice.post(f"/v1/streams/{first.json()['stream_id']}/cancel")
        ended = await follow(alice, first.json()["events_url"])
        assert last(ended, "end")["finish_reason"] == "cancelled"
        after = await alice.post("/v1/chat", json={"message": "ok", "assistant": "echo"})
        assert after.status_code == 202, after.text


async def test_flood_past_max_body_bytes(
    make_server: ServerFactory, users: Users, tmp_path: Path
) -> None:
    server = _limited(make_server, users, tmp_path, max_body_bytes=1024)
    fits = {"message": "x" * 900, "assistant": "echo"}
    over = {"message": "x" * 1100, "assistant": "echo"}

    async def chunked(value: dict[str, Any]) -> AsyncIterator[bytes]:
        encoded = json.dumps(value).encode()
        for start in range(0, len(encoded), 100):
            yield encoded[start : start + 100]

    json_type = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=server.url, headers=signed(users.alice)) as alice:
        _assert_limit_error(
            await alice.post("/v1/chat", json=over), 413, "payload_too_large", False
        )
        streamed = await alice.post("/v1/chat", content=chunked(over), headers=json_type)
        _assert_limit_error(streamed, 413, "payload_too_large", False)
        completion = await alice.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "x" * 1100}]},
        )
        _assert_limit_error(completion, 413, "payload_too_large", True)
        assert (await alice.post("/v1/chat", json=fits)).status_code == 202
        accepted = await alice.post("/v1/chat", content=chunked(fits), headers=json_type)
        assert accepted.status_code == 202, accepted.text


async def test_flood_past_max_message_chars(
    make_server: ServerFactory, users: Users, tmp_path: Path
) -> None:
    server = _limited(make_server, users, tmp_path, max_message_chars=100)
    async with httpx.AsyncClient(base_url=server.url, headers=signed(users.alice)) as alice:
        long = await alice.post("/v1/chat", json={"message": "x" * 101, "assistant": "echo"})
        _assert_limit_error(long, 422, "invalid_field", False)
        assert long.json()["error"]["fields"][0]["field"] == "message"
        completion = await alice.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "x" * 101}]},
        )
        _assert_limit_error(completion, 400, "invalid_field", True)
        assert completion.json()["error"]["param"] == "messages[0].content"
        fits = await alice.post("/v1/chat", json={"message": "x" * 100, "assistant": "echo"})
        assert fits.status_code == 202, fits.text
        assert (await alice.get("/v1/conversations")).status_code == 200


async def test_flood_past_max_answer_chars(
    make_server: ServerFactory, users: Users, tmp_path: Path
) -> None:
    server = _limited(make_server, users, tmp_path, max_answer_chars=50)
    message = "0123456789" * 20
    fast = {"simulate": {"tokens_per_second": 1000}}
    async with httpx.AsyncClient(base_url=server.url, headers=signed(users.alice)) as alice:
        started = await alice.post(
            "/v1/chat", json={"message": message, "assistant": "echo", "options": fast}
        )
        assert started.status_code == 202, started.text
        events = await follow(alice, started.json()["events_url"])
        assert text_of(events) == message[:50]
        assert last(events, "end")["finish_reason"] == "length"
        completion = await alice.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": message}]},
        )
        assert completion.status_code == 200, completion.text
        choice = completion.json()["choices"][0]
        assert choice["message"]["content"] == message[:50]
        assert choice["finish_reason"] == "length"


async def test_tickets_expire_after_ticket_ttl(
    make_server: ServerFactory, users: Users, tmp_path: Path
) -> None:
    server = make_server(data_dir=users.copy(tmp_path), ticket_ttl=1)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=signed(users.alice)) as alice,
        httpx.AsyncClient(base_url=server.url) as anonymous,
    ):
        started = (await alice.post("/v1/chat", json={"message": "m", "assistant": "echo"})).json()
        channel = (await alice.post("/v1/tickets", json={})).json()["events_url"]
        await asyncio.sleep(2.1)  # expiry is in whole seconds
        for url in (started["events_url"], channel):
            expired = await anonymous.get(url)
            _assert_limit_error(expired, 401, "ticket_expired", False)
        fresh = await alice.post("/v1/tickets", json={"stream_id": started["stream_id"]})
        assert text_of(await follow(anonymous, fresh.json()["events_url"])) == "m"


async def test_a_key_revoked_while_the_server_runs_stops_working(
    make_server: ServerFactory, users: Users, tmp_path: Path
) -> None:
    data_dir = users.copy(tmp_path)
    dave = add_user(data_dir, "dave")
    server = make_server(data_dir=data_dir)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=signed(dave)) as client,
        httpx.AsyncClient(base_url=server.url) as anonymous,
    ):
        started = await client.post("/v1/chat", json={"message": "d", "assistant": "echo"})
        assert started.status_code == 202
        ticket_url = started.json()["events_url"]
        revoke_user(data_dir, "dave")
        deadline = time.monotonic() + 15  # keys are cached for 5 s
        while (response := await client.get("/v1/conversations")).status_code == 200:
            assert time.monotonic() < deadline, "the revoked key still works"
            await asyncio.sleep(0.25)
        _assert_limit_error(response, 401, "invalid_api_key", False)
        while (followed := await anonymous.get(ticket_url)).status_code != 401:
            assert time.monotonic() < deadline, "the revoked user's ticket still works"
            await asyncio.sleep(0.25)
        _assert_limit_error(followed, 401, "invalid_ticket", False)
        assert (await anonymous.get("/healthz")).status_code == 200
