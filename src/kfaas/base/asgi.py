"""Small pieces every kfaas server needs: JSON answers, the request limits and a bounded body reader.

The limits are the same for the runtime, the broker ingress, the dead-letter sink and the gateway, and each
refusal is a JSON answer naming the problem:

- at most ``MAX_HEADERS`` header fields and ``MAX_HEADER_BYTES`` of names and values (431);
- a body of at most ``Limits.max_body`` bytes (``KFAAS_MAX_BODY_BYTES``, 10 MiB): a ``Content-Length`` over
  it is refused before a byte of the body is read, and a body without one is counted while it is read, so
  a body over the limit is never buffered whole (413);
- the whole body within ``Limits.body_timeout`` seconds (``KFAAS_BODY_TIMEOUT``, 30 s): a client that
  stalls mid-body does not hold a request open for ever (408).

The HTTP server in front (granian, whose HTTP/1 parser is hyper's) has limits of its own that it enforces
before an application sees the request: more than ``SERVER_MAX_HEADERS`` header fields or a request head
larger than ``SERVER_MAX_HEAD`` bytes get its own ``431 Request Header Fields Too Large``, with an empty
body and ``connection: close``. kfaas's limits are below both, so a request over them is answered by kfaas
with a JSON body, and only a request far over them meets the server's bare answer.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from kfaas.base.errors import InvalidEvent

__all__ = [
    "BODY_TIMEOUT",
    "MAX_BODY",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "SERVER_MAX_HEAD",
    "SERVER_MAX_HEADERS",
    "BodyTimeout",
    "BodyTooLarge",
    "Headers",
    "HeadersTooLarge",
    "Limits",
    "RequestRefused",
    "decode_headers",
    "json_answer",
    "read_body",
    "read_stream",
    "refusal",
    "rsgi_headers",
    "send_answer",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

MAX_BODY = 10 * 1024 * 1024  # Knative's default ingress limit is larger; 10 MiB keeps a pod's memory safe
BODY_TIMEOUT = 30.0  # seconds the whole request body may take to arrive
MAX_HEADERS = 64  # header fields of one request
MAX_HEADER_BYTES = 64 * 1024  # names and values of all header fields together

# What granian answers itself (kfaas.base.server configures it): hyper's HTTP/1 parser refuses more than 100
# header fields (a constant in hyper that granian does not expose) and a head larger than its read buffer.
SERVER_MAX_HEADERS = 100
SERVER_MAX_HEAD = 8192 + 4096 * 100  # granian's HTTP1Settings.max_buffer_size, its default

_JSON: Headers = [(b"content-type", b"application/json")]


class RequestRefused(InvalidEvent):
    """A request kfaas refuses before it reaches a function: ``status`` and a message naming the problem."""

    status: ClassVar[int] = 400


class BodyTooLarge(RequestRefused):
    """The request body is larger than the server's limit (413)."""

    status = 413


class BodyTimeout(RequestRefused):
    """The request body did not arrive within the time limit (408)."""

    status = 408


class HeadersTooLarge(RequestRefused):
    """Too many header fields, or too many bytes of them (431)."""

    status = 431


@dataclass(frozen=True, slots=True)
class Limits:
    """The request limits of one server (see the module docstring)."""

    max_body: int = MAX_BODY
    body_timeout: float = BODY_TIMEOUT
    max_headers: int = MAX_HEADERS
    max_header_bytes: int = MAX_HEADER_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """``KFAAS_MAX_BODY_BYTES`` and ``KFAAS_BODY_TIMEOUT`` from the environment (ValueError naming a bad one)."""
        env = os.environ if environ is None else environ
        return cls(
            max_body=_positive(env, "KFAAS_MAX_BODY_BYTES", int, MAX_BODY),
            body_timeout=_positive(env, "KFAAS_BODY_TIMEOUT", float, BODY_TIMEOUT),
        )

    def check_head(self, headers: Sequence[tuple[bytes | str, bytes | str]]) -> None:
        """Refuse a request whose header fields are over the limits, or whose Content-Length is over the body
        limit (or not a number), before any of its body is read."""
        if len(headers) > self.max_headers:
            raise HeadersTooLarge(
                f"too many header fields: {len(headers)}, at most {self.max_headers} are accepted"
            )
        size = sum(len(name) + len(value) for name, value in headers)
        if size > self.max_header_bytes:
            largest = max(headers, key=lambda item: len(item[0]) + len(item[1]))
            key = largest[0]
            shown = key.decode("latin-1") if isinstance(key, bytes) else key
            raise HeadersTooLarge(
                f"header fields too large: {size} bytes of names and values, at most {self.max_header_bytes} "
                f"are accepted (the largest is {shown.lower()}, {len(largest[1])} bytes)"
            )
        for field, value in headers:
            if field in (b"content-length", "content-length"):
                self.check_length(value)

    def check_length(self, value: bytes | str) -> None:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if not text.strip().isdigit():
            raise RequestRefused(f"Content-Length {text!r} is not a number of bytes")
        if int(text) > self.max_body:
            raise BodyTooLarge(
                f"request body too large: Content-Length {int(text)}, at most {self.max_body} bytes are accepted"
            )

    def too_large(self) -> BodyTooLarge:
        return BodyTooLarge(f"request body too large: more than {self.max_body} bytes, the limit")


def _positive(env: Mapping[str, str], name: str, kind: type[int] | type[float], default: float) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be greater than 0")
    return value


def json_answer(
    status: int, payload: Mapping[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[int, Headers, bytes]:
    """(status, headers, body) of a JSON answer."""
    return status, [*_JSON, *extra], json.dumps(payload).encode()


def refusal(exc: InvalidEvent) -> tuple[int, Headers, bytes]:
    """The JSON answer to a refused request: its status (400 unless it says otherwise) and its message.

    A refusal that leaves body bytes unread (413, 408) closes the connection, so the client does not go on
    sending into a connection that will not read them.
    """
    status = getattr(exc, "status", 400)
    extra = [(b"connection", b"close")] if status in (408, 413) else []
    return json_answer(status, {"error": str(exc)}, extra)


async def send_answer(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def decode_headers(raw: Iterable[tuple[bytes, bytes]], strict: Callable[[str], bool]) -> dict[str, str]:
    """Header fields as a dict of lower-case names to values.

    Values of the fields ``strict(name)`` picks (CloudEvents attributes, the content type) are UTF-8 and a
    field that is not valid UTF-8 is refused (400) naming it; other values are read as Latin-1, which
    never fails.
    """
    out: dict[str, str] = {}
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if value.isascii() or not strict(name):
            out[name] = value.decode("latin-1")
            continue
        try:
            out[name] = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestRefused(
                f"header {name} is not valid UTF-8 (byte {value[exc.start]:#04x} at offset {exc.start})"
            ) from None
    return out


def rsgi_headers(headers: Any, limits: Limits, strict: Callable[[str], bool]) -> dict[str, str]:
    """granian's RSGI header fields (lower-cased names to values), checked against ``limits``.

    granian passes on only values of visible ASCII: a field with any other byte in its value (invalid
    UTF-8, or UTF-8 that is not percent-encoded) is in its names but not in its items. For a field
    ``strict(name)`` picks (a CloudEvents attribute, the content type) that is refused, naming the field,
    rather than taken as missing.
    """
    items = headers.items()
    found = dict(items)
    hidden = [key for key in headers.keys() if key not in found]  # noqa: SIM118 - RSGIHeaders, not a dict
    limits.check_head([*items, *((key, "") for key in hidden)])
    for key in hidden:
        if strict(key):
            raise RequestRefused(
                f"header {key} holds bytes outside visible ASCII: invalid UTF-8, or UTF-8 that is not "
                "percent-encoded (the CloudEvents HTTP binding percent-encodes such characters)"
            )
    return found


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
                    raise Limits(max_body=limit).too_large()
                return bytes(first)
            body = bytearray(first)
            while True:
                if len(body) > limit:
                    raise Limits(max_body=limit).too_large()
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionAbortedError("client disconnected")
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    if len(body) > limit:
                        raise Limits(max_body=limit).too_large()
                    return bytes(body)
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g}s") from None


async def read_stream(
    chunks: AsyncIterator[bytes], limit: int = MAX_BODY, timeout: float = BODY_TIMEOUT
) -> bytes:
    """The whole body from granian's RSGI protocol (an async iterator of chunks), with :func:`read_body`'s
    bounds; ``ConnectionAbortedError`` when the client went away mid-body.

    granian (2.8) does not raise when a body breaks off: the iterator yields an empty chunk for the error
    and then the empty chunk that ends every body. Two empty chunks in a row are that, and the partial
    body is never taken for a whole one.
    """
    body = bytearray()
    empty = False
    try:
        async with asyncio.timeout(timeout):
            async for chunk in chunks:
                if not chunk:
                    if empty:
                        raise ConnectionAbortedError("client disconnected mid-body")
                    empty = True
                    continue
                body += chunk
                if len(body) > limit:
                    raise Limits(max_body=limit).too_large()
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g}s") from None
    return bytes(body)
