"""What a dev broker holds on its RabbitMQ while it runs, and who holds it when another broker wants it too.

A dev broker owns its namespace (the exchanges ``b.<namespace>.*`` and trigger queues ``t.<namespace>.*``)
and consumes the queue of each queue source. The queue is the application's own and keeps its name, as a
RabbitmqSource with ``predeclared: true`` consumes ``queueName`` as it is on Knative. Two brokers sharing
either would take each other's messages without a word, so a broker claims both when it connects:

- its namespace: the exclusive queue ``kfaas.broker.<namespace>``;
- each source queue: the exclusive queue ``kfaas.source.<queue>``, and the queue itself must have no
  consumer yet (a client that is not a kfaas broker would share its messages too).

RabbitMQ deletes an exclusive queue with the connection that declared it (a broker that stops or dies
frees its claims) and refuses it to every other connection with RESOURCE_LOCKED. Exclusive *consumers*
would be simpler but quorum queues ignore the flag (RabbitMQ 3.10 lets a second exclusive consumer in).

A claim queue also says who holds it: the broker consumes its claim queues and answers every message sent
there with its namespace, host, pid and start time (to the message's ``reply_to``). A refused broker asks,
so its error names the other one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

__all__ = ["BrokerConflict", "Claims", "namespace_claim", "source_claim"]

ASK_TIMEOUT = 1.0  # seconds a refused broker waits for the holder to say who it is
_MAX_NAME = 255  # RabbitMQ's limit on a queue name, in bytes


class BrokerConflict(RuntimeError):
    """Another broker (or another consumer) holds what this broker needs; the message names it."""


def _name(prefix: str, value: str) -> str:
    name = prefix + value
    if len(name.encode()) > _MAX_NAME:
        name = prefix + hashlib.sha256(value.encode()).hexdigest()
    return name


def namespace_claim(namespace: str) -> str:
    return _name("kfaas.broker.", namespace)


def source_claim(queue: str) -> str:
    return _name("kfaas.source.", queue)


def _where(who: dict[str, Any]) -> str:
    if not who:
        return f"it did not say who it is within {ASK_TIMEOUT:g}s"
    return f"pid {who.get('pid')} on {who.get('host')}, since {who.get('since')}"


class Claims:
    """The claims of one broker on its connection; :meth:`take` raises :class:`BrokerConflict`."""

    def __init__(self, connection: AbstractRobustConnection, namespace: str) -> None:
        self.connection = connection
        self.namespace = namespace
        self.identity = {
            "namespace": namespace,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._channel: AbstractChannel | None = None

    async def take(self, source_queues: dict[str, str]) -> None:
        """Claim the namespace and every source queue (``{queue: source name}``), or raise naming the holder."""
        import aiormq

        self._channel = await self.connection.channel()
        claims = {namespace_claim(self.namespace): None, **{source_claim(q): q for q in source_queues}}
        for claim, queue in claims.items():
            # declared first on a channel of its own: RabbitMQ closes the channel that a refusal hits
            probe = await self.connection.channel()
            try:
                await probe.declare_queue(claim, exclusive=True, auto_delete=True)
            except aiormq.exceptions.ChannelLockedResource:
                who = await self._ask(claim)
                await self.release()
                if queue is None:
                    raise BrokerConflict(
                        f"namespace {self.namespace!r} is in use on this RabbitMQ by another kfaas broker "
                        f"({_where(who)}): two brokers in one namespace take each other's events; stop that "
                        "one or give this one another --namespace (KFAAS_NAMESPACE)"
                    ) from None
                holder = f"the kfaas broker of namespace {who.get('namespace')!r} ({_where(who)})"
                raise BrokerConflict(self._queue_taken(queue, source_queues[queue], holder)) from None
            finally:
                with contextlib.suppress(Exception):
                    await probe.close()
            # held on the claims' channel: a robust connection declares and consumes it again after a
            # reconnect, and closing the channel (the consumer gone) deletes it (auto-delete)
            lock = await self._channel.declare_queue(claim, exclusive=True, auto_delete=True)
            await lock.consume(self._answer, no_ack=True)
            if queue is not None:
                await self._no_other_consumer(queue, source_queues[queue])

    async def _no_other_consumer(self, queue: str, source: str) -> None:
        import aio_pika

        channel = await self.connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return  # not declared yet: nobody consumes it
        else:
            count = declared.declaration_result.consumer_count or 0
            with contextlib.suppress(Exception):
                await channel.close()
        if count:
            await self.release()
            who = f"{count} consumer(s) that are not a kfaas broker (or a broker of this run that just died)"
            raise BrokerConflict(self._queue_taken(queue, source, who))

    def _queue_taken(self, queue: str, source: str, holder: str) -> str:
        return (
            f"queue {queue!r} of the queue source {source} is consumed by {holder}: two consumers of one "
            "queue take each other's messages; stop that one, or give this application a queue of its own "
            "(the source's `queue`) or a RabbitMQ vhost of its own (the path of AMQP_URL)"
        )

    async def _answer(self, message: AbstractIncomingMessage) -> None:
        """Tell whoever asks (a refused broker) who holds this claim."""
        import aio_pika

        if not message.reply_to or self._channel is None:
            return
        with contextlib.suppress(Exception):
            await self._channel.default_exchange.publish(
                aio_pika.Message(json.dumps(self.identity).encode(), content_type="application/json"),
                routing_key=message.reply_to,
            )

    async def _ask(self, claim: str) -> dict[str, Any]:
        """The holder's own answer (namespace, host, pid, since); empty when none came in ASK_TIMEOUT."""
        import aio_pika

        channel = await self.connection.channel()
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def got(message: AbstractIncomingMessage) -> None:
            if not answer.done():
                answer.set_result(bytes(message.body))

        try:
            reply = await channel.declare_queue(exclusive=True, auto_delete=True)
            await reply.consume(got, no_ack=True)
            await channel.default_exchange.publish(
                aio_pika.Message(b"", reply_to=reply.name), routing_key=claim
            )
            who = json.loads(await asyncio.wait_for(answer, ASK_TIMEOUT))
        except (TimeoutError, ValueError, aio_pika.exceptions.AMQPError):
            return {}
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return who if isinstance(who, dict) else {}

    async def release(self) -> None:
        """Give the claims back (closing the connection does it too)."""
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()
