"""functions-framework's return conventions as a plain ASGI answer, for the answers kfaas writes without a
web framework (typed functions, error handlers of event functions).

``str``/``bytes`` are text, ``dict``/``list`` JSON, ``None`` no body, and a tuple ``(body, status)`` or
``(body, status, headers)`` sets the status and header fields, as for ``http`` functions (kfaas.runtime.http).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["Answer", "answer", "failure"]

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]

_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_JSON = (b"content-type", b"application/json")


def answer(result: Any, empty_status: int = 204) -> Answer:
    """(status, header fields, body) of a function's return value; TypeError for one it cannot be.

    ``empty_status`` is the status of ``None`` returned alone (functions-framework's typed functions
    answer 200 with an empty body).
    """
    status = 200
    extra: Any = None
    if isinstance(result, tuple):
        if len(result) == 2:
            result, status = result
        elif len(result) == 3:
            result, status, extra = result
        else:
            raise TypeError(f"a tuple reply is (body, status[, headers]); got {len(result)} items")
        if not isinstance(status, int) or isinstance(status, bool):
            raise TypeError(f"the status of a tuple reply must be an int, got {type(status).__name__}")
    elif result is None:
        status = empty_status
    headers: list[tuple[bytes, bytes]] = []
    if result is None:
        body = b""
    elif isinstance(result, dict | list):
        body = json.dumps(result).encode()
        headers.append(_JSON)
    elif isinstance(result, str):
        body = result.encode()
        headers.append(_TEXT)
    elif isinstance(result, bytes | bytearray | memoryview):
        body = bytes(result)
        headers.append(_TEXT)
    else:
        raise TypeError(f"cannot turn {type(result).__name__} into an HTTP response")
    if extra:
        pairs = extra.items() if isinstance(extra, Mapping) else extra
        given = [(str(k).lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in pairs]
        names = {k for k, _ in given}
        headers = [h for h in headers if h[0] not in names] + given
    return status, headers, body


def failure(exc: BaseException, debug: bool = False) -> dict[str, str]:
    """The JSON body of a 500 for ``exc``: its type (and a kfaas error's message); with ``--debug`` its trace."""
    from kfaas.base.errors import public_message

    body = {"error": public_message(exc)}
    if debug:
        import traceback

        body["trace"] = "".join(traceback.format_exception(exc))
    return body
