"""The stream source: one consumer per RabbitMQ stream source, batches to the function, checkpoints in MongoDB.

A RabbitMQ stream (``x-queue-type: stream``) is an append-only log read by offset, as a Kinesis shard is.
RabbitMQ 3.10 keeps no offset for an AMQP 0.9.1 consumer and has no single active consumer for streams, so
the consumer of a stream source is one process (a Deployment of one replica on Kubernetes) that:

- claims ``kfaas.stream.<namespace>.<consumer>`` (an exclusive queue): a second consumer of the same source
  is refused with :class:`~kfaas.broker.BrokerConflict` instead of delivering every record twice;
- reads the stream over AMQP from the record after its checkpoint (``x-stream-offset``, prefetch > 0, manual
  acks: RabbitMQ closes the connection of a ``no_ack`` stream consumer), in batches of ``batchSize`` records
  or what came within ``batchWindow``;
- POSTs each batch to the function in CloudEvents batch mode, in offset order, one batch at a time (so the
  order per partition key is the stream's order), each record with the extensions ``streamoffset``,
  ``streamname`` and ``partitionkey``;
- after a 2xx answer inserts the checkpoint (the batch's last offset) and acks; a crash between the two
  redelivers that batch, never skips one;
- on a failing batch: with ``bisectBatchOnFunctionError`` splits it in two and tries each half (down to the
  failing record), retries ``maximumRetryAttempts`` times with exponential backoff from ``backoffDelay``,
  then either sends the records to the source's dead-letter queue ``t.<namespace>.<consumer>.dlq`` with the
  ``knativeerror*`` extensions (``onFailure: destination``; ``kfaas dlq`` reads it) and moves on, or stops
  with :class:`StreamStopped` (``onFailure: stop``) without checkpointing them: a restart tries them again.

Checkpoints are inserts only (FerretDB 1.24 does not make concurrent updates of one document atomic; a unique
``_id`` insert is reliable): ``{consumer, epoch, offset}`` with ``_id`` ``<consumer>/<epoch>/<offset>``. The
position is the highest offset of the highest epoch. ``kfaas stream replay`` inserts a new epoch starting at an
offset or a time; the running consumer sees it between batches and starts over from there.

The consumer also appends: ``POST /`` of its HTTP app takes CloudEvents (binary, structured, batch) and
appends them to the stream (202 once RabbitMQ confirmed); the feeds of the source are triggers delivering there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aio_pika
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent
from pymongo.errors import PyMongoError

from kfaas.base.errors import InvalidEvent
from kfaas.broker._claims import BrokerConflict
from kfaas.broker._http import HttpClient
from kfaas.broker._names import ERROR_CODE, ERROR_DATA, ERROR_DEST, PREFIX, QUORUM, event_to_amqp
from kfaas.broker._sources import _looks_structured
from kfaas.events import BATCH, parse_events
from kfaas.spec import STREAM_CHECKPOINTS, FunctionSpec, StreamSource, parse_duration

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
    from pymongo.asynchronous.collection import AsyncCollection

__all__ = [
    "STREAM_RECORD_TYPE",
    "Checkpoints",
    "Position",
    "StreamConsumer",
    "StreamStopped",
    "append",
    "dead_letter_queue",
    "declare_stream",
    "stream_arguments",
    "tail_offset",
]

log = logging.getLogger("kfaas.broker.streams")

# What RabbitMQ going away raises: aiormq's protocol errors, and ChannelInvalidStateError (a RuntimeError,
# not an AMQPError) for a channel used after its connection closed.
_CONNECTION_LOST = (
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
)

STREAM_RECORD_TYPE = "dev.kfaas.stream.record"  # a record that is not a CloudEvent
OFFSET_EXTENSION = "streamoffset"
STREAM_EXTENSION = "streamname"
MAX_BACKOFF = 60.0  # seconds: the longest wait between two attempts of a batch
REPLAY_CHECK = 1.0  # seconds between looks for a replay while the stream is idle
TIME_MARGIN = timedelta(minutes=5)  # how far before a replay's time the stream is read from


class StreamStopped(RuntimeError):
    """``onFailure: stop``: a batch failed every attempt; the stream halts at it (nothing checkpointed)."""


def stream_arguments(source: StreamSource) -> dict[str, Any]:
    seconds = int(parse_duration(source.max_age).total_seconds())
    return {"x-queue-type": "stream", "x-max-age": f"{max(seconds, 1)}s"}


async def declare_stream(connection: AbstractConnection, source: StreamSource) -> None:
    """Declare the stream; one declared earlier with other arguments (another retention) is used as it is
    (RabbitMQ closes the channel of the refused declaration: the check runs on a channel of its own)."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(source.stream, durable=True, arguments=stream_arguments(source))
    except aio_pika.exceptions.ChannelPreconditionFailed:
        channel = await connection.channel()
        await channel.declare_queue(source.stream, passive=True)
        log.info(
            "stream %s exists with other arguments than maxAge %s: used as it is",
            source.stream,
            source.max_age,
        )
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


def dead_letter_queue(namespace: str, consumer: str) -> str:
    """The on-failure destination of a stream source (the dev broker's name for a trigger's dead letters)."""
    return f"t.{namespace}.{consumer}.dlq"


def stream_claim(namespace: str, consumer: str) -> str:
    return f"kfaas.stream.{namespace}.{consumer}"


# -- checkpoints ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Position:
    """Where a consumer stands: the epoch, and the last processed offset or the time a replay starts at."""

    epoch: int
    offset: int | None  # the last processed offset (-1: none yet, start at 0)
    since: datetime | None = None  # a replay from a time: start at the first record at or after it
    at: datetime | None = None  # when it was written

    def start(self) -> int | datetime:
        """The ``x-stream-offset`` to consume from: the next offset, or for a replay from a time a point
        TIME_MARGIN before it (RabbitMQ stamps chunks with the Erlang VM's clock, which can lag the system
        clock: 15 s was seen here), from which the records' own times find the first one at or after it."""
        if self.offset is not None:
            return self.offset + 1
        return self.since_utc() - TIME_MARGIN

    def since_utc(self) -> datetime:
        assert self.since is not None
        return self.since if self.since.tzinfo else self.since.replace(tzinfo=UTC)  # MongoDB's are naive UTC


class Checkpoints:
    """Insert-only checkpoints of the stream consumers (collection ``kfaas_stream_checkpoints``)."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self.collection = collection

    @classmethod
    def of(cls, database: Any) -> Checkpoints:
        return cls(database[STREAM_CHECKPOINTS])

    async def ensure_index(self) -> None:
        await self.collection.create_index([("consumer", 1), ("epoch", -1), ("offset", -1)])

    async def latest(self, consumer: str) -> Position | None:
        cursor = self.collection.find({"consumer": consumer}).sort([("epoch", -1), ("offset", -1)]).limit(1)
        async for doc in cursor:
            return Position(doc["epoch"], doc.get("offset"), doc.get("since"), doc.get("at"))
        return None

    async def commit(self, consumer: str, epoch: int, offset: int) -> None:
        """Record ``offset`` as processed (an insert: a batch processed twice inserts nothing new)."""
        from pymongo.errors import DuplicateKeyError

        doc = {
            "_id": f"{consumer}/{epoch}/{offset}",
            "consumer": consumer,
            "epoch": epoch,
            "offset": offset,
            "at": datetime.now(UTC),
        }
        with contextlib.suppress(DuplicateKeyError):
            await self.collection.insert_one(doc)

    async def prune(self, consumer: str, keep: Position) -> None:
        """Remove the checkpoints below ``keep`` (deletes: nothing that another writer could race on)."""
        older: list[dict[str, Any]] = [{"epoch": {"$lt": keep.epoch}}]
        if keep.offset is not None:
            older.append({"epoch": keep.epoch, "offset": {"$lt": keep.offset}})
        await self.collection.delete_many({"consumer": consumer, "$or": older})

    async def replay(self, consumer: str, offset: int | None, since: datetime | None) -> Position:
        """Start a new epoch at ``offset`` (the next record delivered) or at the first record from ``since``."""
        from pymongo.errors import DuplicateKeyError

        while True:
            current = await self.latest(consumer)
            epoch = (current.epoch if current else 0) + 1
            position = Position(epoch, None if offset is None else offset - 1, since, datetime.now(UTC))
            doc = {
                "_id": f"{consumer}/{epoch}/replay",
                "consumer": consumer,
                "epoch": epoch,
                "offset": position.offset,
                "since": since,
                "at": position.at,
                "replay": True,
            }
            try:
                await self.collection.insert_one(doc)
            except DuplicateKeyError:
                continue  # another replay took this epoch: take the next
            return position


# -- appending ------------------------------------------------------------------------------------------
async def append(channel: AbstractChannel, stream: str, events: list[CloudEvent]) -> None:
    """Append events (binary mode: ``ce-`` headers) to a stream; returns once RabbitMQ confirmed each.

    ``channel`` must have publisher confirms on.
    """
    for event in events:
        headers, content_type, body = event_to_amqp(event)
        message = aio_pika.Message(
            body,
            headers={PREFIX + k[3:] if k.startswith("ce-") else k: v for k, v in headers.items()},
            content_type=content_type,
            message_id=str(event["id"]),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await channel.default_exchange.publish(message, routing_key=stream, mandatory=True)


async def tail_offset(connection: AbstractConnection, stream: str, wait: float = 2.0) -> int | None:
    """The offset of the stream's last record (None: empty or not declared), read from its last chunk."""
    channel = await connection.channel()
    try:
        try:
            queue = await channel.declare_queue(stream, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return None
        await channel.set_qos(prefetch_count=1000)
        offsets: list[int] = []
        arrived = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            offsets.append(int((message.headers or {}).get("x-stream-offset", -1)))  # type: ignore[arg-type]
            arrived.set()
            await message.ack()

        tag = await queue.consume(on_message, arguments={"x-stream-offset": "last"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), wait)
            while True:  # the rest of the last chunk follows at once
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 0.2)
        with contextlib.suppress(Exception):
            await queue.cancel(tag)
        return max(offsets) if offsets else None
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


# -- the consumer ---------------------------------------------------------------------------------------
@dataclass
class Record:
    offset: int
    item: dict[str, Any]  # the record as a structured CloudEvent (JSON), extensions included
    body: bytes  # its data as stored
    message: AbstractIncomingMessage


class _Restart(Exception):
    """A replay was requested: consume again from the new position."""


class StreamConsumer:
    """Consumes one stream source and delivers it to its function (see the module docstring)."""

    def __init__(
        self,
        consumer: FunctionSpec,
        fn: FunctionSpec,
        source: StreamSource,
        *,
        amqp_url: str,
        database: Any,
        url: str,
        namespace: str = "default",
    ) -> None:
        self.name = consumer.name
        self.fn = fn
        self.source = source
        self.amqp_url = amqp_url
        self.checkpoints = Checkpoints.of(database)
        self.url = url
        self.namespace = namespace
        self.id = f"{namespace}/{consumer.name}"  # the checkpoints' consumer key
        self.http = HttpClient()
        self.connection: AbstractConnection | None = None
        self.append_channel: AbstractChannel | None = None
        self.position: Position | None = None
        self.delivered = 0  # records delivered (2xx) since start
        self.failed = 0  # records sent to the on-failure destination since start
        self.connected = asyncio.Event()
        self._dead: AbstractChannel | None = None
        self._commits = 0
        self._skip_before: datetime | None = None

    @property
    def window(self) -> float:
        return parse_duration(self.source.batch_window).total_seconds() if self.source.batch_window else 0.0

    async def run(self) -> None:
        """Consume until cancelled; reconnects (from the checkpoint) when RabbitMQ goes away.

        Raises :class:`BrokerConflict` when another consumer holds the source, :class:`StreamStopped` for
        ``onFailure: stop``.
        """
        logging.getLogger("aiormq").setLevel(logging.CRITICAL)
        await self.checkpoints.ensure_index()
        pause = 0.5
        try:
            while True:
                try:
                    await self._session()
                except _CONNECTION_LOST as exc:
                    log.warning(
                        "stream %s: RabbitMQ connection lost (%r); again in %.1fs", self.name, exc, pause
                    )
                except PyMongoError as exc:  # the checkpoints: start over from the last one written
                    log.warning("stream %s: MongoDB failed (%r); again in %.1fs", self.name, exc, pause)
                finally:
                    self.connected.clear()
                    await self._close()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)
        finally:
            await self.http.aclose()

    async def _close(self) -> None:
        connection, self.connection = self.connection, None
        self.append_channel = self._dead = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5.0)

    async def _session(self) -> None:
        import aiormq

        self.connection = connection = await aio_pika.connect(
            self.amqp_url, client_properties={"connection_name": f"kfaas-stream-{self.name}"}
        )
        claims = await connection.channel()
        try:
            await claims.declare_queue(
                stream_claim(self.namespace, self.name), exclusive=True, auto_delete=True
            )
        except aiormq.exceptions.ChannelLockedResource:
            raise BrokerConflict(
                f"stream source {self.name} is consumed by another kfaas stream consumer on this RabbitMQ "
                f"(namespace {self.namespace!r}): a stream source has one consumer, or its records would be "
                "delivered twice; stop the other one"
            ) from None
        await declare_stream(connection, self.source)
        setup = await connection.channel()
        await setup.declare_queue(
            dead_letter_queue(self.namespace, self.name), durable=True, arguments=QUORUM
        )
        self.append_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._dead = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self.connected.set()
        while True:
            try:
                await self._consume(connection)
            except _Restart:
                continue

    async def _start_position(self) -> Position:
        position = await self.checkpoints.latest(self.id)
        if position is None:
            start = -1
            if self.source.starting_position == "LATEST":
                assert self.connection is not None
                tail = await tail_offset(self.connection, self.source.stream, wait=0.5)
                start = -1 if tail is None else tail
            position = Position(0, start)
        return position

    async def _consume(self, connection: AbstractConnection) -> None:
        self.position = position = await self._start_position()
        # a replay from a time: the records before the first one stamped at or after it are passed over
        self._skip_before = position.since_utc() if position.offset is None else None
        log.info("stream %s: consuming %s from %s", self.name, self.source.stream, position.start())
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=min(2 * self.source.batch_size, 20000))
        queue = await channel.declare_queue(self.source.stream, passive=True)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        tag = await queue.consume(inbox.put, no_ack=False, arguments={"x-stream-offset": position.start()})
        last = position.offset if position.offset is not None else -1
        epoch = position.epoch
        # one batch is made (its records read and turned into JSON) while the one before is delivered
        ready: asyncio.Queue[list[Record]] = asyncio.Queue(maxsize=1)

        async def collect(after: int) -> None:
            while True:
                batch = await self._collect(inbox, after, channel)
                if batch:
                    after = batch[-1].offset
                await ready.put(batch)  # an empty batch: the stream was idle for a while

        collector = asyncio.create_task(collect(last), name=f"stream {self.name} batches")
        # a consumer waiting for records learns of RabbitMQ going away only from its channel closing
        closing = asyncio.ensure_future(channel.closed())
        looked = time.monotonic()
        try:
            while True:
                batch = await self._next_batch(ready, collector, closing)
                if batch:
                    await self._process(batch)
                    last = batch[-1].offset
                    await self.checkpoints.commit(self.id, epoch, last)
                    self.position = Position(epoch, last, at=datetime.now(UTC))
                    await batch[-1].message.ack(multiple=True)
                    self._commits += 1
                    if self._commits % 100 == 0:
                        await self.checkpoints.prune(self.id, self.position)
                if not batch or time.monotonic() - looked >= REPLAY_CHECK:
                    looked = time.monotonic()
                    if await self._replayed(epoch):
                        raise _Restart
        finally:
            collector.cancel()
            closing.cancel()
            await asyncio.gather(collector, closing, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), 2.0)

    async def _next_batch(
        self,
        ready: asyncio.Queue[list[Record]],
        collector: asyncio.Task[None],
        closing: asyncio.Future[Any],
    ) -> list[Record]:
        """The batch the collector made, or what stopped it; ConnectionError when the channel closed."""
        getting = asyncio.ensure_future(ready.get())
        await asyncio.wait([getting, collector, closing], return_when=asyncio.FIRST_COMPLETED)
        if not getting.done():
            getting.cancel()
            if closing.done():
                raise ConnectionError(f"RabbitMQ closed the channel of stream {self.source.stream}")
            collector.result()  # raises what stopped it
        return getting.result()

    async def _replayed(self, epoch: int) -> bool:
        latest = await self.checkpoints.latest(self.id)
        return latest is not None and latest.epoch > epoch

    async def _collect(
        self, inbox: asyncio.Queue[AbstractIncomingMessage], last: int, channel: AbstractChannel
    ) -> list[Record]:
        """Up to batchSize records after ``last``: what is there, plus what comes within batchWindow."""
        batch: list[Record] = []
        size = self.source.batch_size
        try:
            first = await asyncio.wait_for(inbox.get(), REPLAY_CHECK)
        except TimeoutError:
            return batch
        deadline = time.monotonic() + self.window
        message: AbstractIncomingMessage | None = first
        while message is not None:
            offset = int((message.headers or {}).get("x-stream-offset", -1))  # type: ignore[arg-type]
            if offset <= last or self._before_replay(message):  # before the position: acked, not delivered
                await message.ack()
            else:
                item, body = self._item(message, offset)
                batch.append(Record(offset, item, body, message))
                last = offset
            if len(batch) >= size:
                break
            message = None
            with contextlib.suppress(asyncio.QueueEmpty):
                message = inbox.get_nowait()
            if message is None and (wait := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    message = await asyncio.wait_for(inbox.get(), wait)
        return batch

    def _before_replay(self, message: AbstractIncomingMessage) -> bool:
        """While replaying from a time: True for a record stamped before it (its CloudEvent ``time``, else
        its AMQP timestamp). The first record at or after it, or without a time, ends the search."""
        since = self._skip_before
        if since is None:
            return False
        stamp = _record_time(message)
        if stamp is not None and stamp < since:
            return True
        self._skip_before = None
        return False

    def _item(self, message: AbstractIncomingMessage, offset: int) -> tuple[dict[str, Any], bytes]:
        """A record as a structured CloudEvent, built from the AMQP message without the SDK (it is the hot
        path): a binary-mode record (``ce-`` headers) or a structured one keeps its attributes; any other
        body becomes the data of a ``dev.kfaas.stream.record``. Adds ``streamoffset`` and ``partitionkey``."""
        headers = message.headers or {}
        body = bytes(message.body)
        content_type = message.content_type or ""
        item: dict[str, Any] | None = None
        if PREFIX + "specversion" in headers:
            item = {k[len(PREFIX) :]: _text(v) for k, v in headers.items() if k.startswith(PREFIX)}
            if content_type:
                item["datacontenttype"] = content_type
        elif content_type.startswith("application/cloudevents+json") or _looks_structured(body):
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
                if isinstance(parsed, dict) and all(parsed.get(k) for k in ("id", "source", "type")):
                    item = parsed
                    body = _data_bytes(parsed)
        if item is None:
            item = {
                "specversion": "1.0",
                "type": STREAM_RECORD_TYPE,
                "source": f"/apis/v1/namespaces/{self.namespace}/streams/{self.source.stream}",
                "id": message.message_id or f"{self.source.stream}-{offset}",
            }
            if content_type:
                item["datacontenttype"] = content_type
            if isinstance(message.timestamp, datetime):
                stamp = message.timestamp
                item["time"] = (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat()
        if "data" not in item and "data_base64" not in item and body:
            _put_data(item, body, content_type)
        item[OFFSET_EXTENSION] = str(offset)
        item[STREAM_EXTENSION] = self.source.stream
        key = self.source.partition_key
        if key != "partitionkey" and "partitionkey" not in item and item.get(key) is not None:
            item["partitionkey"] = str(item[key])
        return item, body

    # -- delivery ---------------------------------------------------------------------------------------
    async def _process(self, batch: list[Record]) -> None:
        failure = await self._attempts(batch, retries=not self.source.bisect_batch_on_function_error)
        if failure is None:
            return
        if (
            self.source.bisect_batch_on_function_error and len(batch) > 1
        ):  # bisect: each half on its own, in order, down to the failing records
            half = len(batch) // 2
            await self._process(batch[:half])
            await self._process(batch[half:])
            return
        if self.source.bisect_batch_on_function_error:
            failure = await self._attempts(batch, retries=True, first=failure)
            if failure is None:
                return
        await self._give_up(batch, failure)

    async def _attempts(
        self, batch: list[Record], *, retries: bool, first: tuple[str, str] | None = None
    ) -> tuple[str, str] | None:
        """Deliver with the retries of the source; None once delivered, else (code, reason) of the last try."""
        allowed = self.source.maximum_retry_attempts if retries else 0
        attempt = 0
        failure = first
        if failure is None:
            failure = await self._deliver(batch)
        while failure is not None and (allowed < 0 or attempt < allowed):
            attempt += 1
            delay = min(
                parse_duration(self.source.backoff_delay).total_seconds() * 2 ** (attempt - 1), MAX_BACKOFF
            )
            log.warning(
                "stream %s: batch %d-%d failed (%s: %s); retry %d in %.1fs",
                self.name,
                batch[0].offset,
                batch[-1].offset,
                failure[0],
                failure[1][:200],
                attempt,
                delay,
            )
            await asyncio.sleep(delay)
            failure = await self._deliver(batch)
        return failure

    async def _deliver(self, batch: list[Record]) -> tuple[str, str] | None:
        body = json.dumps([r.item for r in batch], separators=(",", ":")).encode()
        try:
            response = await self.http.post(self.url, {"content-type": BATCH}, body, float(self.fn.timeout))
        except TimeoutError:
            return "timeout", f"no answer within {self.fn.timeout}s"
        except (OSError, ConnectionError, ValueError) as exc:
            return "unreachable", f"{self.url}: {exc!r}"
        if 200 <= response.status < 300:
            self.delivered += len(batch)
            return None
        return str(response.status), response.body.decode("utf-8", "replace")[:2000]

    async def _give_up(self, batch: list[Record], failure: tuple[str, str]) -> None:
        code, reason = failure
        if self.source.on_failure == "stop":
            raise StreamStopped(
                f"stream {self.name}: records {batch[0].offset}-{batch[-1].offset} failed "
                f"{self.source.maximum_retry_attempts + 1} attempt(s) ({code}: {reason[:200]}); "
                "onFailure is 'stop': the stream halts here until they succeed (kfaas stream replay moves it)"
            )
        assert self._dead is not None
        for record in batch:
            amqp_headers: dict[str, Any] = {
                PREFIX + k: v if isinstance(v, str) else json.dumps(v)
                for k, v in record.item.items()
                if k not in ("data", "data_base64", "datacontenttype")
            }
            amqp_headers[PREFIX + ERROR_DEST] = self.url
            amqp_headers[PREFIX + ERROR_CODE] = code
            amqp_headers[PREFIX + ERROR_DATA] = base64.b64encode(reason.encode()).decode()
            message = aio_pika.Message(
                record.body,
                headers=amqp_headers,
                content_type=record.item.get("datacontenttype"),
                message_id=str(record.item["id"]),
                timestamp=datetime.now(UTC),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await self._dead.default_exchange.publish(
                message, routing_key=dead_letter_queue(self.namespace, self.name), mandatory=True
            )
        self.failed += len(batch)
        log.error(
            "stream %s: records %d-%d sent to %s after every attempt failed (%s: %s)",
            self.name,
            batch[0].offset,
            batch[-1].offset,
            dead_letter_queue(self.namespace, self.name),
            code,
            reason[:200],
        )

    # -- the HTTP app: appends and health ---------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/health/liveness":
            await _answer(send, 200, {"status": "alive"})
        elif path == "/health/readiness":
            ready = self.connected.is_set()
            await _answer(
                send, 200 if ready else 503, self.status() | {"status": "ready" if ready else "not ready"}
            )
        elif path != "/":
            await _answer(send, 404, {"error": f"no route {path}; CloudEvents to append go to POST /"})
        elif method != "POST":
            await _answer(send, 405, {"error": f"method {method} not allowed; use POST /"})
        else:
            await self._append_request(scope, receive, send)

    async def _append_request(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_APPEND:
                await _answer(send, 413, {"error": f"body over {MAX_APPEND} bytes"})
                return
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            events = parse_events(headers, bytes(body))
        except (InvalidEvent, GenericException, ValueError) as exc:
            await _answer(send, 400, {"error": str(exc)})
            return
        channel = self.append_channel
        if channel is None:
            await _answer(send, 503, {"error": "RabbitMQ is not connected; try again"})
            return
        try:
            await append(channel, self.source.stream, events)
        except _CONNECTION_LOST as exc:
            await _answer(send, 503, {"error": f"not appended: {exc!r}"})
            return
        await _answer(send, 202, {"appended": len(events), "stream": self.source.stream})

    def status(self) -> dict[str, Any]:
        position = self.position
        return {
            "consumer": self.name,
            "stream": self.source.stream,
            "offset": position.offset if position else None,
            "delivered": self.delivered,
            "failed": self.failed,
        }


MAX_APPEND = 10 * 1024 * 1024  # bytes of one append request


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return str(value)


def _record_time(message: AbstractIncomingMessage) -> datetime | None:
    """When a record was made: its CloudEvent ``time`` (binary ``ce-time`` header), else its AMQP timestamp."""
    raw = (message.headers or {}).get(PREFIX + "time")
    if raw is not None:
        with contextlib.suppress(ValueError):
            stamp = datetime.fromisoformat(_text(raw).replace("Z", "+00:00"))
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    if isinstance(message.timestamp, datetime):
        return message.timestamp if message.timestamp.tzinfo else message.timestamp.replace(tzinfo=UTC)
    return None


def _is_json(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return not base or base == "application/json" or base.endswith("+json") or base == "text/json"


def _put_data(item: dict[str, Any], body: bytes, content_type: str) -> None:
    """Put the data of a binary-mode record into its structured form: JSON as JSON, text as a string, the
    rest (and JSON that does not parse) as data_base64."""
    if _is_json(content_type):
        try:
            item["data"] = json.loads(body)
        except ValueError:
            pass
        else:
            return
    elif content_type.startswith("text/"):
        try:
            item["data"] = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return
    item["data_base64"] = base64.b64encode(body).decode()


def _data_bytes(item: dict[str, Any]) -> bytes:
    """The data of a structured CloudEvent as bytes (what a dead letter keeps as its body)."""
    if "data_base64" in item:
        with contextlib.suppress(ValueError):
            return base64.b64decode(item["data_base64"])
        return b""
    if "data" not in item:
        return b""
    data = item["data"]
    return data.encode() if isinstance(data, str) else json.dumps(data).encode()


async def _answer(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def parse_from(text: str) -> tuple[int | None, datetime | None]:
    """``--from``: an offset (``0``, ``1500``) or an ISO 8601 time (``2026-12-02T01:00:00Z``), or a
    duration back from now (``PT10M``); ValueError naming the three forms."""
    value = text.strip()
    if value.isdigit():
        return int(value), None
    if value.startswith("P"):
        return None, datetime.now(UTC) - parse_duration(value)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--from {text!r} is neither an offset (0, 1500), a time (2026-12-02T01:00:00Z) nor a duration "
            "back from now (PT10M)"
        ) from None
    return None, when if when.tzinfo else when.replace(tzinfo=UTC)
