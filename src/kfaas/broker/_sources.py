"""Event sources of the dev broker: the queue source (RabbitmqSource), the ping source (PingSource) and the
bucket source (S3 event notifications from an object store, through RabbitMQ)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http

from kfaas.broker._clock import Clock
from kfaas.broker._names import PREFIX, QUORUM, BrokerUnavailable, event_from_amqp
from kfaas.broker._s3 import BadRecord, bucket_event, parse_notification
from kfaas.spec import AppSpec, BucketSource, FunctionSpec, PingSource, QueueSource

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

__all__ = [
    "ERROR_REASON",
    "PING_TYPE",
    "QUEUE_TYPE",
    "BucketSourceRunner",
    "PingSourceRunner",
    "QueueSourceRunner",
    "SourceHost",
    "build_sources",
    "queue_event",
]

log = logging.getLogger("kfaas.broker.sources")


class SourceHost(Protocol):
    """What a source needs of the broker it feeds (the dev broker is one): names, time, a connection, publish."""

    app: AppSpec
    namespace: str
    clock: Clock

    @property
    def connection(self) -> AbstractRobustConnection: ...

    async def publish(self, broker: str, event: CloudEvent) -> None: ...


QUEUE_TYPE = "dev.knative.rabbitmq.event"
PING_TYPE = "dev.knative.sources.ping"


def build_sources(broker: SourceHost) -> list[QueueSourceRunner | PingSourceRunner | BucketSourceRunner]:
    runners: list[QueueSourceRunner | PingSourceRunner | BucketSourceRunner] = []
    for fn in broker.app.functions:
        for source in fn.sources:
            if isinstance(source, QueueSource):
                runners.append(QueueSourceRunner(broker, fn, source))
            elif isinstance(source, BucketSource):
                runners.append(BucketSourceRunner(broker, fn, source))
            elif isinstance(source, PingSource):
                runners.append(PingSourceRunner(broker, fn, source))
            # a stream source has a consumer of its own (kfaas stream run): the broker only feeds it
    return runners


def queue_event(
    namespace: str, name: str, queue: str, message: AbstractIncomingMessage | aio_pika.Message
) -> CloudEvent:
    """The CloudEvent of one queue message, as RabbitmqSource makes it.

    A message that is already a CloudEvent (structured body, or binary ``ce-`` headers) keeps its
    attributes; any other body becomes the data of a ``dev.knative.rabbitmq.event``.
    """
    headers = dict(message.headers or {})
    content_type = message.content_type or ""
    if PREFIX + "specversion" in headers:
        with contextlib.suppress(GenericException, ValueError):
            return event_from_amqp(headers, message.content_type, message.body)
    if content_type.startswith("application/cloudevents+json") or _looks_structured(message.body):
        with contextlib.suppress(GenericException, ValueError):
            return from_http({"content-type": "application/cloudevents+json"}, message.body)
    message_id = message.message_id
    attributes: dict[str, Any] = {
        "type": QUEUE_TYPE,
        "source": f"/apis/v1/namespaces/{namespace}/rabbitmqsources/{name}#{queue}",
        "id": message_id or str(uuid.uuid4()),
    }
    if message_id:
        attributes["subject"] = message_id
    if content_type:
        attributes["datacontenttype"] = content_type
    if isinstance(message.timestamp, datetime):
        stamp = message.timestamp if message.timestamp.tzinfo else message.timestamp.replace(tzinfo=UTC)
        attributes["time"] = stamp.isoformat()
    return CloudEvent(attributes, bytes(message.body))


def _looks_structured(body: bytes) -> bool:
    if not body.lstrip().startswith(b"{"):
        return False
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and all(parsed.get(k) for k in ("specversion", "id", "source", "type"))


class _QueueConsumer:
    """What a source that consumes one RabbitMQ queue holds: its channel, queue and consumer tag."""

    def __init__(self) -> None:
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None

    async def stop(self) -> None:
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._tag), 2.0)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.close(), 2.0)
        self._queue = self._channel = self._tag = None


class QueueSourceRunner(_QueueConsumer):
    """Consumes an existing queue; each message is acked only after the broker confirmed its event."""

    def __init__(self, broker: SourceHost, fn: FunctionSpec, spec: QueueSource) -> None:
        super().__init__()
        self.broker = broker
        self.spec = spec
        self.name = f"{fn.name}-{spec.name}"

    async def start(self) -> None:
        connection = self.broker.connection
        self._channel = await connection.channel()
        await self._channel.set_qos(prefetch_count=self.spec.parallelism)
        try:
            self._queue = await self._channel.declare_queue(self.spec.queue, durable=True, arguments=QUORUM)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            # the queue exists with other arguments (e.g. a classic queue): use it as it is
            self._channel = await connection.channel()
            await self._channel.set_qos(prefetch_count=self.spec.parallelism)
            self._queue = await self._channel.declare_queue(self.spec.queue, passive=True)
        self._tag = await self._queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        event = queue_event(self.broker.namespace, self.name, self.spec.queue, message)
        delivery = self.spec.delivery
        attempt = 0
        while True:
            try:
                await self.broker.publish(self.spec.broker, event)
            except BrokerUnavailable as exc:
                if attempt < delivery.retry:
                    attempt += 1
                    await self.broker.clock.sleep(delivery.delay_for(attempt))
                    continue
                log.warning(
                    "source %s: event %s not accepted by the broker, requeued: %s",
                    self.name,
                    event["id"],
                    exc,
                )
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
                return
            break
        with contextlib.suppress(Exception):
            await message.ack()


class PingSourceRunner:
    """Sends ``dev.knative.sources.ping`` events on a cron schedule, in the source's time zone."""

    def __init__(self, broker: SourceHost, fn: FunctionSpec, spec: PingSource) -> None:
        self.broker = broker
        self.spec = spec
        self.name = f"{fn.name}-{spec.name}"
        self._task: asyncio.Task[None] | None = None

    def event(self, when: datetime) -> CloudEvent:
        attributes = {
            "type": PING_TYPE,
            "source": f"/apis/v1/namespaces/{self.broker.namespace}/pingsources/{self.name}",
            "id": str(uuid.uuid4()),
            "time": when.astimezone(UTC).isoformat(),
            "datacontenttype": self.spec.content_type,
        }
        data = self.spec.data
        if data is None:
            return CloudEvent(attributes, None)
        if isinstance(data, str):
            return CloudEvent(attributes, data.encode())
        return CloudEvent(attributes, json.dumps(data).encode())

    def next_fire(self, after: datetime) -> datetime:
        from croniter import croniter

        local = after.astimezone(ZoneInfo(self.spec.timezone))
        fire: datetime = croniter(self.spec.schedule, local).get_next(datetime)
        return fire

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ping-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        clock = self.broker.clock
        while True:
            fire = self.next_fire(clock.now())
            while (wait := (fire - clock.now()).total_seconds()) > 0:
                await clock.sleep(wait)
            try:
                await self.broker.publish(self.spec.broker, self.event(fire))
            except BrokerUnavailable as exc:
                log.warning("ping source %s: the %s event was not sent: %s", self.name, fire.isoformat(), exc)


ERROR_REASON = "x-kfaas-error"  # header of a bucket source's dead letter: why it could not become an event
ERROR_SOURCE = "x-kfaas-source"  # header of a bucket source's dead letter: the source that refused it


class BucketSourceRunner(_QueueConsumer):
    """S3 event notifications → CloudEvents: consumes its own quorum queue bound to the store's exchange.

    Queue ``s.<namespace>.<function>-<name>``, bound to the fanout exchange the store publishes to (declared
    here when missing). Each record about the source's bucket, of its kinds of change and matching its
    prefix and suffix becomes one event on the broker; others are acked and dropped (the store's
    notifications are server-wide). ``s3:TestEvent`` is ignored. A message that is not a notification, or
    a record without a bucket, key, event name or time, goes to ``s.<namespace>.<function>-<name>.dlq``
    as it came, with the reason in the header ``x-kfaas-error``. The message is acked only after every
    event was confirmed by the broker (or the dead letter by RabbitMQ): a notification is never lost, and
    one sent again gives events with the same ids.
    """

    def __init__(self, broker: SourceHost, fn: FunctionSpec, spec: BucketSource) -> None:
        super().__init__()
        self.broker = broker
        self.spec = spec
        self.name = f"{fn.name}-{spec.name}"
        self.queue_name = f"s.{broker.namespace}.{self.name}"
        self.dead_letter_queue = f"{self.queue_name}.dlq"

    async def start(self) -> None:
        connection = self.broker.connection
        setup = await connection.channel()
        try:
            await setup.declare_exchange(self.spec.exchange, aio_pika.ExchangeType.FANOUT, durable=True)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            # declared otherwise by its owner (e.g. as a topic exchange): bind to it as it is
            setup = await connection.channel()
        await setup.declare_queue(self.dead_letter_queue, durable=True, arguments=QUORUM)
        queue = await setup.declare_queue(self.queue_name, durable=True, arguments=QUORUM)
        # '#' for a topic exchange; fanout and direct-with-empty-key ignore or match it as the store sends
        await queue.bind(self.spec.exchange, routing_key="#")
        with contextlib.suppress(Exception):
            await queue.bind(self.spec.exchange, routing_key="")
        await setup.close()
        self._channel = await connection.channel()
        await self._channel.set_qos(prefetch_count=self.spec.parallelism)
        self._queue = await self._channel.declare_queue(self.queue_name, passive=True)
        self._tag = await self._queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            notification = parse_notification(message.body)
        except BadRecord as exc:
            await self._settle(message, [], [(message.body, str(exc))])
            return
        if notification.test_event:
            log.info("bucket source %s: the store's s3:TestEvent, ignored", self.name)
            await self._settle(message, [], [])
            return
        events: list[CloudEvent] = []
        bad: list[tuple[bytes, str]] = []
        for index, record in enumerate(notification.records):
            try:
                event = bucket_event(record, index, self.spec)
            except BadRecord as exc:
                bad.append((json.dumps({"Records": [record]}).encode(), str(exc)))
                continue
            if event is not None:
                events.append(event)
        await self._settle(message, events, bad)

    async def _settle(
        self, message: AbstractIncomingMessage, events: list[CloudEvent], bad: list[tuple[bytes, str]]
    ) -> None:
        """Publish the events and dead letters, then ack; requeue when the broker or RabbitMQ refuse."""
        delivery = self.spec.delivery
        attempt = 0
        while True:
            try:
                for event in events:
                    await self.broker.publish(self.spec.broker, event)
                for body, reason in bad:
                    await self._dead_letter(body, reason)
            except (TimeoutError, BrokerUnavailable, aio_pika.exceptions.AMQPError) as exc:
                if attempt < delivery.retry:
                    attempt += 1
                    await self.broker.clock.sleep(delivery.delay_for(attempt))
                    continue
                log.warning("bucket source %s: a notification not accepted, requeued: %s", self.name, exc)
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
                return
            break
        for _, reason in bad:
            log.warning(
                "bucket source %s: dead-lettered to %s: %s", self.name, self.dead_letter_queue, reason
            )
        with contextlib.suppress(Exception):
            await message.ack()

    async def _dead_letter(self, body: bytes, reason: str) -> None:
        if self._channel is None:
            raise BrokerUnavailable(f"bucket source {self.name} is stopped")
        dead = aio_pika.Message(
            body,
            content_type="application/json",
            headers={ERROR_REASON: reason[:1024], ERROR_SOURCE: self.name},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            timestamp=datetime.now(UTC),
        )
        await asyncio.wait_for(
            self._channel.default_exchange.publish(dead, routing_key=self.dead_letter_queue), 10.0
        )
