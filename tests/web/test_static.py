"""How typewriter serves its page and the page's files: types, caching, security headers."""

from __future__ import annotations

import re

import httpx
import pytest

from conftest import RunningServer

pytestmark = pytest.mark.integration


def static_prefix(html: str) -> str:
    match = re.search(r'src="(/static/[0-9a-f]{12})/js/app\.js"', html)
    assert match, "the page names no versioned app.js"
    return match.group(1)


def test_page_and_files(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        prefix = static_prefix(page.text)

        for path, media_type in [
            ("js/app.js", "text/javascript; charset=utf-8"),
            ("js/markdown.js", "text/javascript; charset=utf-8"),
            ("vendor/marked.js", "text/javascript; charset=utf-8"),
            ("vendor/dompurify.js", "text/javascript; charset=utf-8"),
            ("app.css", "text/css; charset=utf-8"),
            ("icon.svg", "image/svg+xml"),
        ]:
            response = http.get(f"{prefix}/{path}")
            assert response.status_code == 200, path
            assert response.headers["content-type"] == media_type, path
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert response.headers["x-content-type-options"] == "nosniff"
            etag = response.headers["etag"]
            again = http.get(f"{prefix}/{path}", headers={"if-none-match": etag})
            assert again.status_code == 304 and again.content == b""

        # an old page's version still gets the file, but revalidated
        stale = http.get("/static/000000000000/js/app.js")
        assert stale.status_code == 200
        assert stale.headers["cache-control"] == "no-cache"
        assert http.head(f"{prefix}/js/app.js").status_code == 200


IMPORT = re.compile(r'^import\b[^;]*?from "\./([\w-]+\.js)";', re.MULTILINE)


def test_every_module_is_preloaded(server: RunningServer) -> None:
    """The page names each module it imports, however deep, so the browser fetches them all
    at once rather than one import level after another."""
    with httpx.Client(base_url=server.url) as http:
        html = http.get("/").text
        prefix = static_prefix(html)
        link = rf'<link rel="modulepreload" href="{re.escape(prefix)}/js/([\w-]+\.js)">'
        preloaded = set(re.findall(link, html))
        imported: set[str] = set()
        todo = ["app.js"]
        while todo:
            source = http.get(f"{prefix}/js/{todo.pop()}")
            assert source.status_code == 200, source.url
            found = set(IMPORT.findall(source.text))
            todo.extend(found - imported)
            imported |= found
    assert len(imported) > 10
    assert preloaded == imported


@pytest.mark.parametrize(
    "path",
    [
        "__init__.py",
        "index.html",
        "js/missing.js",
        "../api/routes_page.py",
        "%2e%2e/api/app.py",
        ".hidden.js",
        "vendor/.hidden-stamp",
        "js//app.js",
    ],
)
def test_only_the_page_files_are_served(server: RunningServer, path: str) -> None:
    with httpx.Client(base_url=server.url) as http:
        response = http.get(f"/static/{'0' * 12}/{path}")
        assert response.status_code == 404, (path, response.status_code)
        assert response.json()["error"]["code"] == "file_not_found"
