"""The clients a function uses, created once at start-up and closed at shutdown.

A handler receives the :class:`Context` as its second argument (``def handle(event, ctx)``), an ASGI app
finds it in ``request.state.kfaas`` (ASGI lifespan state). Nothing reads the environment after start-up.
Each client is imported only when configured, so a function that needs no MongoDB pays nothing for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kfaas.base.errors import AlreadyDone, ConfigurationError, InProgress, ServiceUnavailable
from kfaas.runtime.settings import Settings

if TYPE_CHECKING:
    from email.message import EmailMessage

    from aio_pika.abc import AbstractChannel, AbstractRobustConnection
    from cloudevents.http import CloudEvent
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

    from kfaas.runtime.outbox import Outbox

__all__ = [
    "CLAIMS_COLLECTION",
    "IDEMPOTENCY_COLLECTION",
    "PENDING",
    "Claim",
    "Context",
    "Invocation",
    "invocation",
]

log = logging.getLogger("kfaas")

IDEMPOTENCY_COLLECTION = "kfaas_idempotency"  # one record per key whose block has run (ctx.once)
CLAIMS_COLLECTION = "kfaas_claims"  # one claim per key whose block runs now or was left by a dead holder
CLAIM_KEEP = timedelta(days=1)  # a claim outlives the record of its key (TTL) by this much
PENDING = "_kfaas_pending"  # the keys of ctx.once blocks that changed a document, until they are recorded
UNBOUNDED_LEASE = timedelta(seconds=60)  # the lease of a claim made where no invocation timeout applies
CLOSE_WAIT = 3.0  # seconds close() waits for claims still being released or recorded
MAX_GENERATIONS = 1000  # claims of one key a delivery walks before it gives up (InProgress)


def _claim_id(key: str, generation: int) -> str:
    """The ``_id`` of a key's claim of this generation (the text after the last ``#`` is the generation)."""
    return f"{key}#{generation}"


class Invocation:
    """One call of a function by the runtime: its deadline, and a cancellation that spares ``once`` blocks.

    The runtime ends an invocation when its caller goes away (a broker whose attempt timed out) or at its
    deadline (``KFAAS_TIMEOUT``). Inside a :meth:`Context.once` block the cancellation waits until the
    block has ended: an effect that is under way (an email handed to the SMTP relay in a thread, which no
    cancellation stops) then ends recorded done or released, never released while it may still happen. A
    block still running when the claim's lease ends (the deadline plus one MongoDB write) is cancelled then.
    """

    def __init__(self, limit: float | None, grace: float) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.deadline = loop.time() + limit if limit else None
        self.timed_out = False
        self.cancelled = False
        self._inside_once = 0
        self._pending = False
        self._finished = False
        self._timers = []
        if self.deadline is not None:
            self._timers = [
                loop.call_at(self.deadline, self._expire),
                loop.call_at(self.deadline + grace, self._cancel_now),
            ]

    def cancel(self) -> None:
        """End the invocation: now, or as soon as the ``once`` block under way has ended."""
        if self._inside_once:
            self._pending = True
        else:
            self._cancel_now()

    def _expire(self) -> None:
        self.timed_out = True
        self.cancel()

    def finish(self) -> None:
        """The function has answered: nothing is cancelled any more."""
        self._finished = True
        self.close()

    def _cancel_now(self) -> None:
        if not self.cancelled and not self._finished and not self.task.done():
            self.cancelled = True
            self.task.cancel()

    def enter_once(self) -> None:
        self._inside_once += 1

    def leave_once(self) -> None:
        self._inside_once -= 1
        if not self._inside_once and self._pending:
            self._cancel_now()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()


# The invocation running in this task (set by the runtime around each call of a cloudevent function).
_invocation: ContextVar[Invocation | None] = ContextVar("kfaas_invocation", default=None)


@contextlib.contextmanager
def invocation(limit: float | None, grace: float = 2.0) -> Iterator[Invocation]:
    """Within the block, the current task runs one invocation that ends ``limit`` s from now (None: never)."""
    current = Invocation(limit, grace)
    token = _invocation.set(current)
    try:
        yield current
    finally:
        current.close()
        _invocation.reset(token)


class Claim:
    """What a :meth:`Context.once` block holds: its key, and writes that happen once for the key.

    A MongoDB write whose answer is lost (MongoDB went away mid-write) may or may not have happened, and
    retrying a ``$inc`` would count twice. :meth:`update_one` makes the document carry the block's key
    (``_kfaas_pending``) in the same atomic update, and applies the update only to a document that does
    not carry it yet: a retry after a lost answer, or the next delivery after a crash, finds the key and
    does not apply it again. Once the block is recorded done, the key is removed from the document.
    """

    def __init__(self, ctx: Context, key: str, until: datetime) -> None:
        self.key = key
        self._ctx = ctx
        self._until = until
        self._touched: list[tuple[Any, dict[str, Any]]] = []

    async def update_one(
        self, collection: str, filter: Mapping[str, Any], update: Mapping[str, Any], *, upsert: bool = False
    ) -> bool:
        """Apply ``update`` to the document ``filter`` selects in ``collection``, once for this key.

        True when it is applied (by this call, or by an earlier try of the same key); False when no
        document matches ``filter`` (and ``upsert`` is off). A MongoDB failure whose outcome is unknown is
        retried, without applying twice, until the claim's lease ends; then it raises ServiceUnavailable.
        """
        from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

        coll = self._ctx.db[collection]
        selected = dict(filter)
        guarded = {**selected, PENDING: {"$ne": self.key}}
        change = {k: dict(v) for k, v in update.items()}
        change.setdefault("$push", {})[PENDING] = self.key
        self._touched.append((coll, selected))
        delay = 0.1
        while True:
            try:
                try:
                    result = await coll.update_one(guarded, change, upsert=upsert)
                except DuplicateKeyError:  # the upsert met the document: it carries the key, or not
                    result = None
                if result is not None and (result.matched_count or result.upserted_id is not None):
                    return True
                # nothing matched: an earlier try applied it (the document carries the key), or no document
                if await coll.find_one({**selected, PENDING: self.key}, {"_id": 1}) is not None:
                    return True
                if result is None:
                    raise DuplicateKeyError(
                        f"{collection}: the upsert of {selected!r} collides with another document"
                    )
                return False
            except PyMongoError as exc:
                if not (isinstance(exc, ConnectionFailure) or exc.timeout):
                    raise
                if datetime.now(UTC) + timedelta(seconds=delay) >= self._until:
                    raise ServiceUnavailable(
                        f"MongoDB did not answer while updating {collection}: {exc}"
                    ) from exc
                self._ctx.log.warning("updating %s for %r: %s; retrying", collection, self.key, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _settled(self) -> None:
        """The block is recorded done: the documents it changed need not carry its key any more."""
        from pymongo.errors import PyMongoError

        async def pull(coll: Any, selected: dict[str, Any]) -> None:
            try:
                await coll.update_many({**selected, PENDING: self.key}, {"$pull": {PENDING: self.key}})
            except PyMongoError as exc:  # harmless: the record keeps the block from running again
                self._ctx.log.warning("could not remove %r from %s: %s", self.key, coll.name, exc)

        # one pull per document, all at once: each removes only this key, so their order does not matter
        distinct: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
        for coll, selected in self._touched:
            distinct.setdefault((coll.name, repr(sorted(selected.items()))), (coll, selected))
        await asyncio.gather(*(pull(coll, selected) for coll, selected in distinct.values()))


def _reason(exc: BaseException) -> str:
    """``error: <type>: <first line>`` of a failed readiness check (pymongo's topology dump left out)."""
    text = str(exc).split("\n")[0].split(", Timeout:")[0]
    return f"error: {type(exc).__name__}: {text}"[:300] if text else f"error: {type(exc).__name__}"


class Context:
    """Settings plus lazily created, shared clients for MongoDB, RabbitMQ, SMTP and the event sink."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = logging.getLogger(f"kfaas.fn.{settings.function_name or settings.target or 'function'}")
        self._mongo: AsyncMongoClient[dict[str, Any]] | None = None
        self._amqp: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._amqp_lock = asyncio.Lock()
        self._http: Any = None
        self._ttl_ready = False
        self._declared: set[str] = set()  # queues declared on the current channel
        self._background: set[asyncio.Task[Any]] = set()
        self._outbox: Outbox | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the configured clients. MongoDB connects lazily; RabbitMQ connects here (robustly)."""
        if self.settings.mongodb_url:
            from pymongo import AsyncMongoClient

            self._mongo = AsyncMongoClient(
                self.settings.mongodb_url,
                serverSelectionTimeoutMS=self.settings.mongodb_timeout_ms,
                connectTimeoutMS=self.settings.mongodb_timeout_ms,
                timeoutMS=self.settings.mongodb_timeout_ms * 2,
                appname=self.settings.function_name or "kfaas",
                tz_aware=True,
            )
        if self._mongo is not None and self.settings.amqp_url:
            self.outbox.start()  # sends what a previous process of this function left unsent

    async def close(self) -> None:
        if self._outbox is not None:
            await self._outbox.close()
        if self._background:  # claims being released or recorded done: give them a moment
            _, unfinished = await asyncio.wait(self._background, timeout=CLOSE_WAIT)
            for task in unfinished:
                task.cancel()
            if unfinished:
                self.log.warning(
                    "%d claim(s) not settled at shutdown; their leases bound them", len(unfinished)
                )
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        if self._amqp is not None:
            await self._amqp.close()
        if self._mongo is not None:
            await self._mongo.close()
        if self._http is not None:
            await self._http.aclose()
        self._mongo = self._amqp = self._channel = self._http = None

    async def check(self) -> dict[str, str]:
        """Readiness: ``{"mongodb": "ok" | "error: ...", ...}`` for every configured service."""
        results: dict[str, str] = {}
        timeout = self.settings.ready_timeout
        if self._mongo is not None:
            try:
                await asyncio.wait_for(self._mongo.admin.command("ping"), timeout)
                results["mongodb"] = "ok"
            except Exception as exc:  # readiness reports every failure, whatever its type
                results["mongodb"] = _reason(exc)
        if self.settings.amqp_url:
            try:
                conn = await asyncio.wait_for(self.amqp(), timeout)
                results["rabbitmq"] = "ok" if not conn.is_closed else "error: connection closed"
            except Exception as exc:
                results["rabbitmq"] = _reason(exc)
        return results

    # -- MongoDB -------------------------------------------------------------------------------------
    @property
    def mongo(self) -> AsyncMongoClient[dict[str, Any]]:
        if self._mongo is None:
            raise ConfigurationError("MongoDB is not configured: set MONGODB_URL")
        return self._mongo

    @property
    def db(self) -> AsyncDatabase[dict[str, Any]]:
        """The function's database (``MONGODB_DATABASE``)."""
        return self.mongo[self.settings.mongodb_database]

    # -- the outbox ----------------------------------------------------------------------------------
    @property
    def outbox(self) -> Outbox:
        """The transactional outbox: a document and its messages stored as one unit (docs/runtime.md)."""
        if self._outbox is None:
            from kfaas.runtime.outbox import Outbox

            self._outbox = Outbox(self)
        return self._outbox

    # -- RabbitMQ ------------------------------------------------------------------------------------
    async def amqp(self) -> AbstractRobustConnection:
        """The process's one robust RabbitMQ connection, opened on first use."""
        if not self.settings.amqp_url:
            raise ConfigurationError("RabbitMQ is not configured: set AMQP_URL")
        async with self._amqp_lock:
            if self._amqp is None:
                from kfaas.base.amqp import connect_robust

                try:
                    self._amqp = await connect_robust(
                        self.settings.amqp_url,
                        client_properties={"connection_name": self.settings.function_name or "kfaas"},
                    )
                except (TimeoutError, OSError) as exc:
                    raise ServiceUnavailable(f"RabbitMQ did not answer: {exc}") from exc
            return self._amqp

    async def channel(self) -> AbstractChannel:
        """A channel with publisher confirms on; unroutable messages raise instead of vanishing."""
        conn = await self.amqp()
        if self._channel is None or self._channel.is_closed:
            self._channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
            self._declared.clear()
        return self._channel

    async def enqueue(
        self,
        queue: str,
        body: bytes,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Publish ``body`` to a durable quorum ``queue`` and wait for the broker's confirm."""
        import aio_pika

        channel = await self.channel()
        if queue not in self._declared:
            await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
            self._declared.add(queue)
        message = aio_pika.Message(
            body,
            headers=dict(headers or {}),
            message_id=message_id,
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await channel.default_exchange.publish(message, routing_key=queue, timeout=10)
        except BaseException:
            self._declared.discard(queue)  # the queue may be gone (returned): declare it again next time
            raise

    # -- events --------------------------------------------------------------------------------------
    async def publish(self, event: CloudEvent) -> None:
        """Send ``event`` to ``K_SINK`` (the broker ingress, set by a SinkBinding) in binary mode."""
        if not self.settings.sink:
            raise ConfigurationError(
                "no event sink configured: set K_SINK (a SinkBinding does this on Knative)"
            )
        import httpx
        from cloudevents.conversion import to_binary

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        headers, body = to_binary(event)
        try:
            response = await self._http.post(self.settings.sink, headers=headers, content=body)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"event sink {self.settings.sink} did not answer: {exc}") from exc
        if response.status_code >= 300:
            raise ServiceUnavailable(
                f"event sink {self.settings.sink} refused the event: {response.status_code} {response.text[:200]}"
            )

    # -- email ---------------------------------------------------------------------------------------
    async def send_email(self, to: str, subject: str, body: str) -> None:
        """Send one plain-text email through the configured SMTP relay (the seed's SES)."""
        if not self.settings.smtp_host:
            raise ConfigurationError("SMTP is not configured: set SMTP_HOST")
        from email.message import EmailMessage

        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        try:
            await asyncio.to_thread(self._smtp_send, message)
        except OSError as exc:
            raise ServiceUnavailable(f"SMTP relay {self.settings.smtp_host} failed: {exc}") from exc

    def _smtp_send(self, message: EmailMessage) -> None:
        import smtplib

        s = self.settings
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=10) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password)
            smtp.send_message(message)

    # -- time ----------------------------------------------------------------------------------------
    def remaining_seconds(self) -> float | None:
        """Seconds left before the current invocation's timeout (``KFAAS_TIMEOUT``); None when unbounded.

        The runtime sets the bound around each call of a cloudevent function; elsewhere it is None.
        """
        current = _invocation.get()
        if current is None or current.deadline is None:
            return None
        return max(0.0, current.deadline - asyncio.get_running_loop().time())

    def _lease(self, lease: timedelta | None) -> timedelta:
        """How long a claim made now may be held: at most until the current invocation must have ended.

        The runtime cancels an invocation at its deadline, so a claim outlives its holder by one MongoDB
        write at most (the grace in which the holder releases it or records it done).
        """
        grace = timedelta(milliseconds=self.settings.mongodb_timeout_ms)
        left = self.remaining_seconds()
        if left is not None:
            bound = timedelta(seconds=left) + grace
        elif self.settings.timeout:
            bound = timedelta(seconds=self.settings.timeout) + grace
        else:
            bound = UNBOUNDED_LEASE
        return bound if lease is None else min(lease, bound)

    # -- idempotency ---------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def once(
        self, key: str, *, ttl: timedelta = timedelta(days=7), lease: timedelta | None = None
    ) -> AsyncIterator[Claim]:
        """Run the block at most once per ``key`` (e.g. ``f"{event['source']}|{event['id']}"``).

        A delivery claims the key in MongoDB (``kfaas_claims``) and, once the block has run, records it done
        (``kfaas_idempotency``, kept ``ttl``). A later delivery of a key recorded done raises
        :class:`AlreadyDone`; one that arrives while another holds a live claim raises :class:`InProgress`
        (a retryable failure).

        A claim never blocks longer than the delivery it belongs to. If the block raises, is cancelled or
        runs out of time, the claim is released at once, so a redelivery can try again. Its lease ends when
        the current invocation must have ended (``KFAAS_TIMEOUT``, plus one MongoDB write), or after
        ``lease`` if that is shorter: a claim whose holder died is taken over after it (by inserting the
        key's next claim, never by updating the dead one: see :meth:`_claim`). Once the block has
        run, recording it done is retried until the lease ends, even if the caller has gone away, so that a
        MongoDB outage right after the effect does not let a redelivery repeat it.

        The block gets a :class:`Claim`: a MongoDB update made through ``claim.update_one`` happens once
        for the key even when MongoDB's answer to it is lost, or the process dies right after it::

            async with ctx.once(f"analytics|{order_id}") as claim:
                await claim.update_one("totals", {"_id": day}, {"$inc": {"orders": 1}}, upsert=True)

        A block that runs costs two inserts and no read: the suite's FerretDB (v1, SQLite) scans a whole
        collection for an update, a delete or a read that finds nothing, and these collections grow with
        every event.
        """
        import uuid

        claims, records = self.db[CLAIMS_COLLECTION], self.db[IDEMPOTENCY_COLLECTION]
        await self._ensure_ttl(claims, records)
        holder = uuid.uuid4().hex
        now, until, generation = await self._claim(claims, records, key, holder, ttl=ttl, lease=lease)
        claim_id = _claim_id(key, generation)
        claim_ = Claim(self, key, until)
        current = _invocation.get()
        if current is not None:
            current.enter_once()  # a cancellation of the invocation waits for the block (see Invocation)
        try:
            try:
                yield claim_
            except BaseException:
                await self._settle(self._release(claims, claim_id, key, holder))
                raise
            await self._settle(self._record(records, claim_, until, now + ttl))
        finally:
            if current is not None:
                current.leave_once()

    @staticmethod
    async def _recorded(records: Any, key: str) -> bool:
        return await records.find_one({"_id": key}, {"_id": 1}) is not None

    async def _settle(self, work: Any) -> None:
        """Run ``work`` to its end even if the caller is cancelled meanwhile (it bounds itself)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(task)

    async def _claim(
        self, claims: Any, records: Any, key: str, holder: str, *, ttl: timedelta, lease: timedelta | None
    ) -> tuple[datetime, datetime, int]:
        """Claim ``key``: (now, the lease's end, the claim's generation); AlreadyDone or InProgress if not.

        Claims are only ever inserted, never taken over by an update: FerretDB 1.x (SQLite) does not apply
        concurrent updates of one document atomically (two compare-and-set updates can both win), while a
        unique ``_id`` insert has exactly one winner. The claims of a key form a chain of generations,
        ``<key>#0``, ``<key>#1``, ...; a claim is written by its holder alone (inserted, then marked
        released). A delivery walks the chain from 0: a live claim means :class:`InProgress`, a released or
        expired one sends it to the next generation, and the first generation it can insert is its claim.
        Two deliveries that find the same dead claim race for the next insert, and one of them wins.
        """
        from pymongo.errors import DuplicateKeyError

        generation = 0
        for _ in range(MAX_GENERATIONS):
            now = datetime.now(UTC)
            until = now + self._lease(lease)
            # a claim outlives the record of its key, so a key that can be claimed afresh has no record:
            # the usual path needs no read (a read that misses costs FerretDB 1.x a whole scan)
            claim: dict[str, Any] = {
                "_id": _claim_id(key, generation),
                "key": key,
                "holder": holder,
                "lease_until": until,
                "expires_at": now + ttl + CLAIM_KEEP,
            }
            try:
                await claims.insert_one(claim)
            except DuplicateKeyError:
                existing = await claims.find_one({"_id": claim["_id"]})
                if existing is None:  # expired (TTL) meanwhile: this generation is free again
                    continue
                if await self._recorded(records, key):
                    raise AlreadyDone(key) from None
                ends = existing.get("lease_until")
                if not existing.get("released") and isinstance(ends, datetime) and ends >= now:
                    when = f" until {ends.isoformat(timespec='seconds')}"
                    raise InProgress(f"another delivery holds {key!r}{when}") from None
                if not existing.get("released"):
                    self.log.warning(
                        "taking over the claim on %r: its holder did not end within its lease", key
                    )
                generation += 1
                continue
            if generation and await self._recorded(records, key):  # the previous holder finished late
                await self._release(claims, claim["_id"], key, holder)
                raise AlreadyDone(key)
            return now, until, generation
        raise InProgress(f"the claim on {key!r} changed hands {MAX_GENERATIONS} times; retry")

    async def _release(self, claims: Any, claim_id: str, key: str, holder: str) -> None:
        from pymongo.errors import PyMongoError

        try:  # only our own claim, and only its holder writes it: no concurrent update of one document
            await claims.update_one(
                {"_id": claim_id, "holder": holder},
                {"$set": {"released": True, "lease_until": datetime.now(UTC)}},
            )
        except PyMongoError as exc:
            self.log.warning("could not release the claim on %r (its lease bounds it): %s", key, exc)

    async def _record(self, records: Any, claim: Claim, until: datetime, expires: datetime) -> None:
        """Record the claim's key done, retrying until its lease ends."""
        from pymongo.errors import DuplicateKeyError, PyMongoError

        key = claim.key
        delay = 0.1
        while True:
            try:
                with contextlib.suppress(DuplicateKeyError):  # an earlier try was stored after all
                    await records.insert_one(
                        {"_id": key, "state": "done", "done_at": datetime.now(UTC), "expires_at": expires}
                    )
                await claim._settled()
                return
            except PyMongoError as exc:
                if datetime.now(UTC) + timedelta(seconds=delay) >= until:
                    self.log.error(
                        "the block of %r ran, but recording it failed until its lease ended (%s): "
                        "a redelivery may run it again",
                        key,
                        exc,
                    )
                    return
                self.log.warning("recording %r as done failed, retrying in %.1fs: %s", key, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _ensure_ttl(self, *collections: Any) -> None:
        """The TTL indexes behind :meth:`once`, made on first use. FerretDB 1.x has no TTL indexes: there
        claims and records stay until deleted, which is correct, only not compact (logged once)."""
        if self._ttl_ready:
            return
        from pymongo.errors import OperationFailure

        for coll in collections:
            try:
                await coll.create_index("expires_at", expireAfterSeconds=0, name="expires_at_ttl")
            except OperationFailure as exc:
                self.log.warning("no TTL index on %s (its documents will not expire): %s", coll.name, exc)
        self._ttl_ready = True
