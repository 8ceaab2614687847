"""The ``store`` fixture the store's tests share: one ``SqlStore`` on each engine
``database_url`` gives (SQLite and a real PostgreSQL).

A plugin that ``tests/conftest.py`` registers, not a ``tests/store/conftest.py``: the test
files import ``conftest`` by its basename, and a second ``conftest`` would shadow the first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from typewriter.store.migrations import STEPS
from typewriter.store.sql import SqlStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A started store on a new, empty database: every migration step ran on it, once."""
    opened = SqlStore(database_url)
    assert await opened.start() == len(STEPS)
    yield opened
    await opened.close()
