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
    RETRIES,
    BrokerUnavailable,
    TriggerRef,
    amqp_headers_to_http,
    broker_exchange,
    connection_ready,
    error_data,
    event_to_amqp,
    own_headers,
    triggers_of,
    wait_arguments,
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
        self._control_channel: AbstractChannel | None = None  # dead letters and retries: confirmed, mandatory
        self._declared: set[str] = set()
        self._dispatchers: list[_Dispatcher] = []
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
        self._control_channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
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
        for dispatcher in self._dispatchers:
            await dispatcher.stop()
        self._dispatchers.clear()
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
        dispatcher = _Dispatcher(self, ref, queue)
        self._dispatchers.append(dispatcher)
        if ref.fifo:
            # declared now, so that a retry left waiting by an earlier run is seen before anything else
            for name in ref.wait_queues:
                await self._declare_wait_queue(ref, name)
            dispatcher.due = await channel.declare_queue(ref.due_queue, durable=True, arguments=QUORUM)
            dispatcher.in_retry = await dispatcher.count_waiting()  # before anything is consumed
            await dispatcher.consume_due()
            if dispatcher.in_retry:
                log.info("trigger %s: an event is waiting for its retry; later events wait for it", ref.name)
                return
        await dispatcher.resume()

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, ref: TriggerRef, message: AbstractIncomingMessage, dispatcher: _Dispatcher, from_due: bool
    ) -> None:
        """One attempt; then ack, send the event to wait for its next retry, or dead-letter it.

        A retrying event does not stay in the dispatcher while it waits: it is published to the trigger's
        wait queue for that delay (with its retry count in the ``x-kfaas-retries`` header) and acked, so its
        slot goes to the next event and a restart of the broker does not start its retries over. A FIFO
        trigger (parallelism 1) stops taking events from its queue until the retried event is done.
        """
        assert self._http is not None
        url = self.resolve_url(ref.function.name)
        headers = amqp_headers_to_http(message.headers, message.content_type)
        headers["prefer"] = "reply"
        delivery = ref.delivery
        retries = _retries(message)
        code, body, retryable, response = await self._attempt(url, headers, message.body, ref)
        if response is not None and 200 <= code < 300:
            if code == 200:
                await self._until_confirmed(message, lambda: self._reply(ref, response))
            await _ack(message)
            await dispatcher.done(from_due)
            return
        if retryable and retries < delivery.retry:
            retry = retries + 1
            log.info(
                "trigger %s: event %s failed (%s), retry %d/%d in %.3fs",
                ref.name,
                headers.get("ce-id"),
                code,
                retry,
                delivery.retry,
                ref.wait_ms(retry) / 1000,
            )
            await self._until_confirmed(message, lambda: self._to_wait_queue(ref, message, retry))
            if ref.fifo and not from_due:
                dispatcher.in_retry += 1
                await dispatcher.pause()  # before the ack: the next event must not be delivered meanwhile
            await _ack(message)
            return
        log.warning(
            "trigger %s: event %s failed for good (%s) after %d attempt(s)",
            ref.name,
            headers.get("ce-id"),
            code,
            retries + 1,
        )
        if delivery.dead_letter:
            await self._until_confirmed(message, lambda: self._dead_letter(ref, message, url, code, body))
        await _ack(message)
        await dispatcher.done(from_due)

    async def _until_confirmed(
        self, message: AbstractIncomingMessage, publish: Callable[[], Awaitable[None]]
    ) -> None:
        """Retry ``publish`` while RabbitMQ does not confirm it, holding the message (its order too).

        If the connection is gone, so is the delivery: RabbitMQ delivers the unacked message again, and
        this stops trying.
        """
        delay = 0.1
        while True:
            try:
                await publish()
                return
            except BrokerUnavailable as exc:
                if self._stopping or message.channel.is_closed:
                    raise
                log.warning("publish not confirmed, retrying in %.1fs: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _declare_wait_queue(self, ref: TriggerRef, name: str) -> None:
        if name in self._declared:
            return
        assert self._control_channel is not None
        ms = ref.wait_queues[name]
        await self._control_channel.declare_queue(
            name, durable=True, arguments=wait_arguments(ms, ref.retry_target)
        )
        self._declared.add(name)

    async def _to_wait_queue(self, ref: TriggerRef, message: AbstractIncomingMessage, retry: int) -> None:
        assert self._control_channel is not None
        name = ref.wait_queue(ref.wait_ms(retry))
        try:
            await self._declare_wait_queue(ref, name)
        except (
            aio_pika.exceptions.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,
            RuntimeError,
        ) as exc:
            raise BrokerUnavailable(f"cannot declare {name}: {exc!r}") from exc
        waiting = aio_pika.Message(
            message.body,
            headers={**own_headers(message.headers), RETRIES: retry},
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            timestamp=message.timestamp,
        )
        await self._confirmed(
            self._control_channel.default_exchange.publish(waiting, routing_key=name, mandatory=True)
        )

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
        assert self._control_channel is not None
        headers = own_headers(message.headers)
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
            self._control_channel.default_exchange.publish(
                dead, routing_key=ref.dead_letter_queue, mandatory=True
            )
        )

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _retries(message: AbstractIncomingMessage) -> int:
    value: Any = (message.headers or {}).get(RETRIES, 0)
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


class _Dispatcher:
    """The consumers of one trigger: its queue and, for a FIFO trigger, its due queue.

    A FIFO trigger's queue is consumed only while none of its events waits for a retry: the waiting event
    comes back through the due queue, and the trigger goes on with its queue once that event is done.
    """

    def __init__(self, broker: DevBroker, ref: TriggerRef, queue: AbstractQueue) -> None:
        self.broker = broker
        self.ref = ref
        self.queue = queue
        self.due: AbstractQueue | None = None
        self.in_retry = 0  # FIFO: events between a failed attempt and their outcome (the queue waits)
        self._tag: str | None = None
        self._due_tag: str | None = None
        self._lock = asyncio.Lock()

    def _handler(self, from_due: bool) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            self.broker._track()
            try:
                await self.broker._deliver(self.ref, message, self, from_due)
            except BrokerUnavailable as exc:  # unacked, the event comes back once RabbitMQ is
                log.warning("trigger %s: RabbitMQ went away mid-delivery: %s", self.ref.name, exc)

        return on_message

    async def resume(self) -> None:
        async with self._lock:
            if self._tag is None and not self.broker._stopping:
                self._tag = await self.queue.consume(self._handler(False), no_ack=False)

    async def pause(self) -> None:
        async with self._lock:
            if self._tag is not None:
                tag, self._tag = self._tag, None
                await self.queue.cancel(tag)

    async def consume_due(self) -> None:
        assert self.due is not None
        self._due_tag = await self.due.consume(self._handler(True), no_ack=False)

    async def count_waiting(self) -> int:
        """Events of this FIFO trigger in its wait queues and its due queue (read before consuming)."""
        assert self.broker._control_channel is not None
        channel = self.broker._control_channel
        count = 0
        for name in [*self.ref.wait_queues, self.ref.due_queue]:
            declared = await channel.declare_queue(name, passive=True)
            count += declared.declaration_result.message_count or 0
        return count

    async def done(self, from_due: bool) -> None:
        """An event reached its outcome; once no event of a FIFO trigger is in retry, it takes the next."""
        if not from_due:
            return
        self.in_retry = max(0, self.in_retry - 1)
        if not self.in_retry:
            await self.resume()

    async def stop(self) -> None:
        for queue, tag in ((self.queue, self._tag), (self.due, self._due_tag)):
            if queue is not None and tag is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(queue.cancel(tag), 2.0)
        self._tag = self._due_tag = None


async def _ack(message: AbstractIncomingMessage) -> None:
    """Ack after the outcome is safe; if the channel died meanwhile, RabbitMQ redelivers the message."""
    try:
        await message.ack()
    except Exception as exc:  # the channel or connection is gone: nothing to undo, it comes back
        log.warning("ack failed, the message will be redelivered: %r", exc)
