"""place-order: ``POST /orders`` validates an order, records it as ``placed`` and enqueues it on ``orders``.

The message is a structured CloudEvent of type ``com.kfaas.order.placed`` (the order as ``data``). The order
and its message are written as one unit through the transactional outbox (``ctx.outbox``): a 202 means the
order is stored and its message will reach the queue (at once, or when RabbitMQ is back); an error answer
means nothing was stored. The queue source hands the message to process-order. The answer is 202 with the
order id and its status URL (``/orders/{id}``, served by get-order). A client may send its own ``id`` to make
retries safe: the same order again is answered 202 again (it is recorded, its message sent once); another
order under a known id is 409.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from kfaas import OutboxMessage
from kfaas.api import Ctx, create_api, error_response

# Read once at start-up: the queue process-order's queue source consumes.
ORDERS_QUEUE = os.environ.get("ORDERS_QUEUE", "orders")
PLACED = "com.kfaas.order.placed"
SOURCE = "/kfaas/place-order"


MAX_QTY = 10_000
MAX_PRICE = 1_000_000
MAX_ITEMS = 500
MAX_TOTAL = MAX_ITEMS * MAX_QTY * MAX_PRICE  # the largest total the items can add up to


def _json_integer(value: Any) -> Any:
    """A JSON integer: 3 or 3.0 (JSON Schema's integers), never true or "3" (refused, not converted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


# JSON numbers only (booleans and numeric strings are refused, not converted); finite and bounded, so no
# total can overflow into infinity while it is checked
Quantity = Annotated[int, Field(ge=1, le=MAX_QTY), BeforeValidator(_json_integer)]
Price = Annotated[float, Field(strict=True, ge=0, le=MAX_PRICE, allow_inf_nan=False)]
Total = Annotated[float, Field(strict=True, ge=0, le=MAX_TOTAL, allow_inf_nan=False)]


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Quantity
    price: Price


class NewOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")] = None
    userId: Annotated[str, Field(min_length=1, max_length=128)]
    items: Annotated[list[Item], Field(min_length=1, max_length=MAX_ITEMS)]
    total: Annotated[Total | None, Field(description="When given, must equal the sum of the items")] = None

    @property
    def total_cents(self) -> int:
        return cents_of(self.items)

    @field_validator("total")
    @classmethod
    def _total(cls, total: float | None, info: ValidationInfo) -> float | None:
        items = info.data.get("items")  # absent when the items themselves were invalid
        if total is not None and items is not None and round(total * 100) != cents_of(items):
            raise ValueError(f"{total} differs from the sum of the items, {cents_of(items) / 100:.2f}")
        return total


def cents_of(items: list[Item]) -> int:
    return sum(item.qty * round(item.price * 100) for item in items)


class Placed(BaseModel):
    """The 202 answer: the order is recorded and queued; its status is at statusUrl (get-order)."""

    id: str
    status: str
    statusUrl: str


app = create_api("place-order", description="Place an order: validated, recorded, enqueued (202).")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def placed_message(order: dict[str, Any], placed_at: datetime) -> bytes:
    """The structured CloudEvent (JSON) put on the queue."""
    event = {
        "specversion": "1.0",
        "type": PLACED,
        "source": SOURCE,
        "id": f"order-placed-{order['id']}",
        "subject": order["id"],
        "time": placed_at.isoformat(),
        "datacontenttype": "application/json",
        "data": order,
    }
    return json.dumps(event, separators=(",", ":")).encode()


@app.post(
    "/orders",
    status_code=202,
    response_model=Placed,
    responses={
        202: {"headers": {"Location": {"description": "The status URL", "schema": {"type": "string"}}}},
        409: error_response("Another order has this id"),
    },
    summary="Place an order",
)
async def place_order(new: NewOrder, ctx: Ctx) -> JSONResponse:
    from pymongo.errors import DuplicateKeyError

    order_id = new.id or uuid.uuid4().hex
    cents = new.total_cents
    order = {
        "id": order_id,
        "userId": new.userId,
        "items": [item.model_dump() for item in new.items],
        "total": cents / 100,
    }
    now = datetime.now(UTC)
    doc = {
        "_id": order_id,
        **{k: v for k, v in order.items() if k != "id"},
        "totalCents": cents,
        "status": "placed",
        "placedAt": now,
    }
    message = OutboxMessage(
        queue=ORDERS_QUEUE,
        body=placed_message(order, now),
        message_id=order_id,
        content_type="application/cloudevents+json",
    )
    try:  # MongoDB outages become 503 (create_api); RabbitMQ's are the outbox's to outlast
        await ctx.outbox.insert_one("orders", doc, message)
    except DuplicateKeyError:
        existing = await ctx.db["orders"].find_one({"_id": order_id})
        if existing is None or existing.get("userId") != new.userId or existing.get("totalCents") != cents:
            return _error(409, f"order {order_id} exists with other content")
        # the same order again: it is recorded and its message was (or will be) sent with it
    status_url = f"/orders/{order_id}"
    return JSONResponse(
        {"id": order_id, "status": "placed", "statusUrl": status_url},
        status_code=202,
        headers={"Location": status_url},
    )
