from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import httpx
import pytest
from order_functions import load_function, valid_order
from tcpproxy import TcpProxy

from kfaas import Context, Settings
from kfaas.runtime.outbox import MARKER, OUTBOX_COLLECTION

pytestmark = pytest.mark.integration

fn = load_function("place-order")


def with_context(app: Any, ctx: Context) -> Any:
    """What ``kfaas serve`` does for an ASGI target: the Context in the request state."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        scope["state"] = {**scope.get("state", {}), "kfaas": ctx}
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
async def queue_ctx(ctx: Context, amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Context]:
    """The test's Context plus RabbitMQ, and a queue of its own (deleted afterwards)."""
    queue = f"orders-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(fn, "ORDERS_QUEUE", queue)
    full = Context(Settings(**{**_fields(ctx.settings), "amqp_url": amqp_url}))
    await full.start()
    try:
        yield full
    finally:
        channel = await full.channel()
        await channel.queue_delete(queue)
        await full.close()


def _fields(settings: Settings) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(settings, f.name) for f in fields(settings)}


async def _client(ctx: Context) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=with_context(fn.app, ctx)), base_url="http://t"
    )


async def _drain(ctx: Context) -> list[aio_pika.abc.AbstractIncomingMessage]:
    assert await ctx.outbox.flush(10), "the outbox did not send what it holds within 10s"
    return await _get_all(ctx)


async def _get_all(ctx: Context) -> list[aio_pika.abc.AbstractIncomingMessage]:
    channel = await ctx.channel()
    queue = await channel.declare_queue(fn.ORDERS_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    messages = []
    while (message := await queue.get(no_ack=False, fail=False, timeout=5)) is not None:
        await message.ack()
        messages.append(message)
    return messages


async def test_place_order_stores_enqueues_and_answers_202(queue_ctx: Context) -> None:
    order = valid_order()
    del order["id"]
    async with await _client(queue_ctx) as client:
        response = await client.post("/orders", json=order)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "placed"
    assert body["statusUrl"] == f"/orders/{body['id']}"
    assert response.headers["location"] == body["statusUrl"]
    doc = await queue_ctx.db["orders"].find_one({"_id": body["id"]})
    assert doc is not None
    assert doc["status"] == "placed"
    assert doc["totalCents"] == 2599
    assert doc[MARKER]  # stored with its outbox entry, in one write
    [message] = await _drain(queue_ctx)
    assert await queue_ctx.db[OUTBOX_COLLECTION].count_documents({}) == 0  # sent: the entry is gone
    assert message.content_type == "application/cloudevents+json"
    assert message.message_id == body["id"]
    event = json.loads(message.body)
    assert event["type"] == "com.kfaas.order.placed"
    assert event["specversion"] == "1.0"
    assert event["data"] == {**order, "id": body["id"], "total": 25.99}


async def test_total_is_computed_when_missing_and_client_id_is_kept(queue_ctx: Context) -> None:
    order = valid_order()
    del order["total"]
    async with await _client(queue_ctx) as client:
        first = await client.post("/orders", json=order)
        again = await client.post("/orders", json=order)  # a client retry with the same id
        clash = await client.post("/orders", json={**order, "items": [{"sku": "x", "qty": 1, "price": 1}]})

    assert first.status_code == 202
    assert first.json()["id"] == order["id"]
    assert again.status_code == 202
    assert clash.status_code == 409
    assert await queue_ctx.db["orders"].count_documents({}) == 1
    messages = await _drain(queue_ctx)
    assert [json.loads(m.body)["data"]["total"] for m in messages] == [25.99]  # the order's one message
    assert await queue_ctx.db[OUTBOX_COLLECTION].count_documents({}) == 0


@pytest.mark.parametrize(
    ("order", "field"),
    [
        (valid_order(items=[]), "items"),
        (valid_order(userId=""), "userId"),
        (valid_order(total=3), "total"),
        (valid_order(items=[{"sku": "a", "qty": "2", "price": 1}]), "items[0].qty"),
        (valid_order(id="$bad"), "id"),
        ({**valid_order(), "extra": 1}, "extra"),
    ],
)
async def test_invalid_orders_are_400_naming_the_field(queue_ctx: Context, order: Any, field: str) -> None:
    async with await _client(queue_ctx) as client:
        response = await client.post("/orders", json=order)
    assert response.status_code == 400
    assert field in [f["field"] for f in response.json()["fields"]]
    assert await queue_ctx.db["orders"].count_documents({}) == 0
    assert await _drain(queue_ctx) == []


async def test_without_rabbitmq_the_order_is_accepted_and_the_next_process_sends_it(
    queue_ctx: Context,
) -> None:
    """A 202 does not wait for RabbitMQ: the order's message stays in the outbox, and a process that stops
    before RabbitMQ is back leaves it to the next one, which sends it."""
    settings = _fields(queue_ctx.settings)
    first = Context(Settings(**{**settings, "amqp_url": "amqp://guest:guest@127.0.0.1:1/", "timeout": 2.0}))
    await first.start()
    try:
        async with await _client(first) as client:
            response = await client.post("/orders", json=valid_order())
        assert response.status_code == 202, response.text
        order_id = response.json()["id"]
        assert await first.db["orders"].count_documents({"_id": order_id}) == 1
        await asyncio.sleep(0.5)  # its relay tries, and fails: RabbitMQ is unreachable
        assert first.outbox.pending == 1
    finally:
        await first.close()  # a process stopping with the message unsent (SIGTERM)
    [entry] = await queue_ctx.db[OUTBOX_COLLECTION].find({}).to_list()
    assert entry["doc"] == order_id

    # the next process of place-order, which reaches RabbitMQ, sends it once started
    following = Context(Settings(**settings))
    await following.start()
    try:
        messages = await _eventually_messages(queue_ctx, 1, timeout=15)
    finally:
        await following.close()
    assert [m.message_id for m in messages] == [order_id]
    assert await queue_ctx.db[OUTBOX_COLLECTION].count_documents({}) == 0


async def _eventually_messages(ctx: Context, count: int, timeout: float) -> list[Any]:
    got: list[Any] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while len(got) < count and loop.time() < end:
        got += await _get_all(ctx)
        await asyncio.sleep(0.2)
    return got


async def test_unreachable_mongodb_is_503_and_stores_nothing(queue_ctx: Context) -> None:
    proxy = TcpProxy("127.0.0.1", urlsplit(queue_ctx.settings.mongodb_url).port or 27017)
    await proxy.start()
    url = f"mongodb://127.0.0.1:{proxy.port}/"
    cut = Context(Settings(**{**_fields(queue_ctx.settings), "mongodb_url": url, "mongodb_timeout_ms": 500}))
    await cut.start()
    await proxy.stop()
    try:
        async with await _client(cut) as client:
            response = await client.post("/orders", json=valid_order())
        assert response.status_code == 503
        assert "nothing was stored" in response.json()["error"]
    finally:
        await cut.close()
    assert await queue_ctx.db["orders"].count_documents({}) == 0
    assert await _drain(queue_ctx) == []


async def test_mongodb_gone_mid_burst_every_202_is_stored_and_sent_every_503_leaves_nothing(
    queue_ctx: Context,
) -> None:
    """MongoDB goes away for 1.5 s while 40 orders are in flight: writes whose answer was lost are retried
    until it is known whether they happened, so each answer tells the truth; the outbox entries of the
    refused orders are dropped by the relay once their lease ends."""
    proxy = TcpProxy("127.0.0.1", urlsplit(queue_ctx.settings.mongodb_url).port or 27017)
    await proxy.start()
    settings = {
        **_fields(queue_ctx.settings),
        "mongodb_url": f"mongodb://127.0.0.1:{proxy.port}/",
        "mongodb_timeout_ms": 1000,
        "timeout": 8.0,  # a write whose answer was lost is resolved within 4 s; its entry's lease is 6 s
    }
    cut = Context(Settings(**settings))
    await cut.start()
    orders = [valid_order() for _ in range(40)]
    try:
        async with await _client(cut) as client:

            async def place(order: dict[str, Any], pause: float) -> int:
                await asyncio.sleep(pause)
                return (await client.post("/orders", json=order, timeout=30)).status_code

            async def outage() -> None:
                await asyncio.sleep(0.15)
                await proxy.stop()
                await asyncio.sleep(1.5)
                await proxy.start()

            *codes, _ = await asyncio.gather(*(place(o, i * 0.01) for i, o in enumerate(orders)), outage())
        assert await cut.outbox.flush(20)
        outbox = queue_ctx.db[OUTBOX_COLLECTION]
        for _ in range(100):  # entries whose document was never stored: the relay drops them
            if not await outbox.count_documents({}):
                break
            await asyncio.sleep(0.2)
        assert await outbox.count_documents({}) == 0
    finally:
        await cut.close()
        await proxy.stop()
    assert set(codes) <= {202, 503}, codes
    accepted = {o["id"] for o, code in zip(orders, codes, strict=True) if code == 202}
    stored = {d["_id"] for d in await queue_ctx.db["orders"].find({}, {"_id": 1}).to_list()}
    sent = {m.message_id for m in await _drain(queue_ctx)}
    assert stored == accepted, (sorted(stored - accepted), sorted(accepted - stored))
    assert sent == accepted
    print(f"{len(accepted)} of {len(orders)} accepted, {len(orders) - len(accepted)} refused with 503")
