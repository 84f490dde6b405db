"""process-order: validate an order from the ``orders`` queue, store it once, answer ``com.kfaas.order.processed``.

Consumes (through the queue source of ``orders`` and the broker):
- ``com.kfaas.order.placed``: a structured CloudEvent enqueued by place-order, the order as ``data``;
- ``dev.knative.rabbitmq.event``: a plain JSON order from a producer that does not speak CloudEvents.

Emits ``com.kfaas.order.processed`` as the reply (Knative reply semantics: the broker publishes it). A
malformed order raises :class:`kfaas.InvalidEvent`, which the runtime answers with 422 and the reason; a
422 is not retried: the broker dead-letters it at once and the reason travels with it.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.http import CloudEvent

import kfaas

PLACED = "com.kfaas.order.placed"
LEGACY = "dev.knative.rabbitmq.event"
PROCESSED = "com.kfaas.order.processed"
SOURCE = "/kfaas/process-order"
ORDERS = "orders"
ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def _order_body(event: CloudEvent) -> Any:
    data = event.data
    if isinstance(data, bytes | bytearray | str):
        try:
            return json.loads(data)
        except ValueError as exc:
            raise kfaas.InvalidEvent(f"invalid order: body is not JSON ({exc})") from None
    return data


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate(raw: Any) -> dict[str, Any]:
    """Return the order in its stored form, or raise :class:`kfaas.InvalidEvent` naming every problem."""
    if not isinstance(raw, dict):
        raise kfaas.InvalidEvent(f"invalid order: expected a JSON object, got {type(raw).__name__}")
    problems: list[str] = []
    order_id, user_id, items, total = raw.get("id"), raw.get("userId"), raw.get("items"), raw.get("total")
    if not isinstance(order_id, str) or not ORDER_ID.match(order_id):
        problems.append("id must be a string of 1-128 letters, digits, '_', '.', ':' or '-'")
    if not isinstance(user_id, str) or not user_id.strip():
        problems.append("userId must be a non-empty string")
    cents = 0
    if not isinstance(items, list) or not items:
        problems.append("items must be a non-empty list")
        items = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"items[{i}] must be an object")
            continue
        if not isinstance(item.get("sku"), str) or not item["sku"]:
            problems.append(f"items[{i}].sku must be a non-empty string")
        qty, price = item.get("qty"), item.get("price")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            problems.append(f"items[{i}].qty must be a positive integer")
            continue
        if not _number(price) or price < 0:
            problems.append(f"items[{i}].price must be a number >= 0")
            continue
        cents += qty * round(price * 100)
    if not _number(total) or total < 0:
        problems.append("total must be a number >= 0")
    elif not problems and round(total * 100) != cents:
        problems.append(f"total {total} differs from the sum of the items {cents / 100:.2f}")
    if problems:
        raise kfaas.InvalidEvent("invalid order: " + "; ".join(problems))
    return {
        "_id": order_id,
        "userId": user_id,
        "items": [{"sku": it["sku"], "qty": it["qty"], "price": it["price"]} for it in items],
        "total": cents / 100,
        "totalCents": cents,
    }


def processed_event(doc: dict[str, Any]) -> CloudEvent:
    """The reply; its id is derived from the order so a redelivery answers with the very same event."""
    attributes = {
        "type": PROCESSED,
        "source": SOURCE,
        "id": f"order-processed-{doc['_id']}",
        "subject": doc["_id"],
        "datacontenttype": "application/json",
    }
    placed_at: datetime = doc["placedAt"]
    data = {
        "orderId": doc["_id"],
        "userId": doc["userId"],
        "total": doc["total"],
        "totalCents": doc["totalCents"],
        "items": len(doc["items"]),
        "placedAt": placed_at.astimezone(UTC).isoformat(),
    }
    return CloudEvent(attributes, data)


@kfaas.cloud_event
async def handle(event: CloudEvent, ctx: kfaas.Context) -> CloudEvent:
    if event["type"] not in (PLACED, LEGACY):
        raise kfaas.InvalidEvent(f"process-order does not handle events of type {event['type']!r}")
    order = validate(_order_body(event))
    orders = ctx.db[ORDERS]
    now = datetime.now(UTC)
    from pymongo import ReturnDocument
    from pymongo.errors import DuplicateKeyError

    # One write, selected by _id alone (FerretDB 1.x decodes every document of the collection for any
    # other filter, ~0.1 ms each): it stores an order from another producer, moves a stored one to
    # 'processed' and keeps the first processedAt ($min), so a redelivery changes nothing.
    change = {
        "$setOnInsert": {**{k: v for k, v in order.items() if k != "_id"}, "placedAt": now},
        "$set": {"status": "processed"},
        "$min": {"processedAt": now},
    }
    try:
        doc = await orders.find_one_and_update(
            {"_id": order["_id"]}, change, upsert=True, return_document=ReturnDocument.AFTER
        )
    except DuplicateKeyError:  # a concurrent delivery stored it first: now it is there
        doc = await orders.find_one_and_update(
            {"_id": order["_id"]}, change, return_document=ReturnDocument.AFTER
        )
    if doc is None:
        raise kfaas.ServiceUnavailable(f"order {order['_id']} vanished while being processed")
    if now - doc["processedAt"] > timedelta(milliseconds=1):  # BSON keeps milliseconds
        # processed before: answer with the same event, the subscribers are idempotent per order
        ctx.log.info("order %s was already processed; repeating its event", order["_id"])
    elif doc.get("totalCents") != order["totalCents"] or doc.get("userId") != order["userId"]:
        ctx.log.warning(
            "order %s arrived with other content than the stored one; kept the stored", doc["_id"]
        )
    return processed_event(doc)
