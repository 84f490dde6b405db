"""JSON logs: one line per request (written directly, it is on the hot path) and a JSON formatter for the rest."""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from json.encoder import encode_basestring_ascii as _quote  # C-accelerated JSON string
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
    """Writes the per-request line to stdout: method, path, status, duration and the CloudEvent's identity.

    It is on every request's path, so the line is assembled from pieces rather than through ``json.dumps``
    of a dict (a third of the cost), with the timestamp's seconds formatted once per second.
    """

    __slots__ = ("_function", "_second", "_stamp", "_stream")

    def __init__(self, function: str, stream: TextIO | None = None) -> None:
        self._function = _quote(function)
        self._stream = stream or sys.stdout
        self._second = -1
        self._stamp = ""

    def write(self, method: str, path: str, status: int, started: float, **event: str | None) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        parts = [
            f'{{"time": "{self._stamp}.{int((now - second) * 1000):03d}Z", "level": "info", "msg": "request", '
            f'"function": {self._function}, "method": {_quote(method)}, "path": {_quote(path)}, '
            f'"status": {int(status)}, "duration_ms": {(time.perf_counter() - started) * 1000:.3f}'
        ]
        for key, value in event.items():
            if value:
                parts.append(f', "{key}": {_quote(value)}')
        parts.append("}\n")
        self._stream.write("".join(parts))
