"""Queue source (RabbitmqSource semantics) and ping source (PingSource semantics) of the dev broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import pytest
from brokertest import Harness, fn

from kfaas.broker import DevBroker, ManualClock
from kfaas.broker._sources import PING_TYPE, QUEUE_TYPE, PingSourceRunner
from kfaas.spec import AppSpec, PingSource


@pytest.mark.integration
async def test_queue_source_turns_messages_into_events(harness: Harness) -> None:
    queue = f"orders-{uuid.uuid4().hex[:8]}"
    sink = await harness.subscriber("sink")
    source = {"kind": "queue", "name": "orders", "queue": queue}
    broker = await harness.broker(fn("sink", {"name": "t"}, sources=[source]))
    connection = await aio_pika.connect(harness.amqp_url)
    try:
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            send = channel.default_exchange.publish
            await send(
                aio_pika.Message(b'{"orderId": "o-1"}', message_id="m-1", content_type="application/json"),
                routing_key=queue,
            )
            structured = {
                "specversion": "1.0",
                "id": "ce-2",
                "source": "/shop",
                "type": "com.shop.order",
                "data": 7,
            }
            await send(
                aio_pika.Message(
                    json.dumps(structured).encode(), content_type="application/cloudevents+json"
                ),
                routing_key=queue,
            )
            binary = {
                "ce-specversion": "1.0",
                "ce-id": "ce-3",
                "ce-source": "/shop",
                "ce-type": "com.shop.bin",
            }
            await send(
                aio_pika.Message(b"plain", headers=binary, content_type="text/plain"), routing_key=queue
            )
            await send(aio_pika.Message(b"no id at all"), routing_key=queue)
            got = {e["type"] + ":" + e["id"]: e for e in await sink.wait_for(4)}

            plain = got[f"{QUEUE_TYPE}:m-1"]
            assert (
                plain["source"]
                == f"/apis/v1/namespaces/{harness.namespace}/rabbitmqsources/sink-orders#{queue}"
            )
            assert plain["subject"] == "m-1"
            assert plain.data == {"orderId": "o-1"}
            assert got["com.shop.order:ce-2"]["source"] == "/shop"
            assert got["com.shop.order:ce-2"].data == 7
            assert got["com.shop.bin:ce-3"].data in (b"plain", "plain")
            anonymous = [e for e in got.values() if e["type"] == QUEUE_TYPE and e["id"] != "m-1"]
            assert len(anonymous) == 1
            assert uuid.UUID(anonymous[0]["id"])  # generated

            await asyncio.sleep(0.2)
            left = await channel.declare_queue(queue, passive=True)
            assert (
                left.declaration_result.message_count == 0
            )  # every message acked after the broker confirmed
    finally:
        await broker.stop()
        cleanup = await aio_pika.connect(harness.amqp_url)
        async with cleanup:
            await (await cleanup.channel()).queue_delete(queue)


@pytest.mark.integration
async def test_ping_source_fires_on_the_injected_clock(harness: Harness) -> None:
    clock = ManualClock(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))
    sink = await harness.subscriber("reporter")
    ping = {"kind": "ping", "name": "daily", "schedule": "* * * * *", "data": {"report": "daily"}}
    await harness.broker(
        fn("reporter", {"name": "t", "filter": {"type": PING_TYPE}}, sources=[ping]), clock=clock
    )
    for _ in range(3):
        for _ in range(200):
            if clock.sleepers:
                break
            await asyncio.sleep(0.01)
        await clock.advance(timedelta(seconds=60))
    got = await sink.wait_for(3)
    assert [e["time"] for e in got] == [f"2026-01-01T00:0{m}:00+00:00" for m in (1, 2, 3)]
    assert {e["source"] for e in got} == {
        f"/apis/v1/namespaces/{harness.namespace}/pingsources/reporter-daily"
    }
    assert all(e.data == {"report": "daily"} for e in got)
    assert clock.now() == datetime(2026, 1, 1, 0, 3, 30, tzinfo=UTC)


def test_ping_schedule_follows_the_time_zone() -> None:
    app = AppSpec(functions=[], root=Path("functions"))
    broker = DevBroker(app, "amqp://unused", str)
    spec = PingSource(name="p", schedule="0 9 * * *", timezone="Europe/Berlin")
    runner = PingSourceRunner(broker, fn("f"), spec)
    fire = runner.next_fire(datetime(2026, 1, 1, 0, 0, tzinfo=UTC))
    assert fire.astimezone(UTC) == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)  # CET is UTC+1 in winter
    summer = runner.next_fire(datetime(2026, 7, 1, 0, 0, tzinfo=UTC))
    assert summer.astimezone(UTC) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)  # CEST is UTC+2
