from __future__ import annotations

import json

import pytest
from order_functions import load_function, make_event, valid_order

import kfaas

pytestmark = pytest.mark.integration

fn = load_function("process-order")


async def test_placed_order_is_stored_and_answered_with_processed(ctx: kfaas.Context) -> None:
    order = valid_order()
    reply = await fn.handle(make_event(fn.PLACED, order), ctx)

    assert reply["type"] == "com.kfaas.order.processed"
    assert reply["id"] == f"order-processed-{order['id']}"
    assert reply.data["orderId"] == order["id"]
    assert reply.data["userId"] == "u-1"
    assert reply.data["totalCents"] == 2599
    doc = await ctx.db["orders"].find_one({"_id": order["id"]})
    assert doc is not None
    assert doc["status"] == "processed"
    assert doc["totalCents"] == 2599
    assert doc["processedAt"] >= doc["placedAt"]


async def test_same_order_twice_gives_one_document_and_the_same_reply(ctx: kfaas.Context) -> None:
    order = valid_order()
    first = await fn.handle(make_event(fn.PLACED, order), ctx)
    doc_before = await ctx.db["orders"].find_one({"_id": order["id"]})
    second = await fn.handle(make_event(fn.PLACED, order), ctx)

    assert await ctx.db["orders"].count_documents({}) == 1
    assert second["id"] == first["id"]
    assert second.data == first.data
    doc_after = await ctx.db["orders"].find_one({"_id": order["id"]})
    assert doc_after == doc_before  # no second processing: processedAt unchanged


async def test_order_placed_through_the_api_moves_from_placed_to_processed(ctx: kfaas.Context) -> None:
    order = valid_order()
    from datetime import UTC, datetime

    placed_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await ctx.db["orders"].insert_one(
        {
            "_id": order["id"],
            "userId": "u-1",
            "items": order["items"],
            "total": 25.99,
            "totalCents": 2599,
            "status": "placed",
            "placedAt": placed_at,
        }
    )
    reply = await fn.handle(make_event(fn.PLACED, order), ctx)

    doc = await ctx.db["orders"].find_one({"_id": order["id"]})
    assert doc is not None
    assert doc["status"] == "processed"
    assert reply.data["placedAt"] == placed_at.isoformat()


@pytest.mark.parametrize("body", [json.dumps(valid_order()).encode(), json.dumps(valid_order())])
async def test_legacy_plain_json_body_is_accepted(ctx: kfaas.Context, body: bytes | str) -> None:
    reply = await fn.handle(make_event(fn.LEGACY, body), ctx)
    order_id = json.loads(body)["id"]
    assert reply.data["orderId"] == order_id
    assert await ctx.db["orders"].count_documents({"_id": order_id, "status": "processed"}) == 1


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (b"{not json", "body is not JSON"),
        ([1, 2], "expected a JSON object"),
        (valid_order(id=""), "id must be"),
        (valid_order(userId=None), "userId must be"),
        (valid_order(items=[]), "items must be a non-empty list"),
        (valid_order(items=[{"sku": "x", "qty": 0, "price": 1}], total=0), "items[0].qty"),
        (valid_order(items=[{"qty": 1, "price": 1}], total=1), "items[0].sku"),
        (valid_order(items=[{"sku": "x", "qty": 1, "price": -1}], total=0), "items[0].price"),
        (valid_order(total=30), "differs from the sum of the items 25.99"),
        (valid_order(total="25.99"), "total must be a number"),
    ],
)
async def test_malformed_order_is_refused_with_its_reason(
    ctx: kfaas.Context, order: object, reason: str
) -> None:
    with pytest.raises(kfaas.InvalidEvent, match="invalid order") as caught:
        await fn.handle(make_event(fn.LEGACY, order), ctx)
    assert reason in str(caught.value)
    assert await ctx.db["orders"].count_documents({}) == 0


async def test_other_event_types_are_refused(ctx: kfaas.Context) -> None:
    with pytest.raises(kfaas.InvalidEvent, match="does not handle"):
        await fn.handle(make_event("com.example.other", valid_order()), ctx)
