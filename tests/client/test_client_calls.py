"""Each endpoint's request, built once without I/O for both clients: what is sent, what is
left out, where the URL and the key come from."""

from __future__ import annotations

import json
from datetime import date

import pytest

from typewriter.client.calls import Api, Reply
from typewriter.client.errors import ProtocolError


def body(data: bytes | None) -> object:
    assert data is not None
    return json.loads(data)


def test_url_and_key_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TYPEWRITER_URL", raising=False)
    monkeypatch.delenv("TYPEWRITER_API_KEY", raising=False)
    assert Api().base_url == "http://127.0.0.1:8000" and "authorization" not in Api().headers
    monkeypatch.setenv("TYPEWRITER_URL", "https://chat.example/")
    monkeypatch.setenv("TYPEWRITER_API_KEY", "tw_env")
    assert Api().base_url == "https://chat.example"
    assert Api().headers["authorization"] == "Bearer tw_env"
    assert Api("http://other:1", api_key="tw_given").headers["authorization"] == "Bearer tw_given"
    assert "authorization" not in Api(api_key="").headers  # "" means no key, whatever the env


def test_fields_left_none_are_not_sent_so_the_server_decides() -> None:
    api = Api("http://gw:8000", api_key="")
    ask = api.ask("hi").request
    assert (ask.method, ask.url, body(ask.body)) == (
        "POST",
        "http://gw:8000/v1/chat",
        {"message": "hi"},
    )
    assert ask.headers["content-type"] == "application/json"
    full = api.ask(
        "hi", conversation_id="c1", assistant="echo", images=["data:image/png;base64,AA"]
    )
    assert body(full.request.body) == {
        "message": "hi",
        "conversation_id": "c1",
        "assistant": "echo",
        "images": [{"data_url": "data:image/png;base64,AA"}],
    }
    assert body(api.edit("m1", "new", images=[]).request.body) == {"message": "new", "images": []}
    assert body(api.ticket().request.body) == {}
    assert body(api.regenerate("m1").request.body) == {}


def test_ids_are_one_path_segment_and_query_values_are_text() -> None:
    api = Api("http://gw:8000/", api_key="")
    assert api.conversation("../x?y").request.url == "http://gw:8000/v1/conversations/..%2Fx%3Fy"
    usage = api.usage(from_=date(2026, 12, 1), to=None, assistant="echo").request
    assert usage.params == {"from": "2026-12-01", "assistant": "echo"}
    listing = api.conversations(limit=5, cursor=None, q="sse").request
    assert listing.params == {"limit": "5", "q": "sse"}
    assert api.export("c1").request.params == {"format": "markdown"}


def test_a_reply_that_is_not_the_contract_is_a_protocol_error() -> None:
    call = Api("http://gw:8000").assistants()
    with pytest.raises(ProtocolError):
        call.result(Reply(200, {}, b"<html>"))
    assert call.result(Reply(200, {}, b'{"data": [{"name": "a"}], "default": "a"}')).names == ["a"]
