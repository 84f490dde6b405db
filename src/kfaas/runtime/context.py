"""The clients a function uses, created once at start-up and closed at shutdown.

A handler receives the :class:`Context` as its second argument (``def handle(event, ctx)``), an ASGI app
finds it in ``request.state.kfaas`` (ASGI lifespan state). Nothing reads the environment after start-up.
Each client is imported only when configured, so a function that needs no MongoDB pays nothing for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
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

__all__ = ["IDEMPOTENCY_COLLECTION", "Context"]

log = logging.getLogger("kfaas")

IDEMPOTENCY_COLLECTION = "kfaas_idempotency"


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

    async def close(self) -> None:
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

    # -- RabbitMQ ------------------------------------------------------------------------------------
    async def amqp(self) -> AbstractRobustConnection:
        """The process's one robust RabbitMQ connection, opened on first use."""
        if not self.settings.amqp_url:
            raise ConfigurationError("RabbitMQ is not configured: set AMQP_URL")
        async with self._amqp_lock:
            if self._amqp is None:
                import aio_pika

                try:
                    self._amqp = await aio_pika.connect_robust(
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
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        message = aio_pika.Message(
            body,
            headers=dict(headers or {}),
            message_id=message_id,
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await channel.default_exchange.publish(message, routing_key=queue, timeout=10)

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

    # -- idempotency ---------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def once(
        self, key: str, *, ttl: timedelta = timedelta(days=7), lease: timedelta = timedelta(seconds=60)
    ) -> AsyncIterator[None]:
        """Run the block at most once per ``key`` (e.g. ``f"{event['source']}|{event['id']}"``).

        The claim is recorded in MongoDB (collection ``kfaas_idempotency``, expiring after ``ttl``). If the
        block raises, the claim is released so a redelivery can try again. A second delivery of a key that
        completed raises :class:`AlreadyDone`; one that arrives while another holds a live lease raises
        :class:`InProgress` (a retryable failure). A claim whose holder died is taken over after ``lease``.
        """
        from pymongo.errors import DuplicateKeyError

        coll = self.db[IDEMPOTENCY_COLLECTION]
        await self._ensure_ttl(coll)
        now = datetime.now(UTC)
        try:
            await coll.insert_one(
                {"_id": key, "state": "running", "lease_until": now + lease, "expires_at": now + ttl}
            )
        except DuplicateKeyError:
            taken = await coll.find_one_and_update(
                {"_id": key, "state": "running", "lease_until": {"$lt": now}},
                {"$set": {"lease_until": now + lease}},
            )
            if taken is None:
                existing = await coll.find_one({"_id": key})
                if existing is not None and existing.get("state") == "done":
                    raise AlreadyDone(key) from None
                raise InProgress(f"another delivery holds {key!r}") from None
        try:
            yield
        except BaseException:
            await coll.delete_one({"_id": key, "state": "running"})
            raise
        await coll.update_one({"_id": key}, {"$set": {"state": "done", "done_at": datetime.now(UTC)}})

    async def _ensure_ttl(self, coll: Any) -> None:
        """The TTL index behind :meth:`once`, made on first use. FerretDB 1.x has no TTL indexes: there the
        claims stay until deleted, which is correct, only not compact (logged once)."""
        if self._ttl_ready:
            return
        from pymongo.errors import OperationFailure

        try:
            await coll.create_index("expires_at", expireAfterSeconds=0, name="expires_at_ttl")
        except OperationFailure as exc:
            self.log.warning("no TTL index on %s (claims will not expire): %s", IDEMPOTENCY_COLLECTION, exc)
        self._ttl_ready = True
