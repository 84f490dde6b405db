"""order-analytics: running totals per user and per day, the second subscriber of ``com.kfaas.order.processed``.

Two collections, updated with ``$inc``:
- ``order_totals_by_user``: ``{_id: userId, orders, totalCents, lastOrderAt}``;
- ``order_totals_by_day``: ``{_id: "YYYY-MM-DD" (UTC day the order was placed), orders, totalCents}``.

Idempotent per order: both increments run inside one ``ctx.once`` keyed by the order id, so a redelivery
never counts an order twice. Each increment is made through the claim (``claim.update_one``): its totals
document carries the order's key in the same update until the claim is recorded done, so an increment whose
answer MongoDB lost, or one followed by a crash, is never applied a second time, and a retry after only one
of the two was applied makes only the other. The two documents differ, so the increments are sent at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from cloudevents.http import CloudEvent

import kfaas

PROCESSED = "com.kfaas.order.processed"
BY_USER = "order_totals_by_user"
BY_DAY = "order_totals_by_day"


def parse(data: Any) -> tuple[str, str, int, datetime]:
    if not isinstance(data, dict):
        raise kfaas.InvalidEvent("com.kfaas.order.processed needs a JSON object as data")
    try:
        order_id, user_id, cents = str(data["orderId"]), str(data["userId"]), int(data["totalCents"])
        placed_at = datetime.fromisoformat(data["placedAt"])
    except (KeyError, TypeError, ValueError) as exc:
        raise kfaas.InvalidEvent(f"com.kfaas.order.processed data is incomplete: {exc!r}") from None
    if placed_at.tzinfo is None:
        placed_at = placed_at.replace(tzinfo=UTC)
    return order_id, user_id, cents, placed_at.astimezone(UTC)


@kfaas.cloud_event
async def handle(event: CloudEvent, ctx: kfaas.Context) -> None:
    if event["type"] != PROCESSED:
        raise kfaas.InvalidEvent(f"order-analytics does not handle events of type {event['type']!r}")
    order_id, user_id, cents, placed_at = parse(event.data)
    try:
        async with ctx.once(f"order-analytics|{order_id}") as claim:
            # both run to their end (each bounded by the claim's lease) before a failure is raised
            results = await asyncio.gather(
                claim.update_one(
                    BY_USER,
                    {"_id": user_id},
                    {"$inc": {"orders": 1, "totalCents": cents}, "$max": {"lastOrderAt": placed_at}},
                    upsert=True,
                ),
                claim.update_one(
                    BY_DAY,
                    {"_id": placed_at.date().isoformat()},
                    {"$inc": {"orders": 1, "totalCents": cents}},
                    upsert=True,
                ),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
    except kfaas.AlreadyDone:
        ctx.log.info("order %s already counted", order_id)
