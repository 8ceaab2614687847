"""The web page: ``/``, its files under ``/static/<version>/``, and ``/typewriter.js``."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from typewriter.errors import NotFound

__all__ = ["router"]

router = APIRouter()


# The page's files live in the package (typewriter/web/: HTML, CSS, JavaScript modules, and
# vendor/, committed, which `make vendor` refreshes from package-lock.json). Their URLs carry
# a version, a hash of the files, so `/static/<version>/…` can be cached for a year: a new
# release (or an edited file) gets a new version, and the page, which is never cached without
# revalidation, names it.
# Relative imports between the modules keep the version by themselves.

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_IMMUTABLE = "public, max-age=31536000, immutable"
# The browser module at its stable URL: other pages import it there, so an upgrade reaches
# them within minutes while a page that imports it again and again does not ask each time.
MODULE_PATH = "/typewriter.js"
_MODULE_FILE = ("js", "typewriter.js")
_MODULE_CACHE = "public, max-age=300"

# Defence in depth behind the sanitizer: no inline script or handler can run, nothing is
# loaded from elsewhere (an image in a model's answer cannot call home), no framing.
_PAGE_SECURITY = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


def _web_root() -> Traversable:
    return resources.files("typewriter.web")


def _assets(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    """The files the page may load: known types, no hidden files, sorted for a stable hash."""
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not _SEGMENT.fullmatch(entry.name):
            continue
        if entry.is_dir():
            yield from _assets(entry, f"{prefix}{entry.name}/")
        elif Path(entry.name).suffix in _TYPES:
            yield f"{prefix}{entry.name}", entry


_version_cache: dict[object, str] = {}


def _version() -> str:
    """A short hash naming the current files: their sizes and times when they are plain files
    on disk (cheap enough for every request, and it follows edits), else their contents."""
    root = _web_root()
    files = list(_assets(root))
    if isinstance(root, Path):
        key: object = tuple(
            (name, stat.st_size, stat.st_mtime_ns)
            for name, stat in ((name, Path(str(f)).stat()) for name, f in files)
        )
    else:  # inside a zip: the files cannot change under a running process
        key = "packaged"
    cached = _version_cache.get(key)
    if cached is None:
        digest = hashlib.sha256()
        for name, file in files:
            digest.update(name.encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
        cached = digest.hexdigest()[:12]
        _version_cache.clear()
        _version_cache[key] = cached
    return cached


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    """The chat page; always revalidated, so it names the current version of its files."""
    html = _web_root().joinpath("index.html").read_text("utf-8")
    html = html.replace("{{STATIC}}", f"/static/{_version()}")
    return HTMLResponse(html, headers={"cache-control": "no-cache", **_PAGE_SECURITY})


@router.api_route("/static/{version}/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def static_file(version: str, path: str, request: Request) -> Response:
    """One of the page's files. The current version is cached for a year; a stale version
    (a page loaded before an upgrade) still gets the current file, revalidated each time."""
    parts = path.split("/")
    if not all(_SEGMENT.fullmatch(p) for p in parts) or Path(parts[-1]).suffix not in _TYPES:
        raise NotFound(f"no file {path[:100]!r}", code="file_not_found")
    file = _web_root().joinpath(*parts)
    if not file.is_file():
        raise NotFound(f"no file {path[:100]!r}", code="file_not_found")
    cache = _IMMUTABLE if version == _version() else "no-cache"
    return _file_response(file, request, cache)


@router.api_route(MODULE_PATH, methods=["GET", "HEAD"], include_in_schema=False)
async def browser_module(request: Request) -> Response:
    """The browser module (docs/browser.md) at a URL that does not change with the version.

    It is served here itself, not redirected: it imports nothing, so the URL it is loaded
    from does not matter to it, and one request is enough. A page on an origin listed in
    ``cors_origins`` may import it, since the CORS middleware answers every route alike.
    """
    return _file_response(_web_root().joinpath(*_MODULE_FILE), request, _MODULE_CACHE)


def _file_response(file: Traversable, request: Request, cache: str) -> Response:
    """A file with its type, ETag (a 304 when the client has it) and caching."""
    content = file.read_bytes()
    etag = f'"{hashlib.sha256(content).hexdigest()[:20]}"'
    headers = {"cache-control": cache, "etag": etag, "x-content-type-options": "nosniff"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else content
    headers["content-length"] = str(len(content))
    return Response(body, media_type=_TYPES[Path(file.name).suffix], headers=headers)
