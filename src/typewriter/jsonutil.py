"""Compact JSON text for event data: UTF-8 as is, so CJK stays readable in ``curl -N``."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps"]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    return _encoder.encode(value)
