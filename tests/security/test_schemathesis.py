"""Schemathesis against typewriter's own OpenAPI schema, on a real server.

Every operation of the schema gets generated requests (schemathesis's examples,
coverage and fuzzing phases: valid and invalid ones), sent to a live server.
Each response must be no 5xx, match the schema's response body for its status
(``response_schema_conformance``), carry no stack trace, and, when it is an
error, be in the contract's shape for its path family. Whether every status
that comes back is documented (``status_code_conformance``) is collected over
the whole run and asserted once at the end, so one undocumented 404 does not
stop an operation's run before it reaches a 5xx.

Twice: with auth on (alice and bob made with the real CLI; every request signed
with alice's key) and with auth off (the one local user).

Event streams: ``GET /v1/events`` never ends. Schemathesis reads an event stream
until it ends, ``max-stream-events`` events have arrived, or the request
timeout passes; with ``max-stream-events = 1`` it stops after the channel's
``connected`` event. The server's timeouts are short too, so a generated
``stall_after_tokens`` cannot hold a non-streamed ``/v1/chat/completions`` open.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from conftest import RunningServer, start_server
from helpers import add_user
from typewriter.api.app import create_app
from typewriter.config import load_settings

pytestmark = [pytest.mark.integration]

MAX_EXAMPLES = 25
REQUEST_TIMEOUT = 5.0
CHECKS = [not_a_server_error, response_schema_conformance]

# Requests sent, per run and operation: printed at the end, so a run says what it covered.
SENT: Counter[tuple[str, str]] = Counter()
UNDOCUMENTED: dict[tuple[str, int], str] = {}

# Generous limits (a fuzzer is one very busy user) and short timeouts (no generated
# request may keep an answer, or a non-streamed completion waiting for it, open long).
SERVER_SETTINGS: dict[str, Any] = {
    "requests_per_minute": 1_000_000,
    "max_streams_per_user": 10_000,
    "first_token_timeout": 2.0,
    "idle_timeout": 2.0,
    "total_timeout": 4.0,
    "grace": 1.0,
    "heartbeat": 1.0,
    "shutdown_timeout": 2.0,
}


def _serve(data_dir: Path) -> RunningServer:
    return start_server(
        load_settings(
            port=0, log_level="warning", data_dir=data_dir, broker="memory", **SERVER_SETTINGS
        )
    )


def _schema() -> schemathesis.BaseSchema:
    """The schema the app serves as ``/openapi.json``, built at import time because
    schemathesis makes one test per operation when the module is collected (its
    ``from_fixture`` loader, which could load it from the live server, fails under
    pytest 9: it sets ``node._nodeid``). ``test_the_live_schema_is_the_one_tested``
    checks that the live server serves exactly this document.

    Under pytest 9 the per-operation items all report the node id of the test
    function (the operation shows in each failure's title, not in the node id)."""
    app = create_app(load_settings(database_url="none", log_level="warning"))
    config = schemathesis.Config.from_dict(
        {
            "seed": 20240601,
            "request-timeout": REQUEST_TIMEOUT,
            "max-stream-events": 1,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        }
    )
    return schemathesis.openapi.from_dict(app.openapi(), config=config)


schema = _schema()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    data_dir = tmp_path_factory.mktemp("schemathesis-auth")
    alice = add_user(data_dir, "alice")
    add_user(data_dir, "bob")
    server = _serve(data_dir)
    yield server, alice
    server.stop()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = _serve(tmp_path_factory.mktemp("schemathesis-open"))
    yield server
    server.stop()


_settings = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _call(
    case: schemathesis.Case,
    run: str,
    server: RunningServer,
    headers: dict[str, str],
    session: requests.Session,
) -> None:
    SENT[(run, case.operation.label)] += 1
    response = case.call(base_url=server.url, headers=headers, session=session)
    assert "Traceback" not in response.text and 'File "' not in response.text
    for secret in headers.values():
        assert secret.removeprefix("Bearer ") not in response.text, "the key came back"
    try:
        case.validate_response(response, checks=[status_code_conformance], headers=headers)
    except FailureGroup:
        key = (case.operation.label, response.status_code)
        if key not in UNDOCUMENTED:
            UNDOCUMENTED[key] = f"{case.as_curl_command(headers)}\n  -> {response.text[:200]}"
    case.validate_response(response, checks=CHECKS, headers=headers)
    if response.status_code >= 400 and case.operation.path != "/readyz":
        _assert_error_shape(case.operation.path, response.json())


def _assert_error_shape(path: str, body: Any) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str), body
    if path == "/v1/chat/completions" or path.startswith("/v1/models"):
        assert set(error) == {"message", "type", "param", "code"}, body
    else:
        assert set(error) <= {"code", "message", "fields"}, body


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


def _dangling_refs(document: dict[str, Any]) -> list[str]:
    """``$ref``s that point nowhere in the document (``#`` is the document's root)."""
    found: list[str] = []

    def resolves(ref: str) -> bool:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not resolves(ref):
                found.append(f"{where}: {ref}")
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    walk(document, "#")
    return found


def test_every_schema_reference_resolves() -> None:
    """A dangling ``$ref`` in a request body makes schemathesis send no body at all for
    that operation (silently), so its fuzzing would test nothing but the 415."""
    dangling = _dangling_refs(schema.raw_schema)
    assert not dangling, "\n".join(dangling)


def test_the_live_schema_is_the_one_tested(
    keyed_server: tuple[RunningServer, str], open_server: RunningServer
) -> None:
    for url in (keyed_server[0].url, open_server.url):
        served = requests.get(f"{url}/openapi.json", timeout=10)
        assert served.status_code == 200
        assert served.json() == schema.raw_schema


@schema.parametrize()
@_settings
def test_schema_with_auth(
    case: schemathesis.Case,
    keyed_server: tuple[RunningServer, str],
    session: requests.Session,
) -> None:
    server, key = keyed_server
    _call(case, "auth on", server, {"Authorization": f"Bearer {key}"}, session)


@schema.parametrize()
@_settings
def test_schema_without_auth(
    case: schemathesis.Case, open_server: RunningServer, session: requests.Session
) -> None:
    _call(case, "auth off", open_server, {}, session)


def test_report_how_many_cases_ran(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print()
        for run in ("auth on", "auth off"):
            cases = {op: n for (r, op), n in SENT.items() if r == run}
            print(f"schemathesis ({run}): {sum(cases.values())} cases on {len(cases)} operations")
            for operation, count in sorted(cases.items()):
                print(f"  {count:4d}  {operation}")
    operations = {op.ok().label for op in schema.get_all_operations()}
    for run in ("auth on", "auth off"):
        assert {op for (r, op) in SENT if r == run} == operations, run


def test_every_status_is_documented() -> None:
    """``status_code_conformance`` over both runs: every status that came back is one
    the schema documents for its operation (each is listed once, with a request)."""
    assert SENT, "the schemathesis runs above did not run"
    found = "\n".join(
        f"{op} -> {status}: {ex}" for (op, status), ex in sorted(UNDOCUMENTED.items())
    )
    assert not UNDOCUMENTED, found
