"""Helpers for HTTP functions written with FastAPI (the seed's API Gateway + Lambda handlers).

``create_api()`` returns a FastAPI app with what every kfaas HTTP API should have:

- errors as JSON ``{"error": "..."}``: a request that fails validation gets 400 naming each bad field (and
  ``fields``, one ``{"field", "problem"}`` each); a body that is not JSON, or not sent as JSON, gets a 400
  saying so, naming the content type it came with; ``HTTPException`` keeps its status; an unexpected
  exception is a 500 without the trace (logged), with the message only when it is one of kfaas's errors;
- an OpenAPI document that says exactly that: every 4xx/5xx answer declared with the ``Error`` schema,
  400 (not FastAPI's 422, which this API never sends) for invalid requests, 500 and 503 on every operation;
- MongoDB that does not answer within the configured timeout becomes 503 with ``Retry-After`` instead of a
  hang; the client reconnects by itself, so the function recovers without a restart;
- CORS as the seed's API Gateway (``AllowOrigin: '*'`` by default).

Handlers get the :class:`~kfaas.Context` by declaring a parameter ``ctx: Ctx``.
"""

from __future__ import annotations

import email.message
import json
import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from kfaas.base.errors import KfaasError, ServiceUnavailable, public_message
from kfaas.runtime.context import Context

__all__ = ["Ctx", "Error", "FieldProblem", "create_api", "error_response", "get_context"]

log = logging.getLogger("kfaas.api")


def get_context(request: Request) -> Context:
    """The function's :class:`~kfaas.Context` (set by ``kfaas serve``; see :func:`create_api` for tests)."""
    ctx = getattr(request.state, "kfaas", None) or getattr(request.app.state, "kfaas", None)
    if ctx is None:
        raise RuntimeError("no kfaas Context: serve the app with `kfaas serve` or set app.state.kfaas")
    return ctx  # type: ignore[no-any-return]


Ctx = Annotated[Context, Depends(get_context)]


class FieldProblem(BaseModel):
    """One problem of an invalid request: the field (items[0].price, or body) and what is wrong with it."""

    field: str
    problem: str


class Error(BaseModel):
    """Every error answer of a kfaas API: error says what went wrong; fields (on a 400) each problem."""

    error: str = Field(description="What went wrong, for a person to read")
    fields: list[FieldProblem] | None = Field(default=None, description="Each problem of an invalid request")


def error_response(description: str) -> dict[str, Any]:
    """An entry of a route's ``responses=`` for an error status: ``{404: error_response("No such user")}``.

    create_api's document fills in the ``Error`` schema for any 4xx/5xx declared without content too.
    """
    return {"description": description, "model": Error}


_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "items", 0, "price")`` -> ``items[0].price``; the body itself -> ``body``."""
    name = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").strip()


def _is_json(content_type: str) -> bool:
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _not_json_body(request: Request, errors: list[dict[str, Any]]) -> str | None:
    """The problem of a body sent as something other than JSON, when that is why validation failed."""
    content_type = _content_type(request)
    whole_body = [e for e in errors if tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing"]
    if not whole_body or _is_json(content_type):
        return None
    got = f"Content-Type {content_type.split(';')[0]}" if content_type else "no Content-Type"
    return f"the body must be JSON sent with Content-Type: application/json; got {got}"


def _problems(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    fields = []
    for err in errors:
        if err.get("type") == "json_invalid":
            where = err.get("loc", ("body", 0))[-1]
            reason = (err.get("ctx") or {}).get("error", "JSON decode error")
            problem = f"not valid JSON: {reason} at character {where}"
            fields.append({"field": "body", "problem": problem})
        elif err.get("type") == "missing" and tuple(err.get("loc", ())) == ("body",):
            fields.append({"field": "body", "problem": "the request has no body: send a JSON object"})
        else:
            problem = str(err.get("msg", "")).removeprefix("Value error, ")
            if str(err.get("type", "")).endswith("_type") and "input" in err:
                problem += f", got {_json_kind(err['input'])}"
            fields.append({"field": _field_name(err.get("loc", ())), "problem": problem})
    return fields


def _json_kind(value: Any) -> str:
    """What a JSON value is, for "should be a valid number, got a boolean (true)"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _body_error(exc: StarletteHTTPException) -> str | None:
    """FastAPI's "There was an error parsing the body": say which error it was."""
    cause = exc.__cause__
    if isinstance(cause, RecursionError):
        return "invalid request: the JSON body is nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "invalid request: the body is not valid UTF-8 (JSON must be)"
    if cause is not None:
        return f"invalid request: the body cannot be read as JSON ({type(cause).__name__})"
    return None


def _document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, corrected to what the API answers (see the module docstring)."""
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
    )
    for item in doc.get("paths", {}).values():
        for method in _METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's validation answer; create_api answers 400 instead
            for status, response in responses.items():
                if status[:1] in ("4", "5") and not response.get("content"):
                    response["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    text = json.dumps(doc.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in text:
            schemas.pop(unused, None)
    return doc


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

    responses = kwargs.pop("responses", {})
    app = FastAPI(
        title=title,
        version=version,
        responses={
            400: error_response("Invalid request: `error` says why, `fields` names each problem"),
            500: error_response("The function failed; see its log"),
            503: error_response("A backing service did not answer in time; retry later"),
            **responses,
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

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        not_json = _not_json_body(request, errors)
        fields = [{"field": "body", "problem": not_json}] if not_json else _problems(errors)
        summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        return JSONResponse({"error": f"invalid request: {summary}", "fields": fields}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = (_body_error(exc) if exc.status_code == 400 else None) or (
            exc.detail if isinstance(exc.detail, str) else "error"
        )
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
        error = (
            public_message(exc) if isinstance(exc, KfaasError) else "internal error; see the function's log"
        )
        return JSONResponse({"error": error}, status_code=500)

    return app
