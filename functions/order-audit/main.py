"""order-audit: an ordered audit log of the order events, fed by the ``order-events`` stream.

Its stream source delivers the records in offset order (so in order per order id, the partition key), in
batches; the runtime calls ``handle`` once per record of a batch, in order. Each record becomes one document
of ``order_audit``: ``{_id: offset, orderId, seq: offset, type, eventId, source, time, data}``.
The ``_id`` is the record's place in the stream, so a batch delivered again after a crash or a replay inserts
nothing new (a duplicate key is the record already written): the log holds each record once, in stream order.
An order's history is ``find({orderId}).sort("seq")``.
"""

from __future__ import annotations

from typing import Any

from cloudevents.http import CloudEvent
from pymongo.errors import DuplicateKeyError

import kfaas

AUDIT = "order_audit"
TYPES = ("com.kfaas.order.placed", "com.kfaas.order.processed")


def entry(event: CloudEvent) -> dict[str, Any]:
    """The audit document of one stream record; InvalidEvent when it is not an order event of the stream."""
    if event["type"] not in TYPES:
        raise kfaas.InvalidEvent(f"order-audit does not handle events of type {event['type']!r}")
    offset = event.get("streamoffset")
    if offset is None:
        raise kfaas.InvalidEvent("order-audit reads a stream: the event has no streamoffset")
    data = event.data
    order_id = event.get("subject")
    if not order_id and isinstance(data, dict):
        order_id = data.get("orderId") or data.get("id")
    if not order_id:
        raise kfaas.InvalidEvent("an order event needs the order id: its subject, data.orderId or data.id")
    return {
        "_id": int(offset),
        "orderId": str(order_id),
        "seq": int(offset),
        "type": event["type"],
        "eventId": event["id"],
        "source": event["source"],
        "time": event.get("time"),
        "data": data if isinstance(data, dict | list | str | int | float) or data is None else repr(data),
    }


@kfaas.cloud_event
async def handle(event: CloudEvent, ctx: kfaas.Context) -> None:
    doc = entry(event)
    try:
        await ctx.db[AUDIT].insert_one(doc)
    except DuplicateKeyError:
        ctx.log.info("record %s already in the audit log", doc["_id"])
