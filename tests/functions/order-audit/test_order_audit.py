from __future__ import annotations

import pytest
from order_functions import load_function, make_event

import kfaas

pytestmark = pytest.mark.integration

fn = load_function("order-audit")


def record(type_: str, order_id: str, offset: int) -> object:
    return make_event(type_, {"orderId": order_id}, subject=order_id, streamoffset=str(offset))


async def test_each_record_once_in_stream_order(ctx: kfaas.Context) -> None:
    placed, processed = fn.TYPES
    records = [record(placed, "o-1", 0), record(placed, "o-2", 1), record(processed, "o-1", 2)]
    for event in records:
        await fn.handle(event, ctx)
    for event in records[1:]:  # the batch delivered again (after a crash before its checkpoint)
        await fn.handle(event, ctx)
    entries = [e async for e in ctx.db[fn.AUDIT].find().sort("seq")]
    assert [(e["seq"], e["orderId"], e["type"]) for e in entries] == [
        (0, "o-1", placed),
        (1, "o-2", placed),
        (2, "o-1", processed),
    ]
    history = [e["type"] async for e in ctx.db[fn.AUDIT].find({"orderId": "o-1"}).sort("seq")]
    assert history == [placed, processed]


async def test_the_order_id_comes_from_the_subject_or_the_data(ctx: kfaas.Context) -> None:
    placed, _ = fn.TYPES
    await fn.handle(make_event(placed, {"id": "o-9"}, streamoffset="5"), ctx)
    doc = await ctx.db[fn.AUDIT].find_one({"_id": 5})
    assert doc is not None
    assert doc["orderId"] == "o-9"


@pytest.mark.parametrize(
    ("event", "complaint"),
    [
        (make_event("com.example.other", {"id": "o-1"}, streamoffset="1"), "does not handle"),
        (make_event("com.kfaas.order.placed", {"id": "o-1"}), "no streamoffset"),
        (make_event("com.kfaas.order.placed", {"total": 1}, streamoffset="1"), "needs the order id"),
    ],
)
async def test_what_is_not_an_order_record_is_refused(
    ctx: kfaas.Context, event: object, complaint: str
) -> None:
    with pytest.raises(kfaas.InvalidEvent, match=complaint):
        await fn.handle(event, ctx)
    assert await ctx.db[fn.AUDIT].count_documents({}) == 0
