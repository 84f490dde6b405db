"""The dev broker's HTTP ingress: ``POST /<broker>`` takes CloudEvents and publishes them to RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from kfaas.base.asgi import read_body as read_asgi_body
from kfaas.base.errors import InvalidEvent
from kfaas.broker._names import PREFIX, BrokerUnavailable
from kfaas.events import parse_events

__all__ = ["Ingress", "Publisher"]

log = logging.getLogger("kfaas.broker")


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
    hands over the body in one call and writes the answer without ASGI's message dicts.
    """

    def __init__(self, broker: Publisher) -> None:
        self.broker = broker

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            status, extra, body = await self.handle(
                scope["method"], scope["path"], headers, lambda: read_asgi_body(receive)
            )
            out = [(b"content-length", str(len(body)).encode())]
            out += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": body})

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        # granian's RSGI headers are already lower-cased
        headers = dict(scope.headers.items())
        status, extra, body = await self.handle(scope.method, scope.path, headers, protocol)
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
        self, method: str, path: str, headers: dict[str, str], read_body: Callable[[], Awaitable[bytes]]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers besides content-length, body) of the answer to one request."""
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
        body = await read_body()
        try:
            events = parse_events(headers, body)
        except InvalidEvent as exc:
            return _json(400, {"error": str(exc)})
        try:
            if "ce-specversion" in headers:
                # binary mode, validated by the SDK above: forward the request's own attributes and bytes
                attributes = {k: v for k, v in headers.items() if k.startswith(PREFIX)}
                await self.broker.publish_amqp(name, attributes, headers.get("content-type"), body)
            elif len(events) == 1:
                await self.broker.publish(name, events[0])
            else:
                await asyncio.gather(*(self.broker.publish(name, e) for e in events))
        except BrokerUnavailable as exc:
            log.warning("ingress: %s", exc)
            return _json(503, {"error": "RabbitMQ is unavailable, retry later"})
        return 202, [], b""


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _json(
    status: int, payload: dict[str, Any], allow: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("content-type", "application/json")]
    if allow:
        headers.append(("allow", allow))
    return status, headers, json.dumps(payload).encode()
