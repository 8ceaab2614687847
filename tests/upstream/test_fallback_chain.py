"""Fallback chains: an assistant's model first, then each fallback model on its own upstreams.

Real scripted upstream processes behind a real gateway: what the listener gets, and which
upstream received which model name (its request log), are both checked. A chain is
configured as the docs show it: ``model``/``upstreams``, then ``fallbacks``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import RunningServer, ServerFactory
from helpers import data_of, last, text_of
from typewriter.assistants import build_catalog
from typewriter.config import load_settings
from typewriter.errors import ConfigError
from upstream.control import Upstream
from upstream.fixtures import answer

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HELLO = "Hello from the test upstream."
RETRY = {"deadline": 5, "backoff_initial": 0.05, "backoff_max": 0.2}


def upstream_config(name: str, up: Upstream | str, models: list[str]) -> dict[str, Any]:
    base_url = up if isinstance(up, str) else up.base_url
    return {"name": name, "base_url": base_url, "models": models, "headers_timeout": 5}


def chain_server(
    make_server: ServerFactory,
    configs: list[dict[str, Any]],
    /,
    retry: dict[str, float] = RETRY,
    **assistant: Any,
) -> RunningServer:
    """A gateway with upstreams ``configs`` and one assistant ``up``: ``assistant`` (its
    model, upstreams, fallbacks)."""
    return make_server(upstreams=configs, assistants=[{"name": "up", **assistant}], retry=retry)


def serving(up: Upstream, model: str) -> Upstream:
    """``up`` answers ``model`` only: any other model name gets a 404 (and no answer)."""
    up.configure(models=[model], strict_models=True)
    return up


async def test_a_refused_local_upstream_falls_back_to_the_hosted_model(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    gone = make_upstream()
    local = gone.base_url
    gone.stop()  # its port now refuses connections, as a local server that is not running
    hosted = serving(make_upstream(), "gpt-hosted")
    server = chain_server(
        make_server,
        [
            upstream_config("local", local, ["llama-local"]),
            upstream_config("hosted", hosted, ["gpt-hosted"]),
        ],
        model="llama-local",
        upstreams=["local"],
        fallbacks=[{"model": "gpt-hosted", "upstreams": ["hosted"]}],
    )
    events = await answer(server)
    assert text_of(events) == HELLO
    assert last(events, "end")["finish_reason"] == "stop"
    (request,) = hosted.requests()
    assert request["model"] == "gpt-hosted" and request["status"] == 200


async def test_a_5xx_goes_through_the_first_links_upstreams_then_down_the_chain(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first_a, first_b = serving(make_upstream(), "m-first"), serving(make_upstream(), "m-first")
    second = serving(make_upstream(), "m-second")
    first_a.script({"status": 503})
    first_b.script({"status": 500})
    server = chain_server(
        make_server,
        [
            upstream_config("a", first_a, ["m-first"]),
            upstream_config("b", first_b, ["m-first"]),
            upstream_config("c", second, ["m-second"]),
        ],
        model="m-first",
        upstreams=["a", "b"],
        fallbacks=[{"model": "m-second"}],  # no upstreams named: every one serving it
    )
    events = await answer(server)
    assert text_of(events) == HELLO
    (a,), (b,), (c,) = first_a.requests(), first_b.requests(), second.requests()
    assert [r["model"] for r in (a, b, c)] == ["m-first", "m-first", "m-second"]
    assert [r["status"] for r in (a, b, c)] == [503, 500, 200]
    assert a["started"] <= b["started"] <= c["started"]


async def test_a_chain_where_every_link_fails_ends_unavailable(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script(*[{"status": 503}] * 100)
    second.script(*[{"status": 502}] * 100)
    server = chain_server(
        make_server,
        [upstream_config("a", first, []), upstream_config("b", second, [])],
        retry={**RETRY, "deadline": 1},
        model="m1",
        upstreams=["a"],
        fallbacks=[{"model": "m2", "upstreams": ["b"]}],
    )
    events = await answer(server)
    assert [e.event for e in events] == ["start", "error", "end"]
    assert data_of(events[1])["code"] == "upstream_unavailable"
    assert {r["model"] for r in first.requests()} == {"m1"}
    assert {r["model"] for r in second.requests()} == {"m2"}


CHAIN_TOML = """
[[upstreams]]
name = "local"
base_url = "http://127.0.0.1:9/v1"
models = ["m"]

[[upstreams]]
name = "hosted"
base_url = "http://127.0.0.1:10/v1"
models = ["gpt"]

[[assistants]]
name = "chat"
model = "m"
upstreams = ["local"]
"""


@pytest.mark.parametrize(
    ("fallbacks", "message"),
    [
        (
            '[{model = "gpt", upstreams = ["ghost"]}]',
            r"assistant 'chat' fallbacks\[0\] \('gpt'\) names unknown upstream\(s\) \['ghost'\]",
        ),
        (
            '[{model = "gpt", upstreams = ["local"]}]',
            r"fallbacks\[0\] \('gpt'\): upstream\(s\) \['local'\] do not serve model 'gpt'",
        ),
        ('[{model = "nothere"}]', r"fallbacks\[0\] \('nothere'\): no upstream serves model"),
    ],
)
def test_a_wrong_fallback_stops_start_up_by_name(
    tmp_path: Path, fallbacks: str, message: str
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(CHAIN_TOML + f"fallbacks = {fallbacks}\n")
    with pytest.raises(ConfigError, match=message):
        build_catalog(load_settings(path))


def test_a_first_link_upstream_not_serving_its_model_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(CHAIN_TOML.replace('upstreams = ["local"]', 'upstreams = ["hosted"]'))
    with pytest.raises(ConfigError, match=r"\['hosted'\] do not serve model 'm'"):
        build_catalog(load_settings(path))


def test_a_chain_from_toml_keeps_the_first_model_as_the_assistants(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(CHAIN_TOML + 'fallbacks = [{model = "gpt", upstreams = ["hosted"]}]\n')
    chat = build_catalog(load_settings(path)).assistants["chat"]
    assert chat.model == "m" and chat.public()["model"] == "m"
