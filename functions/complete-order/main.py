"""complete-order: the saga's last step; records on the order that it is paid and complete.

Input: process-payment's output (``orderId``, ``paymentId``, ``amountCents``). It sets ``paymentId`` and
``completedAt`` on the order (its ``status`` stays what process-order made it). Idempotent: completing a
completed order changes nothing and answers the same. Output: ``{orderId, status: "completed", paymentId}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cloudevents.http import CloudEvent

import kfaas


@kfaas.cloud_event
async def handle(event: CloudEvent, ctx: kfaas.Context) -> dict[str, Any]:
    data = event.data if isinstance(event.data, dict) else {}
    order_id = data.get("orderId")
    if not isinstance(order_id, str):
        raise kfaas.InvalidEvent("complete-order needs orderId")
    await ctx.db.orders.update_one(
        {"_id": order_id, "completedAt": {"$exists": False}},
        {"$set": {"paymentId": data.get("paymentId"), "completedAt": datetime.now(UTC)}},
    )
    ctx.log.info("order %s completed", order_id)
    return {"orderId": order_id, "status": "completed", "paymentId": data.get("paymentId")}
