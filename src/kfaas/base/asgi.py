"""Small ASGI pieces every kfaas server needs: JSON answers and a bounded request-body reader.

The reader enforces the size limit while it reads (a body over the limit is never buffered whole) and a
time limit on the whole body (a client that stalls mid-body does not hold a request open for ever).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

from kfaas.base.errors import InvalidEvent

__all__ = [
    "BODY_TIMEOUT",
    "MAX_BODY",
    "BodyTimeout",
    "BodyTooLarge",
    "Headers",
    "json_answer",
    "read_body",
    "send_answer",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

MAX_BODY = 10 * 1024 * 1024  # Knative's default ingress limit is larger; 10 MiB keeps a pod's memory safe
BODY_TIMEOUT = 30.0  # seconds the whole request body may take to arrive

_JSON: Headers = [(b"content-type", b"application/json")]


class BodyTooLarge(InvalidEvent):
    """The request body is larger than the server's limit (413)."""

    status = 413


class BodyTimeout(InvalidEvent):
    """The request body did not arrive within the time limit (408)."""

    status = 408


def json_answer(
    status: int, payload: Mapping[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[int, Headers, bytes]:
    """(status, headers, body) of a JSON answer."""
    return status, [*_JSON, *extra], json.dumps(payload).encode()


async def send_answer(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive, limit: int = MAX_BODY, timeout: float = BODY_TIMEOUT) -> bytes:
    """The whole body of an ASGI HTTP request.

    Raises :class:`BodyTooLarge` as soon as more than ``limit`` bytes arrived, :class:`BodyTimeout` when the
    body took longer than ``timeout`` seconds, and ``ConnectionAbortedError`` when the client went away.
    """
    try:
        async with asyncio.timeout(timeout):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionAbortedError("client disconnected")
            first = message.get("body", b"")
            if not message.get("more_body", False):  # the common case: one message
                if len(first) > limit:
                    raise BodyTooLarge(f"request body larger than {limit} bytes")
                return bytes(first)
            body = bytearray(first)
            while True:
                if len(body) > limit:
                    raise BodyTooLarge(f"request body larger than {limit} bytes")
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionAbortedError("client disconnected")
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    if len(body) > limit:
                        raise BodyTooLarge(f"request body larger than {limit} bytes")
                    return bytes(body)
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g}s") from None
