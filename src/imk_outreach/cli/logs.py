"""Log output: plain lines for a terminal, or JSON lines (``--log-format json``) for a log collector."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(verbosity: int, log_format: str, long_running: bool) -> None:
    """Log to stderr: warnings by default, progress too for the daemons (``run``, ``worker``)."""
    level = logging.INFO if long_running else logging.WARNING
    level = max(logging.DEBUG, level - 10 * verbosity)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        plain = (
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
            if long_running
            else "%(levelname)s %(name)s: %(message)s"
        )
        handler.setFormatter(logging.Formatter(plain, datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("apscheduler", "alembic", "uvicorn.access", "httpx", "mail.log"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
