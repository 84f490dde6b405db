from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest
from order_functions import load_function, valid_order

from kfaas import Context, Settings

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
    [message] = await _drain(queue_ctx)
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
    assert [json.loads(m.body)["data"]["total"] for m in messages] == [25.99, 25.99]


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


async def test_unreachable_rabbitmq_is_503_and_withdraws_the_order(ctx: Context) -> None:
    dead = Context(Settings(**{**_fields(ctx.settings), "amqp_url": "amqp://guest:guest@127.0.0.1:1/"}))
    await dead.start()
    try:
        async with await _client(dead) as client:
            response = await client.post("/orders", json=valid_order())
        assert response.status_code == 503
        assert "queue" in response.json()["error"]
        assert await dead.db["orders"].count_documents({}) == 0
    finally:
        await dead.close()
