from __future__ import annotations

import pytest
from order_functions import load_function, make_event

import kfaas

pytestmark = pytest.mark.integration

fn = load_function("order-analytics")


def processed(order_id: str, user_id: str, cents: int, placed_at: str) -> dict[str, object]:
    return {
        "orderId": order_id,
        "userId": user_id,
        "total": cents / 100,
        "totalCents": cents,
        "items": 1,
        "placedAt": placed_at,
    }


async def test_totals_per_user_and_per_day(ctx: kfaas.Context) -> None:
    for order_id, user, cents, at in [
        ("o-1", "u-1", 1000, "2026-03-01T23:59:00+00:00"),
        ("o-2", "u-1", 250, "2026-03-02T00:01:00+00:00"),
        ("o-3", "u-2", 99, "2026-03-02T10:00:00+01:00"),  # 09:00 UTC, same UTC day as o-2
    ]:
        await fn.handle(make_event(fn.PROCESSED, processed(order_id, user, cents, at)), ctx)

    by_user = {d["_id"]: d async for d in ctx.db[fn.BY_USER].find()}
    by_day = {d["_id"]: d async for d in ctx.db[fn.BY_DAY].find()}
    assert {k: (v["orders"], v["totalCents"]) for k, v in by_user.items()} == {
        "u-1": (2, 1250),
        "u-2": (1, 99),
    }
    assert {k: (v["orders"], v["totalCents"]) for k, v in by_day.items()} == {
        "2026-03-01": (1, 1000),
        "2026-03-02": (2, 349),
    }


async def test_an_order_counts_once_however_often_it_arrives(ctx: kfaas.Context) -> None:
    data = processed("o-9", "u-9", 500, "2026-03-05T12:00:00+00:00")
    for _ in range(3):
        await fn.handle(make_event(fn.PROCESSED, data), ctx)
    user = await ctx.db[fn.BY_USER].find_one({"_id": "u-9"})
    day = await ctx.db[fn.BY_DAY].find_one({"_id": "2026-03-05"})
    assert user is not None
    assert (user["orders"], user["totalCents"]) == (1, 500)
    assert day is not None
    assert (day["orders"], day["totalCents"]) == (1, 500)


async def test_incomplete_event_is_invalid(ctx: kfaas.Context) -> None:
    with pytest.raises(kfaas.InvalidEvent, match="incomplete"):
        await fn.handle(make_event(fn.PROCESSED, {"orderId": "o", "userId": "u"}), ctx)
