from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from order_functions import load_function

from kfaas import Context, Settings

pytestmark = pytest.mark.integration

fn = load_function("get-order")


def _client(ctx: Context) -> httpx.AsyncClient:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["state"] = {"kfaas": ctx}
        await fn.app(scope, receive, send)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_shows_the_order_and_its_status(ctx: Context) -> None:
    placed = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    await ctx.db["orders"].insert_one(
        {
            "_id": "o-1",
            "userId": "u-1",
            "items": [{"sku": "a", "qty": 1, "price": 2.5}],
            "total": 2.5,
            "totalCents": 250,
            "status": "placed",
            "placedAt": placed,
        }
    )
    async with _client(ctx) as client:
        placed_view = (await client.get("/orders/o-1")).json()
        await ctx.db["orders"].update_one(
            {"_id": "o-1"}, {"$set": {"status": "processed", "processedAt": placed}}
        )
        processed_view = await client.get("/orders/o-1")

    assert placed_view == {
        "id": "o-1",
        "userId": "u-1",
        "items": [{"sku": "a", "qty": 1, "price": 2.5}],
        "total": 2.5,
        "status": "placed",
        "placedAt": placed.isoformat(),
        "processedAt": None,
    }
    assert processed_view.status_code == 200
    assert processed_view.json()["status"] == "processed"
    assert processed_view.json()["processedAt"] == placed.isoformat()


async def test_unknown_order_is_404_and_malformed_id_400(ctx: Context) -> None:
    async with _client(ctx) as client:
        unknown = await client.get("/orders/nope")
        malformed = await client.get("/orders/$where")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Order not found"})
    assert malformed.status_code == 400


async def test_unreachable_mongodb_is_503_within_bounds() -> None:
    ctx = Context(Settings(mongodb_url="mongodb://127.0.0.1:1/", mongodb_timeout_ms=300))
    await ctx.start()
    try:
        async with _client(ctx) as client:
            started = datetime.now(UTC)
            response = await client.get("/orders/o-1")
            elapsed = (datetime.now(UTC) - started).total_seconds()
        assert response.status_code == 503
        assert elapsed < 5
    finally:
        await ctx.close()
