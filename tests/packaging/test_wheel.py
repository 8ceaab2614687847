"""A wheel built from a clean clone serves the full page, installed where there is no Node.

The page's Markdown renderer and sanitizer are committed under ``web/vendor/``; a wheel that
lost them would still serve a page, one that shows raw Markdown with only a console warning.
So this builds the wheel from a ``git clone`` of the committed HEAD (no ``make vendor``, no
``node_modules``), installs it into a new venv (its dependencies come from the package index,
as ``pip install`` does), serves it with a PATH where neither node nor npm can be found, and
has headless Chromium show an answer whose Markdown must render as HTML.

Uncommitted changes are not in the clone: the test checks what a clone would ship.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
VENDORED = [
    "typewriter/web/vendor/marked.js",
    "typewriter/web/vendor/marked-LICENSE.txt",
    "typewriter/web/vendor/dompurify.js",
    "typewriter/web/vendor/dompurify-LICENSE.txt",
]
HIDDEN = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
START_SECONDS = 30.0
WAIT_MS = 20_000


@dataclass
class Installed:
    wheel: Path
    venv: Path
    work: Path


def run(*command: str | Path) -> None:
    """Run a build step outside this test run's import path.

    The suite runs with ``PYTHONPATH=src``; inherited, it would show pip the checkout's
    ``typewriter.egg-info`` (left by ``make run``) as an installed typewriter, and pip would
    skip installing the wheel.
    """
    env = {name: value for name, value in os.environ.items() if name not in HIDDEN}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run([str(part) for part in command], check=True, stdout=subprocess.DEVNULL, env=env)


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    """Clone, build the wheel, install it into a fresh venv; all removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="typewriter-wheel-") as name:
        work = Path(name)
        clone, dist, venv = work / "clone", work / "dist", work / "venv"
        run("git", "clone", "--quiet", ROOT, clone)
        assert not (clone / "node_modules").exists()
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, clone)
        [wheel] = dist.glob("typewriter-*.whl")
        run(sys.executable, "-m", "venv", venv)
        run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
        yield Installed(wheel, venv, work)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_serving(url: str, server: subprocess.Popen[bytes]) -> None:
    """Poll the health route: a separate process offers no start-up event to wait on."""
    pause = threading.Event()
    deadline = threading.Timer(START_SECONDS, pause.set)
    deadline.start()
    try:
        while not pause.is_set():
            assert server.poll() is None, f"typewriter serve exited with {server.returncode}"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            pause.wait(0.05)
    finally:
        deadline.cancel()
    pytest.fail(f"typewriter serve did not answer within {START_SECONDS} s")


@pytest.fixture(scope="module")
def served(installed: Installed) -> Iterator[str]:
    """``typewriter serve`` from the venv, with only the venv's bin on PATH."""
    bin_dir = installed.venv / "bin"
    path = str(bin_dir)
    assert shutil.which("node", path=path) is None and shutil.which("npm", path=path) is None
    port = free_port()
    data = installed.work / "data"
    server = subprocess.Popen(
        [bin_dir / "typewriter", "serve", "--port", str(port), "--data-dir", data],
        env={"PATH": path, "HOME": str(installed.work), "LANG": "C.UTF-8"},
        cwd=installed.work,
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_the_wheel_ships_the_browser_modules(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        assert set(VENDORED) <= names
        for name in VENDORED:
            assert wheel.getinfo(name).file_size > 1000, name


def test_the_installed_page_renders_markdown(served: str) -> None:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            failed: list[str] = []
            page.on("pageerror", lambda error: failed.append(str(error)))
            page.goto(served + "/")
            page.get_by_label("Assistant").select_option("echo")
            box = page.get_by_role("textbox", name="Message", exact=True)
            box.fill("**bold** and `code`")
            box.press("Enter")
            answer = page.locator(".msg.assistant .md").last
            expect(answer.locator("strong")).to_have_text("bold", timeout=WAIT_MS)
            expect(answer.locator("code")).to_have_text("code", timeout=WAIT_MS)
            assert "**" not in answer.inner_text()
            assert not failed, failed
        finally:
            browser.close()
