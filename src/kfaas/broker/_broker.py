"""The dev broker: ingress, topology, and the dispatcher of every trigger."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ExchangeType,
)
from cloudevents.http import CloudEvent

from kfaas.base.asgi import Limits
from kfaas.base.errors import InvalidEvent
from kfaas.broker._claims import Claims
from kfaas.broker._clock import Clock, SystemClock
from kfaas.broker._connect import connect
from kfaas.broker._http import HttpClient, Response
from kfaas.broker._ingress import Ingress
from kfaas.broker._names import (
    ERROR_CODE,
    ERROR_DATA,
    ERROR_DEST,
    PREFIX,
    QUORUM,
    BrokerUnavailable,
    TriggerRef,
    amqp_headers_to_http,
    broker_exchange,
    connection_ready,
    error_data,
    event_to_amqp,
    triggers_of,
)
from kfaas.broker._sources import build_sources
from kfaas.events import STRUCTURED, parse_events

if TYPE_CHECKING:
    from kfaas.spec import AppSpec

__all__ = ["BrokerUnavailable", "DevBroker", "InvalidEvent"]

log = logging.getLogger("kfaas.broker")

# Knative's data-plane contract: these answers are retried, other 4xx (and 1xx/3xx) are final.
RETRYABLE_STATUS = frozenset({404, 409, 429})
CODE_CONNECTION_ERROR = 502  # no answer at all: connection refused or reset
CODE_TIMEOUT = 504  # no answer within the attempt's timeout
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


class DevBroker:
    """Knative RabbitMQ broker semantics for one application, on one RabbitMQ connection.

    ``resolve_url(function_name)`` gives the URL a function's events are POSTed to.
    """

    def __init__(
        self,
        app: AppSpec,
        amqp_url: str,
        resolve_url: Callable[[str], str],
        *,
        namespace: str = "default",
        clock: Clock | None = None,
        publish_timeout: float = 5.0,
        sources: bool = True,
        limits: Limits | None = None,
    ) -> None:
        self.app = app
        self.amqp_url = amqp_url
        self.resolve_url = resolve_url
        self.namespace = namespace
        self.clock: Clock = clock or SystemClock()
        self.publish_timeout = publish_timeout
        self.triggers = triggers_of(app, namespace)
        self.brokers = sorted({*app.brokers, *(t.trigger.broker for t in self.triggers)})
        self._with_sources = sources
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._dead_letter_channel: AbstractChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: HttpClient | None = None
        self._stopping = False
        self._sources: list[Any] = []
        self.ingress = Ingress(self, limits)

    # -- lifecycle -----------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Connect and claim the namespace and the source queues (kfaas.broker._claims); once is enough.

        Raises ``RabbitMQUnreachable`` naming the URL, or ``BrokerConflict`` naming the broker (or the
        other consumer) that holds what this one needs. ``start`` connects when this was not called.
        """
        if self._connection is not None:
            return
        connection = await connect(self.amqp_url, name=f"kfaas-broker-{self.namespace}")
        try:
            await Claims(connection, self.namespace).take(self._source_queues())
        except BaseException:
            await connection.close()
            raise
        self._connection = connection

    def _source_queues(self) -> dict[str, str]:
        from kfaas.spec import QueueSource

        if not self._with_sources:
            return {}
        return {
            s.queue: f"{fn.name}-{s.name}"
            for fn in self.app.functions
            for s in fn.sources
            if isinstance(s, QueueSource)
        }

    async def start(self) -> None:
        """Connect, declare the topology, start consuming every trigger's queue and start the sources."""
        self._stopping = False
        await self.connect()
        assert self._connection is not None
        self._http = HttpClient()
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        for broker in self.brokers:
            self._exchanges[broker] = await self._publish_channel.declare_exchange(
                broker_exchange(self.namespace, broker), ExchangeType.HEADERS, durable=True
            )
        self._dead_letter_channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        for ref in self.triggers:
            await self._start_trigger(ref)
        if self._with_sources:
            self._sources = build_sources(self)
            for source in self._sources:
                await source.start()
        log.info(
            "dev broker ready: brokers %s, %d trigger(s), %d source(s)",
            ", ".join(self.brokers),
            len(self.triggers),
            len(self._sources),
        )

    async def stop(self) -> None:
        """Stop consuming, let in-flight deliveries end (unacked ones return to their queue), close."""
        if self._connection is None:
            return
        self._stopping = True
        for source in self._sources:
            await source.stop()
        self._sources = []
        for queue, tag in self._consumers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), 2.0)
        self._consumers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        if self._connection is not None:
            await self._connection.close()
        self._connection = None

    async def __aenter__(self) -> DevBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ready(self) -> bool:
        """Connected to RabbitMQ right now (false while the robust connection is reconnecting)."""
        return connection_ready(self._connection, self._stopping)

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BrokerUnavailable("the dev broker is not started")
        return self._connection

    # -- publishing ----------------------------------------------------------------------------------
    async def publish(self, broker: str, event: CloudEvent) -> None:
        """Send one event to a broker; returns once RabbitMQ confirmed it (raises BrokerUnavailable)."""
        exchange = self._exchanges.get(broker)
        if exchange is None:
            raise KeyError(broker)
        headers, content_type, body = event_to_amqp(event)
        await self.publish_amqp(broker, headers, content_type, body)

    async def publish_amqp(
        self, broker: str, headers: dict[str, Any], content_type: str | None, body: bytes
    ) -> None:
        """Send an event already in binary content mode (``ce-`` headers, content type, data)."""
        exchange = self._exchanges.get(broker)
        if exchange is None:
            raise KeyError(broker)
        # straight to the aiormq channel: an aio_pika.Message per event cost more than the frames it becomes
        properties = aiormq.spec.Basic.Properties(
            content_type=content_type,
            delivery_mode=PERSISTENT,
            headers=headers,
            message_id=str(headers.get(PREFIX + "id", "")),
        )
        await self._confirmed(self._basic_publish(exchange.name, properties, body))

    async def _basic_publish(
        self, exchange: str, properties: aiormq.spec.Basic.Properties, body: bytes
    ) -> None:
        assert self._publish_channel is not None
        # a channel RabbitMQ closed (it does so on a message over its max_message_size) is reopened by
        # aio-pika in the background: wait for that rather than publish on the closed one
        await self._publish_channel.ready()
        channel = await self._publish_channel.get_underlay_channel()
        await channel.basic_publish(
            body, exchange=exchange, routing_key="", properties=properties, mandatory=True
        )

    async def _confirmed(self, publish: Awaitable[Any]) -> None:
        if not self.ready:
            if asyncio.iscoroutine(publish):
                publish.close()
            raise BrokerUnavailable("not connected to RabbitMQ")
        try:
            await asyncio.wait_for(publish, self.publish_timeout)
        except (
            TimeoutError,
            aio_pika.exceptions.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,
            ConnectionError,
            RuntimeError,
        ) as exc:
            raise BrokerUnavailable(f"RabbitMQ did not confirm the publish: {exc!r}") from exc

    # -- triggers ------------------------------------------------------------------------------------
    async def _start_trigger(self, ref: TriggerRef) -> None:
        channel = await self.connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=ref.trigger.parallelism)
        queue = await channel.declare_queue(ref.queue, durable=True, arguments=QUORUM)
        await queue.bind(ref.exchange, routing_key="", arguments=ref.binding_arguments)
        if ref.delivery.dead_letter:
            await channel.declare_queue(ref.dead_letter_queue, durable=True, arguments=QUORUM)

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                await self._deliver(ref, message)
            finally:
                if task is not None:
                    self._tasks.discard(task)

        tag = await queue.consume(on_message, no_ack=False)
        self._consumers.append((queue, tag))

    async def _deliver(self, ref: TriggerRef, message: AbstractIncomingMessage) -> None:
        """Deliver with retries (the next event of a parallelism-1 trigger waits), then ack or dead-letter."""
        assert self._http is not None
        url = self.resolve_url(ref.function.name)
        headers = amqp_headers_to_http(message.headers, message.content_type)
        headers["prefer"] = "reply"
        delivery = ref.delivery
        attempt = 0
        while True:
            code, body, retryable, response = await self._attempt(url, headers, message.body, ref)
            if response is not None and 200 <= code < 300:
                if code == 200:
                    await self._reply(ref, response)
                await _ack(message)
                return
            if retryable and attempt < delivery.retry:
                attempt += 1
                delay = delivery.delay_for(attempt)
                log.info(
                    "trigger %s: event %s failed (%s), retry %d/%d in %.3fs",
                    ref.name,
                    headers.get("ce-id"),
                    code,
                    attempt,
                    delivery.retry,
                    delay,
                )
                await self.clock.sleep(delay)
                continue
            break
        log.warning(
            "trigger %s: event %s failed for good (%s) after %d attempt(s)",
            ref.name,
            headers.get("ce-id"),
            code,
            attempt + 1,
        )
        if delivery.dead_letter:
            await self._dead_letter(ref, message, url, code, body)
        await _ack(message)

    async def _attempt(
        self, url: str, headers: dict[str, str], body: bytes, ref: TriggerRef
    ) -> tuple[int, bytes, bool, Response | None]:
        assert self._http is not None
        try:
            response = await self._http.post(url, headers, body, ref.attempt_timeout)
        except TimeoutError:
            return CODE_TIMEOUT, f"timeout: no answer within {ref.attempt_timeout:g}s".encode(), True, None
        except (OSError, ValueError) as exc:
            return CODE_CONNECTION_ERROR, f"connection error: {exc!r}".encode(), True, None
        code = response.status
        return code, response.body, code in RETRYABLE_STATUS or code >= 500, response

    async def _reply(self, ref: TriggerRef, response: Response) -> None:
        """A 200 answer carrying a CloudEvent goes back to the trigger's broker."""
        if "ce-specversion" not in response.headers and not response.headers.get(
            "content-type", ""
        ).startswith(STRUCTURED):
            return
        try:
            events = parse_events(response.headers, response.body)
        except InvalidEvent as exc:
            log.warning("trigger %s: the reply is not a valid CloudEvent, dropped: %s", ref.name, exc)
            return
        for event in events:
            await self.publish(ref.trigger.broker, event)

    async def _dead_letter(
        self, ref: TriggerRef, message: AbstractIncomingMessage, url: str, code: int, body: bytes
    ) -> None:
        assert self._dead_letter_channel is not None
        headers = dict(message.headers or {})
        headers[PREFIX + ERROR_DEST] = url
        headers[PREFIX + ERROR_CODE] = str(code)
        headers[PREFIX + ERROR_DATA] = error_data(body)
        dead = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            timestamp=self.clock.now(),
        )
        await self._confirmed(
            self._dead_letter_channel.default_exchange.publish(
                dead, routing_key=ref.dead_letter_queue, mandatory=True
            )
        )

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _ack(message: AbstractIncomingMessage) -> None:
    """Ack after the outcome is safe; if the channel died meanwhile, RabbitMQ redelivers the message."""
    try:
        await message.ack()
    except Exception as exc:  # the channel or connection is gone: nothing to undo, it comes back
        log.warning("ack failed, the message will be redelivered: %r", exc)
