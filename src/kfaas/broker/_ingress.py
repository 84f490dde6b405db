"""The dev broker's HTTP ingress: ``POST /<broker>`` takes CloudEvents and publishes them to RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from kfaas.base.asgi import (
    BodyTooLarge,
    Headers,
    Limits,
    RequestRefused,
    decode_headers,
    read_stream,
    refusal,
)
from kfaas.base.asgi import read_body as read_asgi_body
from kfaas.base.errors import InvalidEvent
from kfaas.broker._names import PREFIX, BrokerUnavailable
from kfaas.events import parse_events

__all__ = ["AMQP_SHORTSTR", "Ingress", "Publisher", "check_amqp_limits", "rabbitmq_refusal"]

log = logging.getLogger("kfaas.broker")

AMQP_SHORTSTR = 255  # bytes of an AMQP 0-9-1 short string: message_id, content_type, header names


class Publisher(Protocol):
    """What the ingress needs of the dev broker (:class:`kfaas.broker.DevBroker`)."""

    namespace: str
    brokers: list[str]

    @property
    def ready(self) -> bool: ...

    async def publish(self, broker: str, event: Any) -> None: ...

    async def publish_amqp(
        self, broker: str, headers: dict[str, Any], content_type: str | None, body: bytes
    ) -> None: ...


class Ingress:
    """``POST /<broker>`` (or ``/<namespace>/<broker>``) takes CloudEvents, 202 once confirmed.

    An ASGI app, and an RSGI one (``__rsgi__``, granian's own interface), which ``serve_ingress`` uses: it
    reads the body in chunks and writes the answer without ASGI's message dicts. Both refuse what the
    runtime refuses, with the same JSON (kfaas.base.asgi's limits, kfaas.events' checks), and what RabbitMQ
    could not take: an id or a content type longer than an AMQP short string (255 bytes), a message over
    RabbitMQ's ``max_message_size``.
    """

    def __init__(self, broker: Publisher, limits: Limits | None = None) -> None:
        self.broker = broker
        self.limits = limits or Limits()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            limits = self.limits
            status, extra, body = await self.handle(
                scope["method"],
                scope["path"],
                lambda: _asgi_headers(scope["headers"], limits),
                lambda: read_asgi_body(receive, limits.max_body, limits.body_timeout),
            )
            out = [(b"content-length", str(len(body)).encode())]
            out += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": body})

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        limits = self.limits
        status, extra, body = await self.handle(
            scope.method,
            scope.path,
            lambda: _rsgi_headers(scope.headers, limits),
            lambda: read_stream(protocol, limits.max_body, limits.body_timeout),
        )
        if body:
            protocol.response_bytes(status, extra, body)
        else:
            protocol.response_empty(status, extra)

    def _broker_of(self, path: str) -> str | None:
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == self.broker.namespace:
            parts = parts[1:]
        return parts[0] if len(parts) == 1 and parts[0] in self.broker.brokers else None

    async def handle(
        self,
        method: str,
        path: str,
        read_headers: Callable[[], dict[str, str]],
        read_body: Callable[[], Awaitable[bytes]],
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers besides content-length, body) of the answer to one request.

        ``read_headers`` checks the head against the limits and gives the header fields; ``read_body``
        reads the body within them; each raises :class:`~kfaas.base.asgi.RequestRefused` for a request
        over a limit.
        """
        path = path.rstrip("/")
        if path in ("/health/readiness", "/health/liveness"):
            ok = path.endswith("liveness") or self.broker.ready
            return _json(200 if ok else 503, {"status": "ok" if ok else "not connected to RabbitMQ"})
        name = self._broker_of(path)
        if name is None:
            known = ", ".join(f"/{b}" for b in self.broker.brokers)
            return _json(404, {"error": f"no broker at {path or '/'} (brokers: {known})"})
        if method != "POST":
            return _json(405, {"error": "POST CloudEvents to a broker"}, allow="POST")
        try:
            headers, body, events = await _read(read_headers, read_body)
        except InvalidEvent as exc:
            return _answer(*refusal(exc))
        except ConnectionAbortedError:
            return 400, [], b""  # the client is gone: nobody reads the answer
        return await self._publish(name, headers, body, events)

    async def _publish(
        self, name: str, headers: dict[str, str], body: bytes, events: list[Any]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            if "ce-specversion" in headers:
                # binary mode, validated above: forward the request's own attributes and bytes
                attributes = {k: v for k, v in headers.items() if k.startswith(PREFIX)}
                await self.broker.publish_amqp(name, attributes, headers.get("content-type"), body)
            elif len(events) == 1:
                await self.broker.publish(name, events[0])
            else:
                await asyncio.gather(*(self.broker.publish(name, e) for e in events))
        except BrokerUnavailable as exc:
            refused = rabbitmq_refusal(exc)
            if refused is not None:
                log.warning("ingress: %s", refused)
                return _answer(*refusal(refused))
            log.warning("ingress: %s", exc)
            return _json(503, {"error": "RabbitMQ is unavailable, retry later"})
        return 202, [], b""


async def _read(
    read_headers: Callable[[], dict[str, str]], read_body: Callable[[], Awaitable[bytes]]
) -> tuple[dict[str, str], bytes, list[Any]]:
    """The header fields, the body and the events of a request, each checked (raises InvalidEvent)."""
    headers = read_headers()
    body = await read_body()
    events = parse_events(headers, body)
    if "ce-specversion" in headers:
        check_amqp_limits(headers, headers.get("content-type"))
    else:
        for event in events:
            attributes = {PREFIX + key: value for key, value in event.get_attributes().items()}
            check_amqp_limits(attributes, event.get("datacontenttype"))
    return headers, body, events


def _strict(name: str) -> bool:
    return name.startswith(PREFIX) or name == "content-type"


def _asgi_headers(raw: list[tuple[bytes, bytes]], limits: Limits) -> dict[str, str]:
    limits.check_head(raw)
    return decode_headers(raw, _strict)


def _rsgi_headers(headers: Any, limits: Limits) -> dict[str, str]:
    """granian's RSGI header fields (lower-cased), checked against the limits.

    granian passes on only values of visible ASCII: a field with any other byte in its value (invalid
    UTF-8, or UTF-8 that is not percent-encoded) is in its names but not in its items. For a CloudEvents
    attribute or the content type that is refused, naming the field, rather than taken as missing.
    """
    items = headers.items()
    found = dict(items)
    hidden = [key for key in headers.keys() if key not in found]  # noqa: SIM118 - RSGIHeaders, not a dict
    limits.check_head([*items, *((key, "") for key in hidden)])
    for key in hidden:
        if _strict(key):
            raise RequestRefused(
                f"header {key} holds bytes outside visible ASCII: invalid UTF-8, or UTF-8 that is not "
                "percent-encoded (the CloudEvents HTTP binding percent-encodes such characters)"
            )
    return found


def check_amqp_limits(headers: dict[str, Any], content_type: str | None) -> None:
    """Refuse what RabbitMQ cannot store as this event's message: AMQP short strings hold 255 bytes.

    The event's id is the message's ``message_id`` and its content type the ``content_type`` property, both
    short strings, as is every header name; RabbitMQ closes the channel on a longer one.
    """
    event_id = str(headers.get(PREFIX + "id", ""))
    if len(event_id.encode()) > AMQP_SHORTSTR:
        raise RequestRefused(
            f"the event id is {len(event_id.encode())} bytes long; the broker keeps ids of at most "
            f"{AMQP_SHORTSTR} bytes (the AMQP message id)"
        )
    if content_type and len(content_type.encode()) > AMQP_SHORTSTR:
        raise RequestRefused(f"the content type is longer than {AMQP_SHORTSTR} bytes (the AMQP content type)")
    for key in headers:
        if len(key.encode()) > AMQP_SHORTSTR:
            raise RequestRefused(f"attribute name {key[:64]}... is longer than {AMQP_SHORTSTR} bytes")


_MAX_SIZE = re.compile(r"message size (\d+) is larger than (?:configured )?max size (\d+)")


def rabbitmq_refusal(exc: BaseException) -> RequestRefused | None:
    """A failed publish that RabbitMQ refused for the message's size: 413 naming its limit, not a 503."""
    cause: BaseException | None = exc
    while cause is not None:
        found = _MAX_SIZE.search(str(cause))
        if found:
            size, limit = found.groups()
            return BodyTooLarge(
                f"RabbitMQ refused the event: its message of {size} bytes is larger than RabbitMQ's "
                f"max_message_size of {limit} bytes"
            )
        cause = cause.__cause__ or cause.__context__
    return None


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _answer(status: int, headers: Headers, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers], body


def _json(
    status: int, payload: dict[str, Any], allow: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("content-type", "application/json")]
    if allow:
        headers.append(("allow", allow))
    return status, headers, json.dumps(payload).encode()
