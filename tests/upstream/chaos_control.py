"""Drive the chaos upstream (``scripted_chaos.py``) from tests: ``Upstream`` plus its plan."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from upstream.control import RequestRecord, Upstream

CHAOS_PATH = Path(__file__).with_name("scripted_chaos.py")


class ChaosUpstream(Upstream):
    """A chaos upstream process; until :meth:`plan` is called it is the scriptable upstream."""

    def __init__(self) -> None:
        super().__init__(server_path=CHAOS_PATH)

    def plan(
        self,
        seed: int,
        name: str,
        faults: Sequence[str] | None = None,
        tokens_per_second: float = 0,
    ) -> dict[str, Any]:
        """Plan every chat request from now on by ``seed`` (see ``chaos_schedule``), as the
        upstream called ``name``; ``faults`` limits the kinds; ``tokens_per_second`` paces the
        chunks (0: no pause). Counts of attempts restart."""
        payload: dict[str, Any] = {
            "seed": seed,
            "name": name,
            "tokens_per_second": tokens_per_second,
        }
        if faults is not None:
            payload["faults"] = list(faults)
        result: dict[str, Any] = self._call("POST", "chaos", payload)
        return result


def sent_text(record: RequestRecord) -> str:
    """The answer text a planned request wrote to its connection (before its fault)."""
    chaos = record["chaos"]
    return "".join(chaos["contents"][: record["tokens_sent"]])
