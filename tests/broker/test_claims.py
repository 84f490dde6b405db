"""A dev broker claims its namespace and its source queues on RabbitMQ; a second one is refused, naming it.

Two ``kfaas dev`` runs on one RabbitMQ used to consume each other's ``orders`` (a queue source's queue keeps
its own name, as RabbitmqSource consumes ``queueName`` on Knative); two brokers of one namespace would share
every trigger queue. kfaas.broker._claims refuses both, and a plain AMQP consumer of a source queue too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from brokertest import Harness, event, fn

from kfaas.broker import BrokerConflict, DevBroker, RabbitMQUnreachable
from kfaas.spec import AppSpec

pytestmark = pytest.mark.integration


def source_fn(name: str, queue: str) -> Any:
    return fn(name, {"name": "t"}, sources=[{"kind": "queue", "name": "q", "queue": queue}])


async def other_broker(harness: Harness, namespace: str, *functions: Any) -> DevBroker:
    app = AppSpec(functions=list(functions), root=Path("functions"))
    return DevBroker(app, harness.amqp_url, lambda name: harness.subscribers[name].url, namespace=namespace)


@pytest.fixture
async def queue(harness: Harness) -> AsyncIterator[str]:
    name = f"claims-{uuid.uuid4().hex[:10]}"
    yield name
    connection = await aio_pika.connect(harness.amqp_url)
    async with connection:
        channel = await connection.channel()
        with contextlib.suppress(Exception):
            await channel.queue_delete(name)


async def publish(amqp_url: str, queue: str, count: int) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for n in range(count):
            await channel.default_exchange.publish(
                aio_pika.Message(f'{{"n": {n}}}'.encode()), routing_key=queue
            )


async def test_a_second_namespace_on_a_source_queue_is_refused_naming_the_first(
    harness: Harness, queue: str
) -> None:
    sink = await harness.subscriber("sink")
    await harness.subscriber("thief")
    await harness.broker(source_fn("sink", queue))
    second = await other_broker(harness, f"other-{uuid.uuid4().hex[:8]}", source_fn("thief", queue))
    with pytest.raises(BrokerConflict) as refused:
        await second.start()
    message = str(refused.value)
    assert (
        f"queue {queue!r} of the queue source thief-q is consumed by the kfaas broker of namespace" in message
    )
    assert f"{harness.namespace!r} (pid {os.getpid()} on " in message
    assert not second.ready  # it gave its connection back
    await publish(harness.amqp_url, queue, 10)
    assert len(await sink.wait_for(10)) == 10  # every message reached the first broker's subscriber
    await asyncio.sleep(0.3)
    assert harness.subscribers["thief"].events == []


async def test_a_second_broker_in_a_namespace_is_refused(harness: Harness) -> None:
    await harness.subscriber("sink")
    await harness.broker(fn("sink", {"name": "t"}))
    second = await other_broker(harness, harness.namespace, fn("sink", {"name": "t"}))
    with pytest.raises(
        BrokerConflict, match=f"namespace {harness.namespace!r} is in use on this RabbitMQ by another"
    ):
        await second.start()


async def test_a_consumer_that_is_not_kfaas_is_refused_too(harness: Harness, queue: str) -> None:
    await harness.subscriber("sink")
    connection = await aio_pika.connect(harness.amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})

        async def ignore(message: Any) -> None:
            return None

        await declared.consume(ignore)
        with pytest.raises(BrokerConflict, match=r"1 consumer\(s\) that are not a kfaas broker"):
            await harness.broker(source_fn("sink", queue))


async def test_claims_end_with_the_broker_and_survive_a_reconnect(
    harness: Harness, queue: str, rabbitmq_ctl: Any
) -> None:
    await harness.subscriber("sink")
    first = await harness.broker(source_fn("sink", queue))
    await first.stop()
    harness.brokers.remove(first)
    again = await harness.broker(source_fn("sink", queue))  # a stopped broker left no claim behind
    out = await rabbitmq_ctl.run("list_connections", "-q", "pid", "client_properties")
    pids = [line.split("\t")[0] for line in out.splitlines() if f"kfaas-broker-{harness.namespace}" in line]
    await rabbitmq_ctl.run("close_connection", pids[0], "test")
    for _ in range(300):  # robust reconnect within its 5 s interval, claims declared again
        if again.ready:
            with contextlib.suppress(Exception):
                await again.publish("default", event(id="after"))
                break
        await asyncio.sleep(0.05)
    await harness.subscribers["sink"].wait_for(1, timeout=15)
    second = await other_broker(harness, f"other-{uuid.uuid4().hex[:8]}", source_fn("sink", queue))
    with pytest.raises(BrokerConflict, match="is consumed by the kfaas broker of namespace"):
        await second.start()


async def test_an_unreachable_rabbitmq_is_named_without_its_password() -> None:
    app = AppSpec(functions=[fn("sink", {"name": "t"})], root=Path("functions"))
    broker = DevBroker(app, "amqp://kfaas:s3cret@127.0.0.1:1/", str)
    with pytest.raises(RabbitMQUnreachable) as caught:
        await broker.start()
    assert str(caught.value).startswith("RabbitMQ at amqp://kfaas:***@127.0.0.1:1/ is not reachable: ")
