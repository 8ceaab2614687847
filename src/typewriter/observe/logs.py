"""The process's logging: one handler on stderr, as plain text or one JSON object a line.

``configure_logging`` is called once by ``typewriter serve``. uvicorn's own
loggers are made to go through the same handler (its default configuration
gives them handlers of their own, in another format), so a log shipper reading
``--log-format json`` gets nothing but JSON lines. httpx logs every request it
makes at INFO, a line per answer asked upstream that says nothing an operator
needs: it is kept to warnings unless the level is ``debug``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from typewriter.config import Settings

__all__ = ["JsonFormatter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_QUIET = ("httpx", "httpcore")
_UVICORN = "uvicorn"  # the parent of uvicorn.error; its access log is off (``access_log``)
# What every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of its message with terminal colours
}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...}``: the fields given with ``extra=``
    follow, and a traceback, if any, is ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in line:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Send every log line to ``stream`` (stderr) in ``settings.log_format`` at
    ``settings.log_level``, replacing whatever handlers were set before."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    level = settings.log_level.upper()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    uvicorn_logger = logging.getLogger(_UVICORN)  # its own handler prints its own format
    uvicorn_logger.handlers.clear()
    uvicorn_logger.propagate = True
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in _QUIET:
        logging.getLogger(name).setLevel(quiet)
