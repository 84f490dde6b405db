"""Task functions: a result, a named failure, an empty-message failure, a retryable failure."""

import kfaas


class PaymentError(Exception):
    pass


@kfaas.cloud_event
def charge(event):
    data = event.data
    if data.get("card") == "declined":
        raise PaymentError(f"card declined for order {data['orderId']}")
    if data.get("card") == "busy":
        raise kfaas.ServiceUnavailable("the payment provider is busy")
    return {"charged": data["amount"], "orderId": data["orderId"]}
