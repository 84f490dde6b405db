"""JSON logs: one line per request (written directly, it is on the hot path) and a JSON formatter for the rest."""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any, TextIO

__all__ = ["JsonFormatter", "RequestLog", "configure_logging"]


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "msg", ...extra, "trace"}``; the trace only in the log, never to a caller."""

    _skip = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["trace"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, default=str)


JsonFormatter.converter = time.gmtime


def configure_logging(level: str = "INFO") -> None:
    """Route every logger (ours, the server's, the libraries') to JSON lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("granian", "granian.access", "_granian"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class RequestLog:
    """Writes the per-request line to stdout: method, path, status, duration and the CloudEvent's identity."""

    __slots__ = ("_function", "_stream")

    def __init__(self, function: str, stream: TextIO | None = None) -> None:
        self._function = function
        self._stream = stream or sys.stdout

    def write(self, method: str, path: str, status: int, started: float, **event: str | None) -> None:
        now = time.time()
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
            "level": "info",
            "msg": "request",
            "function": self._function,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        for key, value in event.items():
            if value:
                entry[key] = value
        self._stream.write(json.dumps(entry) + "\n")
