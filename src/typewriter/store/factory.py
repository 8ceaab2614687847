"""Which store a server uses: SQLite in the data directory unless told otherwise."""

from __future__ import annotations

import logging

from typewriter.config import Settings
from typewriter.store.sql import SqlStore

__all__ = ["open_store"]

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> SqlStore | None:
    """``database_url = "none"`` keeps no history (benchmarks, stateless gateways)."""
    url = settings.database_url
    if url == "none":
        return None
    if url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = (settings.data_dir / "typewriter.db").resolve()
        log.info("conversations are kept in %s", path)
        url = f"sqlite+aiosqlite:///{path}"
    return SqlStore(url)
