"""notify-email: on ``com.kfaas.order.processed``, email the order's user once (the seed's SES step).

Looks the user up in ``users`` (written by create-user) and sends one email through ``ctx.send_email``.
Exactly once per order, whatever the number of deliveries: the send runs inside ``ctx.once`` keyed by the
order id. A user that does not exist (or has no email address) is a permanent failure: the function raises
:class:`kfaas.InvalidEvent`, the runtime answers 422 with the reason, and the broker dead-letters the event
at once instead of retrying it (a retry cannot make the user appear; ``kfaas dlq redrive`` once it exists).
"""

from __future__ import annotations

from typing import Any

from cloudevents.http import CloudEvent

import kfaas

PROCESSED = "com.kfaas.order.processed"
USERS = "users"


async def find_user(ctx: kfaas.Context, user_id: str) -> dict[str, Any] | None:
    """create-user stores ObjectId ids; users written by other tools may use string ids: accept both."""
    from bson import ObjectId

    candidates: list[Any] = [user_id]
    if ObjectId.is_valid(user_id):
        candidates.insert(0, ObjectId(user_id))
    return await ctx.db[USERS].find_one({"_id": {"$in": candidates}})


def render(order: dict[str, Any], user: dict[str, Any]) -> tuple[str, str]:
    name = user.get("name") or user["email"]
    subject = f"Your order {order['orderId']} has been processed"
    body = (
        f"Hello {name},\n\n"
        f"your order {order['orderId']} ({order.get('items', '?')} item(s), total {order['total']:.2f}) "
        "has been processed.\n\nThank you.\n"
    )
    return subject, body


@kfaas.cloud_event
async def handle(event: CloudEvent, ctx: kfaas.Context) -> None:
    if event["type"] != PROCESSED:
        raise kfaas.InvalidEvent(f"notify-email does not handle events of type {event['type']!r}")
    data = event.data
    if not isinstance(data, dict) or not data.get("orderId") or not data.get("userId"):
        raise kfaas.InvalidEvent("com.kfaas.order.processed needs data with orderId and userId")
    user = await find_user(ctx, str(data["userId"]))
    if user is None or not user.get("email"):
        problem = "does not exist" if user is None else "has no email address"
        raise kfaas.InvalidEvent(f"user {data['userId']!r} of order {data['orderId']!r} {problem}")
    subject, body = render(data, user)
    try:
        async with ctx.once(f"notify-email|{data['orderId']}"):
            await ctx.send_email(user["email"], subject, body)
    except kfaas.AlreadyDone:
        ctx.log.info("email for order %s already sent", data["orderId"])
        return
    ctx.log.info("emailed %s about order %s", user["email"], data["orderId"])
