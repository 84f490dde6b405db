"""The order pipeline end to end under ``kfaas dev``: queue → process-order → broker → notify-email and
order-analytics; the HTTP path through the gateway; dead letters and redrive; a RabbitMQ outage; the ping."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiormq
import httpx
import pytest
from kfaas_system import DevRun, fast_delivery, placed_event

from kfaas.dev.smtp import MailSink, free_port


def new_order(user_id: str, cents: int = 2599) -> dict[str, Any]:
    return {
        "id": f"o-{uuid.uuid4().hex[:12]}",
        "userId": user_id,
        "items": [{"sku": "book", "qty": 1, "price": cents / 100}],
        "total": cents / 100,
    }


@pytest.fixture
async def publisher(dev: DevRun, amqp_url: str) -> AsyncIterator[Any]:
    """Publishes raw bodies on the run's orders queue with publisher confirms (a robust connection)."""
    connection = await aio_pika.connect_robust(amqp_url, timeout=10)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(dev.queue, durable=True, arguments={"x-queue-type": "quorum"})

    async def publish(body: bytes, content_type: str = "application/cloudevents+json") -> None:
        message = aio_pika.Message(
            body, content_type=content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        await channel.default_exchange.publish(message, routing_key=dev.queue, timeout=10)

    yield publish
    await connection.close()


async def add_user(db: Any, email: str) -> str:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    await db.users.insert_one({"_id": user_id, "email": email, "name": "Test"})
    return user_id


async def mails_to(sink: MailSink, to: str, count: int, timeout: float) -> list[Any]:
    return await asyncio.to_thread(sink.wait_for, count, timeout, to)


async def test_order_from_the_queue_is_stored_emailed_once_and_counted(
    dev: DevRun, db: Any, publisher: Any, mail_sink: MailSink
) -> None:
    await dev.start()
    user = await add_user(db, "ada@example.com")
    order = new_order(user, 1250)
    await publisher(placed_event(order))

    doc = await dev.eventually(
        lambda: db.orders.find_one({"_id": order["id"], "status": "processed"}), 20, "order processed"
    )
    assert doc["totalCents"] == 1250
    mails = await mails_to(mail_sink, "ada@example.com", 1, 20)
    assert [m["Subject"] for m in mails] == [f"Your order {order['id']} has been processed"]
    totals = await dev.eventually(lambda: db.order_totals_by_user.find_one({"_id": user}), 20, "user totals")
    assert (totals["orders"], totals["totalCents"]) == (1, 1250)
    day = doc["placedAt"].date().isoformat()
    by_day = await db.order_totals_by_day.find_one({"_id": day})
    assert by_day is not None
    assert (by_day["orders"], by_day["totalCents"]) == (1, 1250)


async def test_order_events_reach_the_audit_log_in_order_through_the_stream(
    dev: DevRun, db: Any, publisher: Any
) -> None:
    await dev.start()
    user = await add_user(db, "eve@example.com")
    orders = [new_order(user, 100 + i) for i in range(3)]
    for order in orders:
        await publisher(placed_event(order))

    async def audited() -> list[dict[str, Any]] | None:
        entries = [e async for e in db.order_audit.find().sort("seq")]
        return entries if len(entries) >= 6 else None

    entries = await dev.eventually(audited, 40, "six audit entries (placed and processed of three orders)")
    assert len(entries) == 6
    for order in orders:  # each order's two events, once each (two feeds: their relative order is not kept)
        history = sorted(e["type"] for e in entries if e["orderId"] == order["id"])
        assert history == ["com.kfaas.order.placed", "com.kfaas.order.processed"]
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(set(seqs))
    status = await asyncio.to_thread(dev.stream_status)
    assert status["lag"] == 0, status
    assert status["checkpoint"] == status["last"] == seqs[-1]


async def test_same_order_twice_is_one_document_and_one_email(
    dev: DevRun, db: Any, publisher: Any, mail_sink: MailSink
) -> None:
    await dev.start()
    user = await add_user(db, "bob@example.com")
    order = new_order(user)
    await publisher(placed_event(order))
    await publisher(json.dumps(order).encode(), "application/json")  # the same order from a legacy producer

    # both deliveries reach notify-email (process-order answers each with the same event) ...
    await dev.wait_for_line('"function": "notify-email", "method": "POST", "path": "/", "status": 20', 30, 2)
    # ... and order-analytics
    await dev.wait_for_line(
        '"function": "order-analytics", "method": "POST", "path": "/", "status": 20', 30, 2
    )
    await asyncio.sleep(0.5)
    assert await db.orders.count_documents({"_id": order["id"]}) == 1
    assert len(await mails_to(mail_sink, "bob@example.com", 1, 10)) == 1
    assert len(mail_sink.messages) == 1
    totals = await db.order_totals_by_user.find_one({"_id": user})
    assert (totals["orders"], totals["totalCents"]) == (1, 2599)


async def test_failing_subscriber_is_retried_dead_lettered_and_redriven_once(
    dev: DevRun, db: Any, publisher: Any, mail_sink: MailSink
) -> None:
    dev.edit(
        "notify-email", lambda d: d["triggers"][0].update(delivery=fast_delivery(retry=3, delay="PT0.3S"))
    )
    await dev.start()
    user = await add_user(db, "late@example.com")
    mail_sink.stop()  # SMTP is down: notify-email answers 503 (retryable) until it is back
    order = new_order(user)
    await publisher(placed_event(order))

    await dev.wait_for_line("notify-email-processed", 30)
    await dev.eventually(
        lambda: asyncio.to_thread(
            lambda: "1 dead letter" in dev.dlq("list", "--trigger", "notify-email-processed").stdout
        ),
        30,
        "a dead letter in notify-email-processed",
    )
    attempts = [
        line for line in dev.lines if "trigger notify-email-processed" in line and order["id"] in line
    ]
    assert sum("retry" in line for line in attempts) == 3, "\n".join(attempts)
    delays = [float(m) for line in attempts for m in re.findall(r"in (\d+\.\d+)s", line)]
    assert delays == [0.3, 0.6, 1.2], delays  # exponential from PT0.3S
    shown = dev.dlq("show", "notify-email-processed", f"order-processed-{order['id']}")
    assert shown.returncode == 0, shown.stderr
    assert "code 503" in shown.stdout
    assert "SMTP relay" in shown.stdout  # the reason travels with the dead letter

    mail_sink.start()
    redrive = dev.dlq("redrive", "notify-email-processed", "--all")
    assert redrive.returncode == 0, redrive.stderr
    assert "redrove 1 event" in redrive.stdout
    assert len(await mails_to(mail_sink, "late@example.com", 1, 20)) == 1
    await asyncio.sleep(1.0)
    assert len(mail_sink.messages) == 1
    assert "0 dead letter" in dev.dlq("list", "--trigger", "notify-email-processed").stdout


async def test_a_missing_user_is_dead_lettered_at_once_and_healthy_orders_are_not_held_up(
    dev: DevRun, db: Any, publisher: Any, mail_sink: MailSink
) -> None:
    """Emails for users that do not exist are a permanent failure (422 with the reason, no retries), so
    they never hold notify-email's delivery slots while healthy events queue."""
    await dev.start()
    poison = [new_order(f"u-missing-{i}") for i in range(6)]  # more than the trigger's 4 slots
    for order in poison:
        await publisher(placed_event(order))
    user = await add_user(db, "flow@example.com")
    healthy = [new_order(user) for _ in range(5)]
    for order in healthy:
        await publisher(placed_event(order))

    assert len(await mails_to(mail_sink, "flow@example.com", 5, 30)) == 5

    def listed() -> str:
        return dev.dlq("list", "--trigger", "notify-email-processed").stdout

    await dev.eventually(lambda: asyncio.to_thread(lambda: "6 dead letter" in listed()), 30, "6 dead letters")
    retried = [line for line in dev.lines if " retry " in line and any(o["id"] in line for o in poison)]
    assert not retried, retried
    shown = dev.dlq("show", "notify-email-processed", f"order-processed-{poison[0]['id']}").stdout
    assert "code 422" in shown
    assert "user 'u-missing-0'" in shown
    assert "does not exist" in shown

    # once the user exists, redriving the event sends its email
    await db.users.insert_one({"_id": "u-missing-0", "email": "found@example.com"})
    redrive = dev.dlq("redrive", "notify-email-processed", "--id", f"order-processed-{poison[0]['id']}")
    assert redrive.returncode == 0, redrive.stderr
    assert len(await mails_to(mail_sink, "found@example.com", 1, 20)) == 1


async def test_malformed_orders_are_dead_lettered_with_a_reason_and_the_flow_goes_on(
    dev: DevRun, db: Any, publisher: Any, mail_sink: MailSink
) -> None:
    dev.edit(
        "process-order",
        lambda d: [t.update(delivery=fast_delivery(retry=1, delay="PT0.1S")) for t in d["triggers"]],
    )
    await dev.start()
    user = await add_user(db, "cy@example.com")
    await publisher(b"{this is not json", "application/json")
    bad = new_order(user)
    bad["items"] = []
    await publisher(placed_event(bad))
    good = new_order(user)
    await publisher(placed_event(good))

    await dev.eventually(
        lambda: db.orders.find_one({"_id": good["id"], "status": "processed"}), 20, "the good order processed"
    )
    assert len(await mails_to(mail_sink, "cy@example.com", 1, 20)) == 1

    def dead(trigger: str) -> str:
        return dev.dlq("show", trigger).stdout

    legacy = await dev.eventually(
        lambda: asyncio.to_thread(dead, "process-order-legacy"), 20, "legacy dead letter"
    )
    assert "code 422" in legacy
    assert "body is not JSON" in legacy
    placed = await dev.eventually(
        lambda: asyncio.to_thread(dead, "process-order-placed"), 20, "placed dead letter"
    )
    assert "items must be a non-empty list" in placed
    assert await db.orders.count_documents({"_id": bad["id"]}) == 0


async def test_http_order_through_the_gateway_goes_from_placed_to_processed(
    dev: DevRun, db: Any, mail_sink: MailSink
) -> None:
    await dev.start()
    async with httpx.AsyncClient(base_url=dev.base_url, timeout=10) as client:
        user = await client.post("/users", json={"email": "dee@example.com", "name": "Dee"})
        assert user.status_code == 201, user.text
        placed = await client.post(
            "/orders", json={"userId": user.json()["id"], "items": [{"sku": "pen", "qty": 3, "price": 1.5}]}
        )
        assert placed.status_code == 202, placed.text
        assert placed.headers["access-control-allow-origin"] == "*"
        status_url = placed.json()["statusUrl"]

        async def processed() -> Any:
            response = await client.get(status_url)
            return response.json() if response.json().get("status") == "processed" else None

        order = await dev.eventually(processed, 20, f"GET {status_url} showing processed")
        missing = await client.get("/orders/no-such-order")
    assert order["total"] == 4.5
    assert missing.status_code == 404
    assert len(await mails_to(mail_sink, "dee@example.com", 1, 20)) == 1


async def test_rabbitmq_outage_mid_stream_loses_no_order_and_doubles_none(
    dev: DevRun, db: Any, publisher: Any, mail_sink: MailSink, rabbitmq_ctl: Any
) -> None:
    await dev.start()
    user = await add_user(db, "eve@example.com")
    orders = [new_order(user, 100 + i) for i in range(20)]
    for order in orders[:10]:
        await publisher(placed_event(order))
    await rabbitmq_ctl.stop_app()
    await asyncio.sleep(2)
    await rabbitmq_ctl.start_app()
    for order in orders[10:]:
        await dev.eventually(  # the publisher's robust connection needs a moment to come back
            lambda order=order: _try(publisher(placed_event(order))), 60, "publishing after the restart"
        )

    async def all_processed() -> bool:
        return await db.orders.count_documents({"status": "processed"}) == len(orders)

    await dev.eventually(all_processed, 120, "all 20 orders processed")
    mails = await mails_to(mail_sink, "eve@example.com", 20, 60)
    await asyncio.sleep(1.0)
    subjects = sorted(m["Subject"] for m in mail_sink.messages)
    assert subjects == sorted(f"Your order {o['id']} has been processed" for o in orders), len(mails)
    totals = await dev.eventually(
        lambda: db.order_totals_by_user.find_one({"_id": user, "orders": len(orders)}), 30, "analytics of 20"
    )
    assert totals["totalCents"] == sum(100 + i for i in range(20))


async def _try(publishing: Any) -> bool:
    try:
        await publishing
    except (
        TimeoutError,
        aio_pika.exceptions.AMQPError,
        aiormq.exceptions.ChannelInvalidStateError,  # the robust channel is still reconnecting
        ConnectionError,
        OSError,
    ):
        return False
    return True


async def test_ping_source_fires_on_schedule_and_reports_the_previous_day(
    dev: DevRun, db: Any, mail_sink: MailSink
) -> None:
    await db.order_totals_by_day.insert_one({"_id": "2026-04-09", "orders": 2, "totalCents": 5000})
    # the broker's clock starts 2 s before the nightly 01:00 UTC schedule
    await dev.start("--clock-start", "2026-04-10T00:59:58+00:00")
    mails = await mails_to(mail_sink, "reports@kfaas.local", 1, 20)
    assert [m["Subject"] for m in mails] == ["Orders on 2026-04-09: 2, total 50.00"]


async def test_without_an_smtp_relay_dev_runs_its_own_sink_and_the_functions_use_it(
    dev: DevRun, db: Any
) -> None:
    """No SMTP_HOST: kfaas dev starts its mail sink before the functions and gives it to those that send
    email, and the email of an order shows in its output (the sink on a port of its own here, since the
    default 1025 may be taken on a shared machine)."""
    dev.use_test_sink = False
    port = free_port()
    await dev.start("--mail-sink", str(port))
    assert dev.count(f"mail sink on smtp://127.0.0.1:{port}") == 1
    user_id = await add_user(db, "own-sink@example.com")
    async with httpx.AsyncClient(base_url=dev.base_url, timeout=10) as client:
        placed = await client.post(
            "/orders", json={"userId": user_id, "items": [{"sku": "pen", "qty": 1, "price": 2}]}
        )
    assert placed.status_code == 202, placed.text
    await dev.wait_for_line(
        f"mail to own-sink@example.com: Your order {placed.json()['id']} has been processed", 30
    )
