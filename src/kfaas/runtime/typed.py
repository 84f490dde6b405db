"""``typed`` functions (``@functions_framework.typed``): the JSON body made into the input type, the result
written back as JSON.

As in functions-framework: the body goes through ``InputType.from_dict``; a result of a built-in type is
answered as an ``http`` function's would be (``str``, ``dict``, a ``(body, status)`` tuple...), any other
through its ``to_dict()``, as JSON; ``None`` is an empty 200. kfaas answers a body that is not JSON with a
400 naming the problem, and an input its ``from_dict`` refuses with a 400 naming the input type.
Plain ASGI: no web framework is imported for these functions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from kfaas.base.asgi import json_answer, read_body, send_answer
from kfaas.base.errors import ServiceUnavailable
from kfaas.runtime.context import Context
from kfaas.runtime.replies import Answer, answer, failure
from kfaas.runtime.targets import Target
from kfaas.runtime.workers import Workers

log = logging.getLogger("kfaas.serve")

__all__ = ["typed_handler"]

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]
Handled = Callable[[Exception], Awaitable[Answer | None]]


def typed_handler(target: Target, ctx: Context, handled: Handled, workers: Workers) -> ASGIApp:
    input_type = target.input_type
    type_name = getattr(input_type, "__name__", str(input_type))

    async def call(value: Any) -> Any:
        args = (value, ctx) if target.wants_context else (value,)
        if target.is_async:
            return await target.func(*args)
        return await workers.run(target.func, *args)

    def read(body: bytes) -> Any:
        """The input object; a 400 answer (a tuple) when the body is not JSON or from_dict refuses it."""
        try:
            data = json.loads(body)
        except RecursionError:
            return json_answer(400, {"error": "body: nested too deeply"})
        except ValueError as exc:
            return json_answer(400, {"error": f"body: not valid JSON: {exc}"})
        try:
            return _Input(input_type.from_dict(data))
        except Exception as exc:
            log.warning("%s.from_dict refused the body: %r", type_name, exc)
            return json_answer(400, {"error": f"body: not a valid {type_name} ({type(exc).__name__})"})

    async def run(body: bytes) -> Answer:
        value = read(body)
        if not isinstance(value, _Input):
            return value  # type: ignore[no-any-return]
        try:
            result = await call(value.value)
            if result is None or type(result).__module__ == "builtins":
                return answer(result, empty_status=200)
            to_dict = getattr(result, "to_dict", None)
            if not callable(to_dict):
                raise TypeError(f"the function returned a {type(result).__name__}, which has no to_dict()")
            return json_answer(200, to_dict())
        except ServiceUnavailable as exc:
            log.warning("service unavailable: %s", exc)
            return json_answer(503, {"error": str(exc)})
        except Exception as exc:
            answered = await handled(exc)
            if answered is not None:
                return answered
            log.exception("typed function %s raised", target.name)
            return json_answer(500, failure(exc, ctx.settings.debug))

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["method"] != "POST":
            await send_answer(
                send, *json_answer(405, {"error": f"method {scope['method']} not allowed; use POST"})
            )
            return
        await send_answer(send, *await run(await read_body(receive)))

    return app


class _Input:
    """The input object from_dict made (told apart from an answer, whatever from_dict returns)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value
