"""The browser module (``/typewriter.js``) imported by a page on another origin, in Chromium.

The test page is served by a second HTTP server on another port, so every request the module
makes is cross-origin and needs the gateway's ``cors_origins``. What is checked is what such a
page's reader would see (the text the module hands over, how the answer ended) against what
the gateway stored. Connections are cut for real by a TCP proxy in front of the gateway, and
tickets expire for real (a server with a one-second ``ticket_ttl``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from conftest import RunningServer, ServerFactory
from helpers import add_user
from tcp_proxy import TcpProxy
from web.chat_page import (
    ask,
    conversation_id,
    open_context,
    shown,
    sign_in,
    simulate,
    wait_for_end,
    wait_for_length,
    watch,
    words,
)

pytestmark = pytest.mark.integration

PAGE = b"<!doctype html><meta charset='utf-8'><title>another origin</title><p>a page</p>"
DOC = Path(__file__).parents[2] / "docs" / "browser.md"


class PageServer(ThreadingHTTPServer):
    """Serves one HTML page, the same at every path."""

    page = PAGE

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _PageHandler(BaseHTTPRequestHandler):
    server: PageServer

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(self.server.page)))
        self.end_headers()
        self.wfile.write(self.server.page)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    """A plain page on a port of its own: another origin than any gateway's."""
    server = PageServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def other_origin(page_server: PageServer) -> str:
    return page_server.origin


@pytest.fixture
def tab(browser: Browser) -> Iterator[BrowserContext]:
    context = open_context(browser)
    try:
        yield context
    finally:
        context.close()


# Ask, then follow with the module; everything the module hands over lands in window.got.
ASK_AND_FOLLOW = """async ([module, key, message, options]) => {
  const { Typewriter } = await import(module);
  const tw = new Typewriter({ apiKey: key });
  const reply = await tw.ask(message, { assistant: "echo", options });
  const got = (window.got = { text: "", ids: [], states: [], end: null, reply });
  window.stream = tw.follow(reply, {
    onDelta: (text) => { got.text += text; },
    onEvent: (name, data, id) => { got.ids.push(id); },
    onConnection: (state) => { got.states.push(state); },
    onEnd: (data) => { got.end = data; },
  });
  return reply;
}"""


def open_page(tab: BrowserContext, origin: str) -> tuple[Page, list[str]]:
    page = tab.new_page()
    errors = watch(page)
    page.goto(origin + "/")
    return page, errors


def follow(page: Page, gateway: str, message: str, key: str | None = None, **options: Any) -> Any:
    return page.evaluate(ASK_AND_FOLLOW, [f"{gateway}/typewriter.js", key, message, options])


def wait_for_text(page: Page, length: int) -> None:
    page.wait_for_function("(n) => window.got.text.length >= n", arg=length)


def got(page: Page) -> dict[str, Any]:
    """What the module handed over once the answer ended, or once the module gave up."""
    page.wait_for_function("() => window.got.end !== null || window.got.states.includes('closed')")
    result: dict[str, Any] = page.evaluate("() => window.got")
    return result


def stored(gateway: RunningServer, conversation: str, key: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(f"{gateway.url}/v1/conversations/{conversation}", headers=headers)
    assert response.status_code == 200, response.text
    messages = [m for m in response.json()["messages"] if m["role"] == "assistant"]
    assert len(messages) == 1
    answer: dict[str, Any] = messages[0]
    return answer


def consecutive(ids: list[int]) -> bool:
    return ids == list(range(1, len(ids) + 1))


def test_a_page_on_another_origin_asks_and_follows(
    make_server: ServerFactory, other_origin: str, tab: BrowserContext
) -> None:
    gateway = make_server(cors_origins=[other_origin])
    page, errors = open_page(tab, other_origin)
    message = "Hello from elsewhere\nline two\r\n\u2028 emoji \U0001f600 \u4e2d\u6587 " + words(30)
    reply = follow(page, gateway.url, message)
    result = got(page)
    assert result["text"] == message
    assert result["end"]["finish_reason"] == "stop"
    assert consecutive(result["ids"]), result["ids"]
    answer = stored(gateway, reply["conversation_id"])
    assert (answer["text"], answer["finish_reason"]) == (message, "stop")
    assert not errors, errors


def test_stop_from_the_module_ends_the_answer_cancelled(
    make_server: ServerFactory, other_origin: str, tab: BrowserContext
) -> None:
    gateway = make_server(cors_origins=[other_origin])
    page, errors = open_page(tab, other_origin)
    message = words(200)
    reply = follow(page, gateway.url, message, simulate={"tokens_per_second": 30})
    wait_for_text(page, 20)
    assert page.evaluate("() => window.stream.stop()")["stream_id"] == reply["stream_id"]
    result = got(page)
    assert result["end"]["finish_reason"] == "cancelled"
    assert 20 <= len(result["text"]) < len(message)
    assert message.startswith(result["text"])
    answer = stored(gateway, reply["conversation_id"])
    assert (answer["text"], answer["finish_reason"]) == (result["text"], "cancelled")
    assert not errors, errors


@pytest.fixture
def proxied(make_server: ServerFactory) -> Iterator[tuple[ServerFactory, list[TcpProxy]]]:
    """Gateways reached through a TCP proxy that a test can cut."""
    proxies: list[TcpProxy] = []
    yield make_server, proxies
    for proxy in proxies:
        proxy.close()


def through_proxy(server: RunningServer, proxies: list[TcpProxy]) -> tuple[TcpProxy, str]:
    host, port = server.url.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    proxies.append(proxy)
    return proxy, f"http://{proxy.address}"


def cut_for(proxy: TcpProxy, seconds: float) -> None:
    proxy.cut()
    time.sleep(seconds)  # the network is down this long: what is waited for is the outage
    proxy.restore()


def test_the_module_resumes_exactly_after_the_connection_is_cut(
    proxied: tuple[ServerFactory, list[TcpProxy]], other_origin: str, tab: BrowserContext
) -> None:
    make_server, proxies = proxied
    gateway = make_server(cors_origins=[other_origin], retry_ms=200)
    proxy, url = through_proxy(gateway, proxies)
    page, _ = open_page(tab, other_origin)  # a cut network logs errors in the console
    message = words(80)
    reply = follow(page, url, message, simulate={"tokens_per_second": 50})
    wait_for_text(page, 40)
    cut_for(proxy, 0.5)
    result = got(page)
    assert len(page.evaluate("() => window.got.text")) == len(message)
    assert result["text"] == message
    assert result["end"]["finish_reason"] == "stop"
    assert consecutive(result["ids"]), result["ids"]
    assert "reconnecting" in result["states"] and "closed" not in result["states"]
    answer = stored(gateway, reply["conversation_id"])
    assert (answer["text"], answer["finish_reason"]) == (message, "stop")


def test_an_expired_ticket_is_renewed_and_the_answer_continues_exactly(
    proxied: tuple[ServerFactory, list[TcpProxy]],
    other_origin: str,
    tab: BrowserContext,
    tmp_path: Path,
) -> None:
    make_server, proxies = proxied
    key = add_user(tmp_path, "reader")
    gateway = make_server(
        data_dir=tmp_path, cors_origins=[other_origin], ticket_ttl=1, retry_ms=200
    )
    proxy, url = through_proxy(gateway, proxies)
    page, _ = open_page(tab, other_origin)
    message = words(100)
    reply = follow(page, url, message, key=key, simulate={"tokens_per_second": 30})
    assert "ticket=" in reply["events_url"]
    asked = time.monotonic()
    wait_for_text(page, 20)
    time.sleep(max(0.0, asked + 2.2 - time.monotonic()))  # the ticket's whole second is over
    expired = httpx.get(url + reply["events_url"])
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "ticket_expired"
    before = len(page.evaluate("() => window.got.text"))
    assert before < len(message), "the answer ended before the ticket expired"
    cut_for(proxy, 0.3)
    result = got(page)
    assert "closed" not in result["states"], result["states"]
    assert result["text"] == message
    assert result["end"]["finish_reason"] == "stop"
    assert consecutive(result["ids"]), result["ids"]
    renewed = page.evaluate("() => window.stream.url")
    assert "ticket=" in renewed and renewed != reply["events_url"]
    answer = stored(gateway, reply["conversation_id"], key)
    assert (answer["text"], answer["finish_reason"]) == (message, "stop")
    # A stream known only by its id is followed with a ticket the module asks for.
    replayed = page.evaluate(REPLAY, [f"{url}/typewriter.js", key, reply["stream_id"]])
    assert replayed == message


REPLAY = """async ([module, key, streamId]) => {
  const { Typewriter } = await import(module);
  let text = "";
  const stream = new Typewriter({ apiKey: key }).follow(
    { stream_id: streamId }, { onDelta: (piece) => { text += piece; } });
  await stream.finished;
  return text;
}"""


CHANNEL = """async ([module, key]) => {
  const { Typewriter } = await import(module);
  const tw = new Typewriter({ apiKey: key });
  const got = (window.got = { text: {}, ends: [], states: [], connected: 0 });
  window.channel = tw.channel({
    onConnected: () => { got.connected += 1; },
    onEvent: (name, data) => {
      if (name === "delta") got.text[data.stream_id] = (got.text[data.stream_id] || "") + data.text;
      if (name === "end") got.ends.push(data.stream_id);
    },
    onConnection: (state) => { got.states.push(state); },
  });
  window.tw = tw;
}"""


def test_the_channel_renews_its_expired_ticket(
    proxied: tuple[ServerFactory, list[TcpProxy]],
    other_origin: str,
    tab: BrowserContext,
    tmp_path: Path,
) -> None:
    make_server, proxies = proxied
    key = add_user(tmp_path, "reader")
    gateway = make_server(
        data_dir=tmp_path, cors_origins=[other_origin], ticket_ttl=1, retry_ms=200
    )
    proxy, url = through_proxy(gateway, proxies)
    page, _ = open_page(tab, other_origin)
    page.evaluate(CHANNEL, [f"{url}/typewriter.js", key])
    page.wait_for_function("() => window.got.connected === 1")
    time.sleep(2.2)  # the channel's ticket is over
    cut_for(proxy, 0.3)
    page.wait_for_function(
        "() => window.got.connected === 2 || window.got.states.includes('closed')"
    )
    assert "closed" not in page.evaluate("() => window.got.states")
    reply = page.evaluate("() => window.tw.ask('after the renewal', { assistant: 'echo' })")
    page.wait_for_function("(id) => window.got.ends.includes(id)", arg=reply["stream_id"])
    assert page.evaluate("() => window.got.text")[reply["stream_id"]] == "after the renewal"


def test_the_module_is_refused_to_an_origin_not_allowed(
    make_server: ServerFactory, other_origin: str, tab: BrowserContext
) -> None:
    gateway = make_server(cors_origins=["http://127.0.0.1:1"])
    page, _ = open_page(tab, other_origin)
    outcome = page.evaluate(
        """async (module) => {
          try { await import(module); return "imported"; }
          catch (error) { return `refused: ${error}`; }
        }""",
        f"{gateway.url}/typewriter.js",
    )
    assert outcome.startswith("refused:"), outcome
    # The same file is there: only the origin is refused.
    served = httpx.get(f"{gateway.url}/typewriter.js", headers={"origin": other_origin})
    assert served.status_code == 200
    assert "access-control-allow-origin" not in served.headers


def test_the_documented_example_works_as_written(
    make_server: ServerFactory, page_server: PageServer, tab: BrowserContext
) -> None:
    """docs/browser.md's first example, on another origin, with only the gateway's URL (and,
    auth being off, no key) put in."""
    gateway = make_server(cors_origins=[page_server.origin])
    example = re.search(r"```html\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert example, "docs/browser.md has no HTML example"
    html = example.group(1).replace("https://chat.example", gateway.url)
    html = html.replace('"tw_…"', "null").replace("What is SSE?", "tell me")
    page_server.page = html.encode()
    page = tab.new_page()
    errors = watch(page)
    with page.expect_console_message(lambda message: message.text == "ended: stop"):
        page.goto(page_server.origin + "/")
    text = page.locator("#answer").text_content()
    assert text and len(text) > 50
    conversations = httpx.get(f"{gateway.url}/v1/conversations").json()["data"]
    assert len(conversations) == 1
    assert stored(gateway, conversations[0]["id"])["text"] == text
    assert not errors, errors


def test_the_chat_page_renews_an_expired_ticket_too(
    proxied: tuple[ServerFactory, list[TcpProxy]], tab: BrowserContext, tmp_path: Path
) -> None:
    """The page streams with the same module: after its ticket expired, a cut connection
    still ends in the whole answer on screen, with no notice left."""
    make_server, proxies = proxied
    key = add_user(tmp_path, "reader")
    gateway = make_server(data_dir=tmp_path, ticket_ttl=1, retry_ms=200)
    proxy, url = through_proxy(gateway, proxies)
    page = tab.new_page()
    page.goto(url + "/")
    sign_in(page, key)
    simulate(page, tokens_per_second=30)
    message = words(100)
    ask(page, message)
    asked = time.monotonic()
    wait_for_length(page, 20)
    time.sleep(max(0.0, asked + 2.2 - time.monotonic()))  # the ticket's whole second is over
    assert len(shown(page)) < len(message), "the answer ended before the ticket expired"
    cut_for(proxy, 0.3)
    wait_for_end(page)
    assert shown(page) == message
    expect(page.locator("#notice")).to_be_hidden()
    answer = stored(gateway, conversation_id(page), key)
    assert (answer["text"], answer["finish_reason"]) == (message, "stop")
