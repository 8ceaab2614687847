"""``/typewriter.js``, the browser module's stable URL: what it serves and with which headers."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from conftest import ServerFactory
from helpers import add_user
from web.test_static import static_prefix

pytestmark = pytest.mark.integration

ALLOWED = "https://chat.example"


def test_the_alias_serves_the_current_module_to_an_allowed_origin(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    add_user(tmp_path, "reader")  # auth on: the module needs no key all the same
    server = make_server(data_dir=tmp_path, cors_origins=[ALLOWED + "/"])
    with httpx.Client(base_url=server.url) as http:
        prefix = static_prefix(http.get("/").text)
        versioned = http.get(f"{prefix}/js/typewriter.js")
        assert versioned.status_code == 200

        module = http.get("/typewriter.js", headers={"origin": ALLOWED})
        assert module.status_code == 200
        assert module.content == versioned.content
        assert module.headers["content-type"] == "text/javascript; charset=utf-8"
        assert module.headers["cache-control"] == "public, max-age=300"
        assert module.headers["x-content-type-options"] == "nosniff"
        assert module.headers["access-control-allow-origin"] == ALLOWED
        assert "Origin" in module.headers["vary"]

        again = http.get("/typewriter.js", headers={"if-none-match": module.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        head = http.head("/typewriter.js")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(module.content))

        # Another origin gets the file but no permission to use it; the answer still varies
        # by Origin, so a shared cache cannot hand one origin's answer to another.
        other = http.get("/typewriter.js", headers={"origin": "https://elsewhere.example"})
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers
        assert "Origin" in other.headers["vary"]
        plain = http.get("/typewriter.js")
        assert "access-control-allow-origin" not in plain.headers
        assert "Origin" in plain.headers["vary"]


def test_without_cors_origins_no_origin_may_import_it(make_server: ServerFactory) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url) as http:
        module = http.get("/typewriter.js", headers={"origin": ALLOWED})
        assert module.status_code == 200
        assert not any(name.startswith("access-control-") for name in module.headers)


def test_the_module_imports_nothing(make_server: ServerFactory) -> None:
    """Served at a URL of its own, a relative import would resolve against that URL and miss:
    the module must stand alone (the page's other modules import it, not the reverse)."""
    server = make_server()
    source = httpx.get(f"{server.url}/typewriter.js").text
    assert "export class Typewriter" in source
    imports = re.compile(r"^[ \t]*import\b|\bimport\s*\(|^[ \t]*export\b[^;\n]*\bfrom\b", re.M)
    assert not imports.search(source)


def test_the_page_keeps_its_security_policy(make_server: ServerFactory) -> None:
    server = make_server(cors_origins=[ALLOWED])
    page = httpx.get(server.url + "/", headers={"origin": ALLOWED})
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "/js/typewriter.js" in page.text  # the page's own streaming is the module
    assert "/js/stream.js" not in page.text
