"""``typewriter serve`` raises its soft descriptor limit to the hard one.

Each open listener holds a descriptor. Under the usual soft limit (1,024, or here 256)
the server used to lower ``max_connections`` to three quarters of it and refuse the
rest with 503, although the hard limit allowed raising it without any privilege.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from helpers import free_port


def _limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line")


def test_serve_raises_the_soft_open_file_limit_to_the_hard_one(tmp_path: Path) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard > 20_000 // 2  # room to see the difference
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
    env["TYPEWRITER_DATA_DIR"] = str(tmp_path)

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    command = [sys.executable, "-m", "typewriter", "serve", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=low_soft_limit
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, "the server exited"
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
            assert _limits(process.pid)[0] == _limits(process.pid)[1]
        finally:
            process.terminate()
            process.wait(10)
        log.seek(0)
        output = log.read().decode(errors="replace")
    assert "max_connections lowered" not in output, output
