"""get-order: ``GET /orders/{id}`` shows an order and its processing status (``placed`` → ``processed``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import HTTPException

from kfaas.api import Ctx, create_api

ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

app = create_api("get-order", description="Read an order and its processing status.")


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def present(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "userId": doc.get("userId"),
        "items": doc.get("items", []),
        "total": doc.get("total"),
        "status": doc.get("status", "placed"),
        "placedAt": _iso(doc.get("placedAt")),
        "processedAt": _iso(doc.get("processedAt")),
    }


@app.get(
    "/orders/{order_id}",
    responses={404: {"description": "No order has this id"}},
    summary="Get an order and its status",
)
async def get_order(order_id: str, ctx: Ctx) -> dict[str, Any]:
    if not ORDER_ID.match(order_id):
        raise HTTPException(400, f"malformed order id {order_id!r}")
    doc = await ctx.db["orders"].find_one({"_id": order_id})  # MongoDB outages become 503 (create_api)
    if doc is None:
        raise HTTPException(404, "Order not found")
    return present(doc)
