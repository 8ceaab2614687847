"""The committed browser modules are exactly what package-lock.json gives.

The page's Markdown renderer, sanitizer, code highlighter and maths typesetter are committed
under ``web/vendor/`` so that a clone, a wheel or an sdist serves the full page without Node.
Committed copies can drift from the lock (a hand edit, a lock bump without ``make vendor``);
this test reruns the vendoring recipe on the packages ``npm ci`` installed (``make test`` runs
it) and compares byte for byte.
"""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
VENDOR = ROOT / "src" / "typewriter" / "web" / "vendor"
RECIPE = ROOT / "scripts" / "vendor-web.sh"
SHIPPED = {
    "marked.js",
    "marked-LICENSE.txt",
    "dompurify.js",
    "dompurify-LICENSE.txt",
    "highlight.js",
    "highlight-LICENSE.txt",
    "katex.js",
    "katex-LICENSE.txt",
}


def vendored(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_committed_files_match_the_lock(tmp_path: Path) -> None:
    if not (ROOT / "node_modules" / ".installed").exists():
        pytest.fail("node_modules is missing: `make test` runs npm ci first", pytrace=False)
    fresh = tmp_path / "vendor"
    subprocess.run(["bash", str(RECIPE), str(fresh)], cwd=ROOT, check=True)

    assert vendored(fresh) == SHIPPED
    assert vendored(VENDOR) == SHIPPED
    _, differ, errors = filecmp.cmpfiles(fresh, VENDOR, sorted(SHIPPED), shallow=False)
    assert not errors
    assert not differ, f"{differ} differ from package-lock.json's packages: run `make vendor`"
