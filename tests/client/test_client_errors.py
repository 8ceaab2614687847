"""Each error the server answers becomes its typed exception, the same in both clients;
an unreachable server is one ``ConnectionFailed`` that names the URL, never httpx's."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from client_calls import both, call, follow
from conftest import RunningServer, ServerFactory
from helpers import add_user, free_port
from typewriter.client import (
    AnswerInProgress,
    ApiError,
    Client,
    ClientError,
    ConnectionFailed,
    InvalidField,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
)
from typewriter.client.errors import api_error

pytestmark = pytest.mark.integration

SLOW = {"simulate": {"first_token_delay_ms": 60000}}  # writing until cancelled


@both
def test_a_refused_port_is_connection_failed_naming_the_url(kind: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionFailed) as failed:
        call(kind, url, "assistants")
    assert str(failed.value) == f"cannot reach {url}: connection refused"
    assert failed.value.url == url


@both
def test_following_a_refused_port_gives_up_as_connection_failed(kind: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionFailed) as failed:
        follow(kind, url, "st_abc", max_reconnects=1)
    assert str(failed.value).startswith(f"cannot reach {url}/v1/streams/st_abc/events: ")


@both
def test_an_unknown_stream_is_not_found(kind: str, server: RunningServer) -> None:
    with pytest.raises(NotFound) as cancelled:
        call(kind, server.url, "cancel", "st_doesnotexist")
    with pytest.raises(NotFound) as followed:
        follow(kind, server.url, "st_doesnotexist")
    for error in (cancelled.value, followed.value):
        assert (error.status, error.code) == (404, "stream_not_found")
        assert str(error).startswith("404 stream_not_found: ")


@both
def test_an_answer_in_progress_names_its_stream(kind: str, server: RunningServer) -> None:
    with Client(server.url) as client:
        first = client.ask("slow answer", assistant="echo", options=SLOW)
        try:
            with pytest.raises(AnswerInProgress) as refused:
                call(kind, server.url, "ask", "again", conversation_id=first.conversation_id)
        finally:
            client.cancel(first.stream_id)
    assert refused.value.status == 409 and refused.value.code == "answer_in_progress"
    assert refused.value.stream_id == first.stream_id


@both
def test_an_invalid_field_lists_the_fields(kind: str, server: RunningServer) -> None:
    with pytest.raises(InvalidField) as refused:
        call(kind, server.url, "ask", "hi", assistant="nope")
    assert refused.value.status == 422 and refused.value.code == "invalid_field"
    assert [f["field"] for f in refused.value.fields] == ["assistant"]
    assert "nope" in refused.value.message


@both
def test_the_rate_limit_is_rate_limited_with_its_delay(
    kind: str, make_server: ServerFactory
) -> None:
    server = make_server(requests_per_minute=2, limit_loopback=True)
    call(kind, server.url, "assistants")
    call(kind, server.url, "assistants")
    with pytest.raises(RateLimited) as refused:
        call(kind, server.url, "assistants")
    assert refused.value.status == 429 and refused.value.code == "rate_limited"
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 60


@both
def test_a_missing_or_wrong_key_is_unauthorized(
    kind: str, make_server: ServerFactory, tmp_path: Path
) -> None:
    key = add_user(tmp_path, "alice")
    server = make_server(data_dir=tmp_path)
    with pytest.raises(Unauthorized) as missing:
        call(kind, server.url, "assistants", client_options={"api_key": ""})
    with pytest.raises(Unauthorized) as wrong:
        call(kind, server.url, "assistants", client_options={"api_key": "tw_wrong"})
    assert (missing.value.status, missing.value.code) == (401, "missing_api_key")
    assert wrong.value.code == "invalid_api_key"
    allowed = call(kind, server.url, "assistants", client_options={"api_key": key})
    assert "default" in allowed.names


def test_the_key_and_url_come_from_the_environment(
    make_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = add_user(tmp_path, "bob")
    server = make_server(data_dir=tmp_path)
    monkeypatch.setenv("TYPEWRITER_URL", server.url)
    monkeypatch.setenv("TYPEWRITER_API_KEY", key)
    with Client() as client:
        assert client.base_url == server.url
        events = list(client.stream("from the environment", assistant="echo"))
    assert events[-1].name == "end"


def test_a_body_that_is_not_the_contract_keeps_its_status_class() -> None:
    """A proxy's HTML page: the status's class, the page's first 200 characters."""
    page = b"<html>" + b"x" * 500
    error = api_error(503, {"retry-after": "7"}, page)
    assert isinstance(error, ServiceUnavailable) and isinstance(error, ServerError)
    assert error.code == "http_error" and error.message == page[:200].decode()
    assert error.retry_after == 7.0
    other = api_error(418, {}, b"")
    assert type(other) is ApiError and isinstance(other, ClientError)


def test_a_server_that_has_stopped_is_connection_failed(server: RunningServer) -> None:
    """The server was there and stopped: ``ConnectionFailed`` naming it, not httpx's error."""
    url = server.url
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join()
    with pytest.raises(ConnectionFailed) as failed, Client(url) as client:
        client.assistants()
    assert url in str(failed.value)
