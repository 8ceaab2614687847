"""nginx configured with the server block of docs/deploy.md, run as a real process.

The block is read from the document itself, so the configuration the document
recommends is the one tested. Everything nginx writes stays in the test's own
directory. Shared by the deploy tests (``deploy/test_nginx.py``, ``deploy/test_drain.py``).

``make test`` installs nginx (``scripts/ensure-test-services.sh``); without it
these tests fail, saying so, rather than being skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import free_port

__all__ = ["Nginx", "documented_server_block", "main_config", "start_nginx", "start_site"]

DEPLOY_DOC = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def documented_server_block() -> str:
    """The ``nginx`` block of docs/deploy.md that defines the upstream."""
    blocks = re.findall(r"^```nginx\n(.*?)^```", DEPLOY_DOC.read_text(), re.MULTILINE | re.DOTALL)
    matching = [block for block in blocks if "upstream typewriter" in block]
    assert len(matching) == 1, f"expected one nginx block with the upstream in {DEPLOY_DOC}"
    block: str = matching[0]
    return block


RETRY_DRAINING = "proxy_next_upstream error timeout http_503 non_idempotent;"


def site_config(upstreams: list[str], port: int, variant: str = "documented") -> str:
    """The documented block with these upstreams and port, or a variant of it.

    ``buffering_and_gzip``: buffering on, the gateway's ``X-Accel-Buffering: no`` ignored
    (it would turn buffering off again by itself), and event streams compressed. Either
    of buffering or compression alone still passes events on one by one with nginx 1.22;
    together they hold the answer until it ends.

    ``retry_draining``: nginx sends an ask that a stopping replica refused (``503
    draining``, nothing recorded) on to the next replica (:data:`RETRY_DRAINING`, added
    unless the documented block already has it).
    """
    block = documented_server_block()
    addresses = iter(upstreams)
    block, servers = re.subn(
        r"^(\s*)server \S+:\d+;$",
        lambda match: f"{match[1]}server {next(addresses)};",
        block,
        flags=re.MULTILINE,
    )
    assert servers == len(upstreams), f"the documented upstream should list {len(upstreams)}"
    block, listens = re.subn(
        r"^(\s*)listen 80;$", rf"\1listen 127.0.0.1:{port};", block, flags=re.M
    )
    assert listens == 1, "the documented server block should `listen 80;`"
    if variant == "buffering_and_gzip":
        replacements = {
            "proxy_buffering off;": "proxy_buffering on;\n        "
            "proxy_ignore_headers X-Accel-Buffering;",
            "gzip off;": "gzip on;\n        gzip_types text/event-stream;",
        }
        for documented, changed in replacements.items():
            assert documented in block, f"the documented block should say `{documented}`"
            block = block.replace(documented, changed)
    elif variant == "retry_draining":
        if RETRY_DRAINING not in block:
            documented = "proxy_pass http://typewriter;"
            assert documented in block, f"the documented block should say `{documented}`"
            block = block.replace(documented, f"{documented}\n        {RETRY_DRAINING}")
    else:
        assert variant == "documented", variant
    return block


def main_config(root: Path, site: str) -> str:
    """Everything nginx writes goes into ``root``: nothing under /var, /run or /etc."""
    # As root, nginx's workers would switch to `nobody`, who cannot enter pytest's temp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {root / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # One worker: round robin state is per worker, so requests alternate between the replicas.
    return f"""{user}
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
events {{
    worker_connections 64;
}}
http {{
{temp_paths}
    log_format upstreams '$request_method $request_uri $status $upstream_addr';
    access_log {root / "access.log"} upstreams;

{site}
}}
"""


@dataclass
class Nginx:
    root: Path
    url: str
    process: subprocess.Popen[bytes]

    def served_by(self, path_prefix: str) -> set[str]:
        """The upstream addresses that served requests whose path starts with the prefix."""
        lines = (self.root / "access.log").read_text().splitlines()
        return {line.split()[3] for line in lines if line.split()[1].startswith(path_prefix)}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown, the master ends its workers
            try:
                self.process.wait(10)
                return
            except subprocess.TimeoutExpired:
                pass
        # The master hangs or died by itself: its workers outlive it, so end the whole
        # process group it leads (its own session, see start_nginx).
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)


def start_nginx(root: Path, upstreams: list[str], variant: str = "documented") -> Nginx:
    """nginx with the documented block (or a variant), on a free loopback port."""
    port = free_port()
    return start_site(root, site_config(upstreams, port, variant), port)


def start_site(root: Path, site: str, port: int, scheme: str = "http") -> Nginx:
    """nginx serving ``site`` (the ``http`` block's content), which listens on ``port``."""
    if not Path(NGINX).is_file():
        pytest.fail(
            "nginx not found: run `make test` (or scripts/ensure-test-services.sh)", pytrace=False
        )
    root.mkdir()
    conf = root / "nginx.conf"
    conf.write_text(main_config(root, site))
    output = root / "nginx.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [NGINX, "-p", f"{root}/", "-e", str(root / "error.log"), "-c", str(conf)]
            + ["-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() can end the workers too
        )
    nginx = Nginx(root, f"{scheme}://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return nginx
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            nginx.stop()
            log = output.read_text() + (root / "error.log").read_text()
            raise AssertionError(f"nginx did not start:\n{log}")
        time.sleep(0.02)  # polling for the port, not guessing when it opens
