"""release-inventory: the saga's compensation; gives back what reserve-inventory held for an order.

Input: what the saga's Catch hands over, ``{"Error", "Cause"}`` (the definition keeps no order data there),
so the order is found by the execution the request belongs to (the ``kfaasexecution`` attribute), which
reserve-inventory recorded with its reservation. Releasing twice gives back nothing the second time.

Output: ``{orderId, released, error}``; an execution without a reservation (the inventory step itself
failed) releases nothing.
"""

from __future__ import annotations

from typing import Any

from cloudevents.http import CloudEvent

import kfaas


@kfaas.cloud_event
async def handle(event: CloudEvent, ctx: kfaas.Context) -> dict[str, Any]:
    data = event.data if isinstance(event.data, dict) else {}
    execution = event.get("kfaasexecution")
    reservation = await ctx.db.reservations.find_one({"execution": execution}) if execution else None
    if reservation is None:
        return {"orderId": None, "released": [], "error": data.get("Error")}
    order_id = reservation["_id"]
    released = []
    for item in reservation["items"]:
        result = await ctx.db.inventory.update_one(
            {"_id": item["sku"], "holds": order_id},
            {"$inc": {"available": item["qty"]}, "$pull": {"holds": order_id}},
        )
        if result.modified_count:
            released.append(item)
    await ctx.db.reservations.update_one({"_id": order_id}, {"$set": {"state": "released"}})
    ctx.log.info("order %s: inventory released after %s", order_id, data.get("Error"))
    return {"orderId": order_id, "released": released, "error": data.get("Error")}
