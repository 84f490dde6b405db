"""``http`` functions: a Starlette ``Request`` in, functions-framework's return conventions out.

Imported only by functions of that type (Starlette costs ~30 ms to import). Return values are converted as
functions-framework's ASGI mode does: ``str``/``bytes`` → text, ``dict``/``list`` → JSON, a
``(body, status[, headers])`` tuple, or any Starlette ``Response``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from kfaas.base.errors import ServiceUnavailable
from kfaas.runtime.context import Context
from kfaas.runtime.replies import failure
from kfaas.runtime.targets import Target
from kfaas.runtime.workers import Workers

log = logging.getLogger("kfaas.serve")

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def http_handler(target: Target, ctx: Context, workers: Workers) -> ASGIApp:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response

    def convert(result: Any) -> Response:
        if isinstance(result, Response):
            return result
        headers = None
        status = 200
        if isinstance(result, tuple):
            if len(result) == 2:
                result, status = result
            elif len(result) == 3:
                result, status, headers = result
            else:
                raise TypeError(f"a tuple reply is (body, status[, headers]); got {len(result)} items")
        if result is None:
            return Response(status_code=204 if status == 200 else status, headers=headers)
        if isinstance(result, (dict, list)):
            return JSONResponse(result, status_code=status, headers=headers)
        if isinstance(result, (str, bytes)):
            return PlainTextResponse(result, status_code=status, headers=headers)
        raise TypeError(f"cannot turn {type(result).__name__} into an HTTP response")

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        args = (request, ctx) if target.wants_context else (request,)
        try:
            if target.is_async:
                result = await target.func(*args)
            else:
                result = await workers.run(target.func, *args)
            response = convert(result)
        except ServiceUnavailable as exc:
            log.warning("service unavailable: %s", exc)
            response = JSONResponse({"error": str(exc)}, status_code=503)
        except Exception as exc:
            log.exception("http function %s raised", target.name)
            response = JSONResponse(failure(exc, ctx.settings.debug), status_code=500)
        await response(scope, receive, send)

    return app
