"""order-analytics: running totals per user and per day, the second subscriber of ``com.kfaas.order.processed``.

Two collections, updated with ``$inc``:
- ``order_totals_by_user``: ``{_id: userId, orders, totalCents, lastOrderAt}``;
- ``order_totals_by_day``: ``{_id: "YYYY-MM-DD" (UTC day the order was placed), orders, totalCents}``.

Idempotent per order: each of the two increments runs inside its own ``ctx.once`` keyed by the order id, so
a redelivery (or a retry after the second update failed) never counts an order twice. The increment is made
through the claim (``claim.update_one``): the totals document carries the order's key in the same atomic
update until the increment is recorded done, so an increment whose answer MongoDB lost, or one followed by a
crash, is never applied a second time.
"""

from __future__ import annotations

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
    updates = (
        (BY_USER, user_id, {"lastOrderAt": placed_at}),
        (BY_DAY, placed_at.date().isoformat(), {}),
    )
    for collection, key, extra in updates:
        try:
            async with ctx.once(f"order-analytics|{collection}|{order_id}") as claim:
                await claim.update_one(
                    collection,
                    {"_id": key},
                    {"$inc": {"orders": 1, "totalCents": cents}, **({"$max": extra} if extra else {})},
                    upsert=True,
                )
        except kfaas.AlreadyDone:
            ctx.log.info("order %s already counted in %s", order_id, collection)
