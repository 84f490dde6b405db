"""reserve-inventory: the saga's first step; holds the stock of every item of an order, or none of it.

Input: the saga's input, the ``com.kfaas.order.processed`` data (``orderId``, ``userId``, ``totalCents``...).
The items are read from the stored order. Each SKU's stock is one document of ``inventory``; a hold is the
order id pushed into that document in the same atomic update that lowers ``available``, so a repeated
request never holds twice and a release gives back exactly what was held. An SKU seen for the first time
starts with ``DEFAULT_STOCK`` units.

Output: ``{orderId, userId, totalCents, items}`` (what process-payment needs). Fails with ``InventoryError``
when an order is unknown or an item is short (after giving back what it held).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from cloudevents.http import CloudEvent
from pymongo.errors import DuplicateKeyError

import kfaas

# Read once at import (a setting, not something a handler looks up per event).
DEFAULT_STOCK = int(os.environ.get("DEFAULT_STOCK", "100"))


class InventoryError(Exception):
    """Not enough stock (the saga's Catch names this error)."""


async def _release(inventory: Any, order_id: str, items: list[dict[str, Any]]) -> None:
    for item in items:
        await inventory.update_one(
            {"_id": item["sku"], "holds": order_id},
            {"$inc": {"available": item["qty"]}, "$pull": {"holds": order_id}},
        )


@kfaas.cloud_event
async def handle(event: CloudEvent, ctx: kfaas.Context) -> dict[str, Any]:
    data = event.data if isinstance(event.data, dict) else {}
    order_id = data.get("orderId")
    if not isinstance(order_id, str):
        raise InventoryError("the saga input has no orderId")
    order = await ctx.db.orders.find_one({"_id": order_id})
    if order is None:
        raise InventoryError(f"order {order_id} is not known")
    items = [{"sku": i["sku"], "qty": int(i["qty"])} for i in order["items"]]
    inventory = ctx.db.inventory
    for item in items:
        # A concurrent first sight of the same SKU may insert it first (FerretDB does not retry the upsert).
        with contextlib.suppress(DuplicateKeyError):
            await inventory.update_one(
                {"_id": item["sku"]},
                {"$setOnInsert": {"available": DEFAULT_STOCK, "holds": []}},
                upsert=True,
            )
        held = await inventory.update_one(
            {"_id": item["sku"], "available": {"$gte": item["qty"]}, "holds": {"$ne": order_id}},
            {"$inc": {"available": -item["qty"]}, "$push": {"holds": order_id}},
        )
        if (
            held.modified_count == 0
            and await inventory.count_documents({"_id": item["sku"], "holds": order_id}) == 0
        ):
            await _release(inventory, order_id, items)
            raise InventoryError(f"not enough {item['sku']} for order {order_id} ({item['qty']} wanted)")
    await ctx.db.reservations.update_one(
        {"_id": order_id},
        {"$set": {"items": items, "state": "reserved", "execution": event.get("kfaasexecution")}},
        upsert=True,
    )
    ctx.log.info("order %s: inventory reserved (%d item(s))", order_id, len(items))
    return {
        "orderId": order_id,
        "userId": order.get("userId"),
        "totalCents": order.get("totalCents"),
        "items": items,
    }
