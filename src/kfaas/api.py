"""Helpers for HTTP functions written with FastAPI (the seed's API Gateway + Lambda handlers).

``create_api()`` returns a FastAPI app with what every kfaas HTTP API should have:

- errors as JSON ``{"error": "..."}``: a request that fails validation gets 400 naming each bad field,
  ``HTTPException`` keeps its status, and an unexpected exception is a 500 without the trace (logged);
- MongoDB that does not answer within the configured timeout becomes 503 with ``Retry-After`` instead of a
  hang; the client reconnects by itself, so the function recovers without a restart;
- CORS as the seed's API Gateway (``AllowOrigin: '*'`` by default).

Handlers get the :class:`~kfaas.Context` by declaring a parameter ``ctx: Ctx``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kfaas.base.errors import ServiceUnavailable
from kfaas.runtime.context import Context

__all__ = ["Ctx", "create_api", "get_context"]

log = logging.getLogger("kfaas.api")


def get_context(request: Request) -> Context:
    """The function's :class:`~kfaas.Context` (set by ``kfaas serve``; see :func:`create_api` for tests)."""
    ctx = getattr(request.state, "kfaas", None) or getattr(request.app.state, "kfaas", None)
    if ctx is None:
        raise RuntimeError("no kfaas Context: serve the app with `kfaas serve` or set app.state.kfaas")
    return ctx  # type: ignore[no-any-return]


Ctx = Annotated[Context, Depends(get_context)]


def _error_schema(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "fields": {"type": "array"}},
                    "required": ["error"],
                }
            }
        },
    }


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "body")


def create_api(
    title: str, *, version: str = "1.0.0", cors_origins: list[str] | None = None, **kwargs: Any
) -> FastAPI:
    """A FastAPI app with kfaas's JSON errors, 503 on database outages and CORS (``['*']`` by default)."""
    from pymongo.errors import (
        ConnectionFailure,
        ExecutionTimeout,
        NetworkTimeout,
        ServerSelectionTimeoutError,
    )

    app = FastAPI(
        title=title,
        version=version,
        responses={
            400: _error_schema("Invalid request: `fields` names each problem"),
            503: _error_schema("A backing service did not answer in time; retry later"),
        },
        **kwargs,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors_origins if cors_origins is not None else ["*"],
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Location"],
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": _field_name(err.get("loc", ())), "problem": err.get("msg", "")} for err in exc.errors()
        ]
        summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        return JSONResponse({"error": f"invalid request: {summary}", "fields": fields}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return JSONResponse({"error": detail}, status_code=exc.status_code, headers=exc.headers)

    async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("backing service unavailable: %s: %s", type(exc).__name__, exc)
        return JSONResponse(
            {"error": "the database did not answer in time; retry later"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    for exc_type in (ServerSelectionTimeoutError, ConnectionFailure, NetworkTimeout, ExecutionTimeout):
        app.add_exception_handler(exc_type, _unavailable)

    @app.exception_handler(ServiceUnavailable)
    async def _service(_: Request, exc: ServiceUnavailable) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises it after this response; `kfaas serve` logs it once, with the trace
        return JSONResponse({"error": "internal error; see the function's log"}, status_code=500)

    return app
