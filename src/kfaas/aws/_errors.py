"""A handler's failure, as Lambda reports it: ``{errorMessage, errorType, stackTrace}``.

The runtime reports any exception by its class name (docs/runtime.md: a 500 naming the type; a task
request's error reply has ``errorType`` = the class name). A failure that comes back from a runtime client as
JSON (a Go handler's ``errorString``, ``Runtime.ExitError``) has no Python class, so :func:`handler_error`
makes one of that name: the runtime and the saga's ``Catch`` see the type Lambda reports, unchanged.
"""

from __future__ import annotations

import json
import logging
import sys
from functools import lru_cache
from typing import Any

__all__ = ["HandlerError", "error_payload", "handler_error", "log_error"]

log = logging.getLogger("kfaas.aws")


class HandlerError(Exception):
    """A Lambda handler failed; ``type(exc).__name__`` is Lambda's ``errorType``."""

    def __init__(self, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_message = message
        self.stack_trace = stack_trace or []

    @property
    def error_type(self) -> str:
        return type(self).__name__

    def payload(self) -> dict[str, Any]:
        return {
            "errorMessage": self.error_message,
            "errorType": self.error_type,
            "stackTrace": self.stack_trace,
        }


@lru_cache(maxsize=256)
def _error_class(name: str) -> type[HandlerError]:
    return type(name, (HandlerError,), {"__module__": "kfaas.aws.errors"})


def handler_error(error_type: str, message: str, stack_trace: list[str] | None = None) -> HandlerError:
    """An exception whose class name is ``error_type`` (any string Lambda reports, ``Runtime.ExitError`` too)."""
    name = error_type.strip() or "Error"
    return _error_class(name[:200])(message, stack_trace)


def error_payload(exc: BaseException, stack_trace: list[str] | None = None) -> dict[str, Any]:
    if isinstance(exc, HandlerError):
        return exc.payload()
    return {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": stack_trace or []}


def log_error(payload: dict[str, Any], request_id: str) -> None:
    """One line on stderr as Lambda's log has it: the error object, with the request id."""
    line = {"level": "ERROR", "requestId": request_id, **payload}
    sys.stderr.write(json.dumps(line, default=str) + "\n")
