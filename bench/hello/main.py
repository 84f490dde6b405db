"""The benchmark's hello function: takes any CloudEvent and answers 200.

Plain functions-framework programming model, no decorator and no import, so `kfaas serve` and
`functions-framework` load exactly the same code (`--target hello --signature-type cloudevent`).
"""

from typing import Any


def hello(cloud_event: Any) -> None:
    """Read one attribute (the event is parsed by every runtime) and return nothing: 200, no reply event."""
    if not cloud_event["type"]:
        raise ValueError("a CloudEvent always has a type")


async def hello_async(cloud_event: Any) -> None:
    """The same function as a coroutine (`bench/runtime.py --hello async`): no hop to a worker thread."""
    if not cloud_event["type"]:
        raise ValueError("a CloudEvent always has a type")
