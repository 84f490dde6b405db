"""get-order: ``GET /orders/{id}`` shows an order and its processing status (``placed`` → ``processed``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import HTTPException, Path
from pydantic import BaseModel

from kfaas.api import Ctx, create_api, error_response

ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# the same rule in the document (checked by the handler, which names the problem)
ORDER_ID_PARAM = Path(
    description="The order's id: letters, digits, '_', '.', ':' or '-', at most 128",
    json_schema_extra={"pattern": f"^{ORDER_ID.pattern}$"},
)


class Order(BaseModel):
    id: str
    userId: str | None
    items: list[dict[str, Any]]
    total: float | None
    status: str
    placedAt: str | None
    processedAt: str | None


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
    response_model=Order,
    responses={404: error_response("No order has this id")},
    summary="Get an order and its status",
)
async def get_order(order_id: Annotated[str, ORDER_ID_PARAM], ctx: Ctx) -> dict[str, Any]:
    if not ORDER_ID.fullmatch(order_id):
        raise HTTPException(400, f"malformed order id {order_id!r}")
    doc = await ctx.db["orders"].find_one({"_id": order_id})  # MongoDB outages become 503 (create_api)
    if doc is None:
        raise HTTPException(404, "Order not found")
    return present(doc)
