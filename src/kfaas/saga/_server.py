"""The engine's HTTP face: CloudEvents from the broker and the executions API (StartExecution and the rest).

| request | answer |
|---|---|
| ``POST /`` a CloudEvent: a task reply (``com.kfaas.task.result`` / ``.error`` / ``.heartbeat``) or an event a state machine starts on | 200 once the reply is stored, 202 with the started executions, 400 naming the problem, 503 when MongoDB is away |
| ``POST /state-machines/<name>/executions`` ``{"name"?, "input"?}`` | 201 with the execution (200 when that name already runs with that input), 409 when it exists otherwise, 400, 404 |
| ``GET /executions[?stateMachine=&status=&limit=]`` | 200 ``{"executions": [...]}`` |
| ``GET /executions/<id>`` / ``GET /executions/<id>/history`` | 200, 404 |
| ``POST /executions/<id>/stop`` ``{"error"?, "cause"?}`` / ``POST /executions/<id>/redrive`` | 202, 404, 409 |
| ``GET /health/liveness``, ``GET /health/readiness`` | 200; readiness 503 until the engine runs |
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, unquote

from kfaas.base.asgi import json_answer, read_body, send_answer
from kfaas.base.errors import InvalidEvent
from kfaas.saga._engine import Engine, ExecutionAlreadyExists, InvalidRequest
from kfaas.saga._ops import NotFound, Refused, describe, history, redrive, stop

__all__ = ["EngineApp"]

log = logging.getLogger("kfaas.saga")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class EngineApp:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            status, headers, body = await self._handle(scope, receive)
        except (InvalidRequest, InvalidEvent) as exc:
            status, headers, body = json_answer(getattr(exc, "status", 400), {"error": str(exc)})
        except ExecutionAlreadyExists as exc:
            status, headers, body = json_answer(409, {"error": f"ExecutionAlreadyExists: {exc}"})
        except NotFound as exc:
            status, headers, body = json_answer(404, {"error": str(exc)})
        except Refused as exc:
            status, headers, body = json_answer(409, {"error": str(exc)})
        except Exception as exc:
            log.warning("%s %s failed: %r", scope["method"], scope["path"], exc)
            status, headers, body = json_answer(
                503, {"error": f"the engine could not do it now ({type(exc).__name__}); retry"}
            )
        await send_answer(send, status, headers, body)

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, Any, bytes]:  # noqa: PLR0911, PLR0912 (the routes)
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        store = self.engine.store
        if path == "/health/liveness":
            return json_answer(200, {"status": "alive"})
        if path == "/openapi.json" and method == "GET":
            return json_answer(200, OPENAPI)
        if path == "/health/readiness":
            ok = self.engine.ready
            return json_answer(
                200 if ok else 503, {"status": "ready" if ok else "starting", "engine": self.engine.engine_id}
            )
        parts = [unquote(p) for p in path.strip("/").split("/")] if path != "/" else []
        if not parts:
            if method != "POST":
                return json_answer(405, {"error": "POST CloudEvents to /"}, [(b"allow", b"POST")])
            from kfaas.events import parse_events

            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            events = parse_events(headers, await read_body(receive))
            status, answer = 200, dict[str, Any]()
            for event in events:
                status, answer = await self.engine.handle_event(event)
            return json_answer(status, answer)
        if parts[0] == "state-machines" and len(parts) == 3 and parts[2] == "executions" and method == "POST":
            request = _json(await read_body(receive))
            if not isinstance(request, dict):
                raise InvalidRequest('the body must be a JSON object: {"name": ..., "input": ...}')
            unknown = set(request) - {"name", "input"}
            if unknown:
                raise InvalidRequest(f"unknown field(s) {', '.join(sorted(unknown))}: only name and input")
            summary = await self.engine.start_execution(
                parts[1], request.get("name"), request.get("input", {})
            )
            fresh = summary.get("owner") == self.engine.engine_id and summary.get("status") == "RUNNING"
            return json_answer(201 if fresh else 200, _public(summary))
        if parts[0] == "executions":
            if len(parts) == 1 and method == "GET":
                query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
                limit = int(query.get("limit", "100")) if query.get("limit", "100").isdigit() else 100
                rows = await store.list_executions(query.get("stateMachine"), query.get("status"), limit)
                return json_answer(200, {"executions": [_public(r) for r in rows]})
            if len(parts) == 2 and method == "GET":
                return json_answer(200, _public(await describe(store, parts[1])))
            if len(parts) == 3 and parts[2] == "history" and method == "GET":
                return json_answer(200, {"events": await history(store, parts[1])})
            if len(parts) == 3 and parts[2] == "stop" and method == "POST":
                request = _json(await read_body(receive)) or {}
                await stop(store, parts[1], request.get("error"), request.get("cause"))
                return json_answer(202, {"stopping": parts[1]})
            if len(parts) == 3 and parts[2] == "redrive" and method == "POST":
                count = await redrive(store, parts[1])
                return json_answer(202, {"redriving": parts[1], "redriveCount": count})
        return json_answer(404, {"error": f"no route {method} {path}"})

    async def drain(self, timeout: float) -> bool:
        return True

    async def shutdown(self) -> None:
        await self.engine.stop()


_ERROR = {"$ref": "#/components/schemas/Error"}
_EXECUTION = {"$ref": "#/components/schemas/Execution"}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# The document of the two operations the gateway routes here (StartExecution, DescribeExecution); the gateway
# merges it into the API's one document.
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "kfaas-saga", "version": "1", "description": "State machine executions"},
    "paths": {
        "/state-machines/{machine}/executions": {
            "post": {
                "operationId": "startExecution",
                "summary": "Start an execution (an existing name with the same input returns it)",
                "parameters": [
                    {"name": "machine", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "name": {
                                        "type": "string",
                                        "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$",
                                    },
                                    "input": {},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _answer("Started", _EXECUTION),
                    "200": _answer("Already running with this input", _EXECUTION),
                    "400": _answer("Invalid request, unknown state machine, or over a limit", _ERROR),
                    "409": _answer(
                        "ExecutionAlreadyExists: the name is taken with another input or has ended", _ERROR
                    ),
                    "503": _answer("MongoDB is unavailable; retry", _ERROR),
                },
            }
        },
        "/executions/{execution}": {
            "get": {
                "operationId": "describeExecution",
                "summary": "An execution: status, input, output, error, times",
                "parameters": [
                    {"name": "execution", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _answer("The execution", _EXECUTION),
                    "404": _answer("No such execution", _ERROR),
                    "503": _answer("MongoDB is unavailable; retry", _ERROR),
                },
            }
        },
    },
    "components": {
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Execution": {
                "type": "object",
                "required": ["executionId", "stateMachine", "name", "status"],
                "properties": {
                    "executionId": {"type": "string"},
                    "stateMachine": {"type": "string"},
                    "name": {"type": "string"},
                    "status": {"enum": ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]},
                    "input": {},
                    "output": {},
                    "error": {"type": ["string", "null"]},
                    "cause": {"type": ["string", "null"]},
                    "startDate": {"type": "string"},
                    "stopDate": {"type": ["string", "null"]},
                    "redriveCount": {"type": "integer"},
                },
            },
        }
    },
}


def _json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


def _public(summary: dict[str, Any]) -> dict[str, Any]:
    out = {"executionId": summary["_id"], **{k: v for k, v in summary.items() if k != "_id"}}
    for key in ("input", "output"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    for key in ("startDate", "stopDate"):
        if out.get(key) is not None and hasattr(out[key], "isoformat"):
            out[key] = out[key].isoformat()
    return out
