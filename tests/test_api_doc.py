"""docs/api.md is the API's reference: it must name every route and every error code.

The schema and the error classes are read from the code, so a route or an error
added without its documentation fails here. The convention the doc follows: each
endpoint has a Markdown heading holding `` `METHOD /path` `` with the path exactly as
``/openapi.json`` writes it, and each error code is the first cell of a row of the
table under "## 8. Errors".
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from typewriter import errors
from typewriter.api.app import create_app
from typewriter.config import load_settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
HEADING = re.compile(r"^#{2,4} `([A-Z]+) (/\S*)`$", re.MULTILINE)
ERROR_ROW = re.compile(r"^\| `([a-z_]+)` \|", re.MULTILINE)


def _schema_routes() -> set[tuple[str, str]]:
    app = create_app(load_settings(database_url="none", log_level="warning"))
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def _error_table(doc: str) -> str:
    """The text of the errors section, up to the next section of the same level."""
    start = doc.index("\n## 8. Errors\n")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end != -1 else len(doc)]


def _error_codes() -> set[str]:
    """The ``code`` of every ``TypewriterError`` class, subclasses of subclasses included."""
    found: set[str] = set()
    pending: list[type[errors.TypewriterError]] = [errors.TypewriterError]
    while pending:
        kind = pending.pop()
        found.add(kind.code)
        pending.extend(kind.__subclasses__())
    return found


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_route_of_the_schema_has_its_heading(doc: str) -> None:
    routes = _schema_routes()
    assert len(routes) > 10  # the schema was read, not an empty one
    documented = set(HEADING.findall(doc))
    missing = sorted(f"{method} {path}" for method, path in routes - documented)
    assert not missing, f"docs/api.md has no heading for: {missing}"


def test_the_doc_documents_no_route_the_schema_lacks(doc: str) -> None:
    """A heading for a route that does not exist (a renamed path) is a wrong promise."""
    extra = sorted(f"{m} {p}" for m, p in set(HEADING.findall(doc)) - _schema_routes())
    assert not extra, f"docs/api.md documents routes /openapi.json does not have: {extra}"


def test_every_error_code_is_in_the_error_table(doc: str) -> None:
    codes = _error_codes()
    assert {"internal_error", "invalid_field", "upstream_timeout"} <= codes
    table = set(ERROR_ROW.findall(_error_table(doc)))
    missing = sorted(codes - table)
    assert not missing, f"the error table of docs/api.md lacks: {missing}"
