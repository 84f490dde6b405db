"""``kfaas dead-letters``: the dead-letter sink on Knative, keeping dead letters where ``kfaas dlq`` finds them.

Knative POSTs an event that exhausted its retries to the ``deadLetterSink`` of its Trigger (or Broker), with
the extensions ``knativeerrordest`` (the subscriber that failed), ``knativeerrorcode`` and
``knativeerrordata``. Each Trigger's sink URI is ``/<function>-<trigger>`` and a Broker's is
``/broker-<name>``; this app stores what arrives there in the queue the dev broker uses for the same
trigger, ``t.<namespace>.<function>-<trigger>.dlq`` (``t.<namespace>.broker-<name>.dlq`` for a Broker), as the
same binary-mode message (``ce-*`` AMQP headers, content type, data). So ``kfaas dlq list|show`` reads dead
letters from a cluster as from compose, and ``kfaas dlq redrive --to-subscriber`` sends them back.

Answers: 202 once RabbitMQ confirmed the message (Knative then forgets the event), 400 JSON for a request
that is not a CloudEvent (or whose id or content type is longer than AMQP's 255 bytes), 404 JSON for a path
that is no trigger's, 413/408/431 JSON over the request limits of ``kfaas.base.asgi`` (the runtime's) or
413 over RabbitMQ's ``max_message_size``, 503 while RabbitMQ is unreachable (Knative retries a 5xx from a
dead-letter sink, then logs and drops the event). ``GET /health/liveness``
and ``/health/readiness`` (503 without RabbitMQ).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kfaas.base.amqp import connect_robust
from kfaas.base.asgi import Limits
from kfaas.base.inflight import InFlight
from kfaas.broker._names import PREFIX, QUORUM, connection_ready, event_to_amqp, triggers_of
from kfaas.spec import options as _cliopts

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractRobustConnection

    from kfaas.spec import AppSpec

__all__ = ["DeadLetterQueue", "DeadLetterSink", "RabbitMQUnavailable", "configure", "queues_of", "run"]

log = logging.getLogger("kfaas.broker.deadletters")

BROKER_PREFIX = "broker-"
CONNECT_TIMEOUT = 5.0
CONFIRM_TIMEOUT = 10.0


class RabbitMQUnavailable(RuntimeError):
    """No connection to RabbitMQ, or no confirm in time: the sink answers 503."""


@dataclass(frozen=True)
class DeadLetterQueue:
    """Where the dead letters of one sink path go: ``name`` is the path without its slash."""

    name: str
    namespace: str

    @property
    def dead_letter_queue(self) -> str:
        # the dev broker's name for a trigger's dead letters (TriggerRef.dead_letter_queue)
        return f"t.{self.namespace}.{self.name}.dlq"


def queues_of(app: AppSpec, namespace: str) -> dict[str, DeadLetterQueue]:
    """Sink paths (``/<function>-<trigger>``, ``/broker-<name>``) and their queues."""
    names = [ref.name for ref in triggers_of(app, namespace) if ref.delivery.dead_letter]
    names += [BROKER_PREFIX + broker for broker in app.brokers]
    return {f"/{name}": DeadLetterQueue(name, namespace) for name in names}


class DeadLetterSink:
    """ASGI app storing the dead letters Knative POSTs in RabbitMQ (see the module docstring)."""

    def __init__(
        self, queues: dict[str, DeadLetterQueue], amqp_url: str, limits: Limits | None = None
    ) -> None:
        self.queues = queues
        self.amqp_url = amqp_url
        self.limits = limits or Limits()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._declared: set[str] = set()
        self._lock = asyncio.Lock()
        self._in_flight = InFlight()
        self._stopping = False

    # -- RabbitMQ ------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return connection_ready(self._connection, self._stopping)

    async def channel(self) -> AbstractChannel:
        """The confirming channel, connecting first if needed (raises RabbitMQUnavailable)."""
        import aio_pika

        if self._stopping:
            raise RabbitMQUnavailable("stopping")
        if self._channel is not None and self.ready and not self._channel.is_closed:
            return self._channel
        async with self._lock:
            try:
                if self._connection is None or self._connection.is_closed:
                    self._connection = await connect_robust(self.amqp_url, timeout=CONNECT_TIMEOUT)
                    self._channel = None
                    self._declared.clear()
                if not self._connection.connected.is_set():
                    raise RabbitMQUnavailable("reconnecting to RabbitMQ")
                if self._channel is None or self._channel.is_closed:
                    self._channel = await self._connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
            except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
                raise RabbitMQUnavailable(f"cannot reach RabbitMQ: {exc!r}") from exc
            return self._channel

    async def store(
        self, queue: DeadLetterQueue, headers: dict[str, Any], content_type: str | None, body: bytes
    ) -> None:
        """Publish one dead letter to its queue and wait for RabbitMQ's confirm."""
        import aio_pika

        channel = await self.channel()
        try:
            if queue.dead_letter_queue not in self._declared:
                await channel.declare_queue(queue.dead_letter_queue, durable=True, arguments=QUORUM)
                self._declared.add(queue.dead_letter_queue)
            message = aio_pika.Message(
                body,
                headers=headers,
                content_type=content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(headers.get(PREFIX + "id", "")),
                timestamp=datetime.now(UTC),
            )
            await asyncio.wait_for(
                channel.default_exchange.publish(
                    message, routing_key=queue.dead_letter_queue, mandatory=True
                ),
                CONFIRM_TIMEOUT,
            )
        except (TimeoutError, OSError, RuntimeError, aio_pika.exceptions.AMQPError) as exc:
            self._channel = None  # a failed publish can leave the channel closed: open a new one next time
            self._declared.discard(queue.dead_letter_queue)
            raise RabbitMQUnavailable(f"RabbitMQ did not confirm the dead letter: {exc!r}") from exc

    # -- ASGI ----------------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            with self._in_flight:
                await self._http(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:  # connect early; a RabbitMQ that is down now is retried on the next request
                    await self.channel()
                except RabbitMQUnavailable as exc:
                    log.warning("%s", exc)
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"].rstrip("/") or "/"
        if path in ("/health/readiness", "/health/liveness"):
            ok = path.endswith("liveness")
            if not ok:
                try:
                    await self.channel()
                    ok = True
                except RabbitMQUnavailable:
                    ok = False
            await _json(send, 200 if ok else 503, {"status": "ok" if ok else "not connected to RabbitMQ"})
            return
        queue = self.queues.get(path)
        if queue is None:
            known = ", ".join(self.queues) or "none"
            await _json(send, 404, {"error": f"no dead-letter sink at {path} (paths: {known})"})
        elif scope["method"] != "POST":
            await _json(send, 405, {"error": "POST dead-lettered CloudEvents here"}, allow="POST")
        else:
            await self._take(queue, scope, receive, send)

    async def _take(self, queue: DeadLetterQueue, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Read, check and store the dead letters of one request; answer 202, or why not."""
        from kfaas.base.asgi import decode_headers, read_body, refusal, send_answer
        from kfaas.base.errors import InvalidEvent
        from kfaas.broker._ingress import check_amqp_limits, rabbitmq_refusal
        from kfaas.events import parse_events

        try:
            self.limits.check_head(scope["headers"])
            headers = decode_headers(scope["headers"], lambda n: n.startswith(PREFIX) or n == "content-type")
            body = await read_body(receive, self.limits.max_body, self.limits.body_timeout)
            events = parse_events(headers, body)
            binary = "ce-specversion" in headers
            for event in events:
                attributes = {PREFIX + key: value for key, value in event.get_attributes().items()}
                content_type = headers.get("content-type") if binary else event.get("datacontenttype")
                check_amqp_limits(attributes, content_type)
        except InvalidEvent as exc:  # refusals over a limit keep their status (413, 408, 431)
            await send_answer(send, *refusal(exc))
            return
        except ConnectionAbortedError:
            return
        try:
            if binary:
                # binary mode, validated above: keep the request's own attributes and bytes
                attributes = {k: v for k, v in headers.items() if k.startswith(PREFIX)}
                await self.store(queue, attributes, headers.get("content-type"), body)
            else:
                for event in events:
                    await self.store(queue, *event_to_amqp(event))
        except RabbitMQUnavailable as exc:
            refused = rabbitmq_refusal(exc)
            log.warning("dead letter for %s not stored: %s", queue.name, refused or exc)
            if refused is not None:
                await send_answer(send, *refusal(refused))
            else:
                await _json(send, 503, {"error": "RabbitMQ is unavailable, retry later"})
            return
        for event in events:
            log.info(
                "dead letter %s for %s: code %s from %s",
                event.get("id"),
                queue.name,
                event.get("knativeerrorcode"),
                event.get("knativeerrordest"),
            )
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    # -- kfaas.base.server.DrainableApp ------------------------------------------------------------------
    async def drain(self, timeout: float) -> bool:
        return await self._in_flight.wait_idle(timeout)

    async def shutdown(self) -> None:
        self._stopping = True
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._connection = None
        self._channel = None


async def _json(send: Any, status: int, payload: dict[str, Any], allow: str | None = None) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if allow:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- CLI ------------------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    _cliopts.functions_folder(parser)
    _cliopts.amqp_url(parser)
    _cliopts.namespace(parser)
    parser.add_argument("--port", type=int, default=int(env("PORT", "8080")), help="port (env PORT)")
    parser.add_argument("--host", default=env("HOST", "0.0.0.0"), help="address (env HOST)")


def run(args: argparse.Namespace) -> int:
    from kfaas.base import server as _server
    from kfaas.base.log import configure_logging

    configure_logging()
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika").setLevel(logging.ERROR)
    if not _cliopts.has_amqp_url("dead-letters", args.amqp_url):
        return 2
    app = _cliopts.load_functions("dead-letters", args.functions)
    if app is None:
        return 2
    try:
        limits = Limits.from_env()
    except ValueError as exc:
        sys.stderr.write(f"kfaas dead-letters: {exc}\n")
        return 2
    try:
        claim = _server.PortClaim(args.host, args.port)
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return 1
    sink = DeadLetterSink(queues_of(app, args.namespace), args.amqp_url, limits)
    log.info("dead-letter sink on %s:%d for %s", args.host, args.port, ", ".join(sink.queues))
    try:
        _server.run(sink, args.host, args.port, claim=claim)
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return 1
    return 0
