"""The shipped delivery policies outlast a MongoDB outage of 30 s: orders queued while every function's MongoDB
is unreachable are processed, emailed and counted once it is back, with nothing dead-lettered.

``kfaas dev`` runs the shipped descriptions unchanged (only the orders queue is renamed); every function
reaches MongoDB through a TCP proxy the test cuts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
from kfaas_system import DevRun, dead_letter_counts, placed_event
from tcpproxy import TcpProxy

from kfaas.dev.smtp import MailSink

OUTAGE = 30.0
ORDERS = 6


@pytest.mark.timeout(600)
async def test_a_30_second_mongodb_outage_costs_no_dead_letter(
    dev: DevRun, db: Any, mongodb_url: str, amqp_url: str, mail_sink: MailSink
) -> None:
    proxy = TcpProxy("127.0.0.1", urlsplit(mongodb_url).port or 27017)
    await proxy.start()
    dev.mongodb_url = f"mongodb://127.0.0.1:{proxy.port}/"
    try:
        await dev.start()
        user = f"u-{uuid.uuid4().hex[:8]}"
        await db.users.insert_one({"_id": user, "email": "outage@example.com", "name": "Outage"})  # direct

        await proxy.stop()
        cut = time.monotonic()
        connection = await aio_pika.connect(amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(dev.queue, durable=True, arguments={"x-queue-type": "quorum"})
            orders = []
            for i in range(ORDERS):
                order = {
                    "id": f"o-{uuid.uuid4().hex[:12]}",
                    "userId": user,
                    "items": [{"sku": "book", "qty": 1, "price": (1000 + i) / 100}],
                    "total": (1000 + i) / 100,
                }
                orders.append(order)
                message = aio_pika.Message(
                    placed_event(order),
                    content_type="application/cloudevents+json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await channel.default_exchange.publish(message, routing_key=dev.queue, timeout=10)
        # the outage is felt: process-order's deliveries fail and wait for their retries
        await dev.wait_for_line("trigger process-order-placed: event", 30)
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - cut)))
        retried = dev.count("trigger process-order-placed: event", "retry")
        await proxy.start()
        restored = time.monotonic() - cut

        mails = await asyncio.to_thread(mail_sink.wait_for, ORDERS, 180, "outage@example.com")

        async def counted() -> bool:
            totals = await db.order_totals_by_user.find_one({"_id": user})
            return totals is not None and totals["orders"] >= ORDERS

        await dev.eventually(counted, 120, f"{ORDERS} orders counted by order-analytics")
        await asyncio.sleep(2)  # a duplicate still on its way would arrive within this
        totals = await db.order_totals_by_user.find_one({"_id": user})
        dead = await dead_letter_counts(amqp_url, dev)
        print(f"MongoDB unreachable for {restored:.1f}s; {retried} retries logged by process-order-placed")

        assert restored >= OUTAGE
        assert retried >= ORDERS  # every order met the outage at least once
        assert len(mails) == ORDERS
        sent = [m for m in mail_sink.messages if "outage@example.com" in str(m["To"])]
        assert len(sent) == ORDERS  # once each: no second email arrived meanwhile
        assert totals is not None
        assert totals["orders"] == ORDERS
        assert totals["totalCents"] == sum(1000 + i for i in range(ORDERS))
        assert await db.orders.count_documents({"status": "processed"}) == ORDERS
        assert sum(dead.values()) == 0, dead
    finally:
        await proxy.stop()
