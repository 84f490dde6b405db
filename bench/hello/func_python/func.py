"""The same hello function in func-python's programming model (Knative Functions' Python middleware).

`new()` returns the function instance; the middleware decodes the CloudEvent into ``scope["event"]`` and
calls ``handle(scope, receive, send)``. Like the functions-framework version, it reads one attribute and
answers 200 without a reply event.
"""

from typing import Any


def new() -> "Function":
    return Function()


class Function:
    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not scope["event"].get_type():
            raise ValueError("a CloudEvent always has a type")
        # send.http bypasses the CloudEvent encoding: a plain 200 "OK", as functions-framework answers.
        await send.http(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
            }
        )
        await send.http({"type": "http.response.body", "body": b"OK"})
