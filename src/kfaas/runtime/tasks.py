"""Task requests: an event that asks for the function's result back as a correlated reply event.

The saga engine (and anything else that wants a function's result, like a Lambda invoke) sends an event of
type ``com.kfaas.task.request`` through the broker. For such an event the runtime answers with a reply
CloudEvent whatever the function does, so the result — or the failure — travels back through the broker:

- the function returns a value (any JSON; a returned CloudEvent gives its data): the reply has type
  ``com.kfaas.task.result`` and that value as its data;
- the function raises: the reply has type ``com.kfaas.task.error`` and data ``{"errorType", "errorMessage"}``
  where ``errorType`` is the exception's class name (``raise PaymentError("declined")`` gives
  ``PaymentError``, as AWS Lambda reports a Python error); the trace stays in the log.

Both carry ``kfaasrequest`` (the request's id) and ``kfaasexecution`` (copied from the request) to correlate
them. ``kfaas.ServiceUnavailable`` and ``kfaas.InProgress`` are not answers: they stay 503, so the broker
delivers the request again later.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ERROR", "REQUEST", "RESULT", "is_task_request", "task_error", "task_result"]

REQUEST = "com.kfaas.task.request"
RESULT = "com.kfaas.task.result"
ERROR = "com.kfaas.task.error"
_COPIED = ("kfaasexecution",)


def is_task_request(event: Any) -> bool:
    return bool(event["type"] == REQUEST)


def _reply(event: Any, kind: str, source: str, data: Any) -> Any:
    from cloudevents.http import CloudEvent

    attributes = {
        "type": kind,
        "source": source,
        "id": f"{event['id']}/{'result' if kind == RESULT else 'error'}",
        "kfaasrequest": event["id"],
        "datacontenttype": "application/json",
    }
    for name in _COPIED:
        value = event.get(name)
        if value is not None:
            attributes[name] = value
    return CloudEvent(attributes, data)


def task_result(event: Any, function: str, value: Any) -> Any:
    """The reply carrying a function's return value (a returned CloudEvent gives its data)."""
    from cloudevents.abstract import CloudEvent as AnyCloudEvent

    if isinstance(value, AnyCloudEvent):
        value = value.get_data()
        if isinstance(value, bytes | bytearray):
            value = json.loads(value) if value else None
    return _reply(event, RESULT, f"/kfaas/{function}", value)


def task_error(event: Any, function: str, exc: BaseException) -> Any:
    """The reply carrying a function's failure: the exception's class name and message."""
    return _reply(
        event,
        ERROR,
        f"/kfaas/{function}",
        {"errorType": type(exc).__name__, "errorMessage": str(exc)},
    )
