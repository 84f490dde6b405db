"""process-payment: the saga's second step; charges an order once.

Input: reserve-inventory's output (``orderId``, ``userId``, ``totalCents``). A payment is one document of
``payments`` keyed by the order id, so a repeated request charges nothing new and answers the same.

With ``PAYMENT_GATEWAY_URL`` set, the charge is asked of that HTTP service (``POST {orderId, amountCents}``):
402 declines it, 5xx or no answer is a retryable outage (``kfaas.ServiceUnavailable``: the broker delivers
the request again). Without it, every amount up to ``PAYMENT_LIMIT_CENTS`` is accepted.

Output: ``{orderId, paymentId, amountCents}``. Fails with ``PaymentError`` when the charge is declined.
"""

from __future__ import annotations

import os
from typing import Any

from cloudevents.http import CloudEvent

import kfaas

# Settings, read once at import.
PAYMENT_GATEWAY_URL = os.environ.get("PAYMENT_GATEWAY_URL", "")
PAYMENT_LIMIT_CENTS = int(os.environ.get("PAYMENT_LIMIT_CENTS", "100000"))


class PaymentError(Exception):
    """The charge was declined (the saga's Catch names this error)."""


async def _charge(order_id: str, amount: int, key: str) -> None:
    gateway = PAYMENT_GATEWAY_URL
    if not gateway:
        limit = PAYMENT_LIMIT_CENTS
        if amount > limit:
            raise PaymentError(f"declined: {amount} cents for order {order_id} is over the limit of {limit}")
        return
    import httpx

    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            answer = await client.post(
                gateway, json={"orderId": order_id, "amountCents": amount}, headers={"idempotency-key": key}
            )
    except httpx.TransportError as exc:
        raise kfaas.ServiceUnavailable(f"the payment gateway did not answer: {exc}") from exc
    if answer.status_code == 402:
        raise PaymentError(f"declined by the payment gateway: {answer.text[:200]}")
    if answer.status_code >= 500:
        raise kfaas.ServiceUnavailable(f"the payment gateway answered {answer.status_code}")
    if answer.status_code >= 300:
        raise PaymentError(
            f"the payment gateway refused the charge: {answer.status_code} {answer.text[:200]}"
        )


@kfaas.cloud_event
async def handle(event: CloudEvent, ctx: kfaas.Context) -> dict[str, Any]:
    data = event.data if isinstance(event.data, dict) else {}
    order_id, amount = data.get("orderId"), data.get("totalCents")
    if not isinstance(order_id, str) or not isinstance(amount, int):
        raise PaymentError("the payment needs orderId and totalCents")
    payments = ctx.db.payments
    done = await payments.find_one({"_id": order_id, "state": "captured"})
    if done is None:
        # the order id keys the charge: a gateway that honours idempotency keys never charges an order twice
        await _charge(order_id, amount, f"order-{order_id}")
        await payments.update_one(
            {"_id": order_id},
            {"$set": {"amountCents": amount, "state": "captured", "execution": event.get("kfaasexecution")}},
            upsert=True,
        )
        ctx.log.info("order %s: %d cents captured", order_id, amount)
    return {"orderId": order_id, "paymentId": f"pay-{order_id}", "amountCents": amount}
