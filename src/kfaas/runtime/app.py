"""The ASGI application every function container runs: health, CloudEvents in and out, JSON errors, one log line.

It is plain ASGI on purpose: no web framework sits between the server and a ``cloud_event`` function, which is
what keeps cold start and per-request cost low (docs/benchmarks.md). ``cloudevent`` and legacy ``event``
functions take CloudEvents and Google Cloud Functions' legacy events alike, each converted to the form the
function is written for (kfaas.events). ``http`` functions get a Starlette ``Request`` (as
functions-framework's ASGI mode gives them) or a Flask one (kfaas.runtime.ff), ``typed`` functions their
input object, and ``asgi`` targets (FastAPI apps) are called directly, with the :class:`~kfaas.Context` in
``request.state.kfaas`` and ``app.state.kfaas``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from kfaas.base.asgi import Limits, RequestRefused, decode_headers, read_stream, refusal, rsgi_headers
from kfaas.base.asgi import json_answer as _json_body
from kfaas.base.asgi import read_body as _read_body
from kfaas.base.asgi import send_answer as _send
from kfaas.base.errors import AlreadyDone, InProgress, InvalidEvent, ServiceUnavailable, public_message
from kfaas.base.inflight import InFlight
from kfaas.events import (
    cloudevent_to_legacy,
    content_mode,
    legacy_context,
    legacy_payload,
    legacy_to_cloudevent,
    parse_events,
    to_binary,
)
from kfaas.runtime.context import Context, Invocation, invocation
from kfaas.runtime.log import RequestLog
from kfaas.runtime.targets import Target
from kfaas.runtime.tasks import is_task_request, task_error, task_result
from kfaas.runtime.workers import Workers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("kfaas.serve")

_Answer = TypeVar("_Answer")


def _strict(name: str) -> bool:
    """Header fields read as UTF-8 and refused when they are not: CloudEvents attributes, the content type."""
    return name.startswith("ce-") or name == "content-type"


def _headers(scope: Scope) -> dict[str, str]:
    return decode_headers(scope["headers"], _strict)


class FunctionApp:
    """ASGI app around one loaded :class:`~kfaas.runtime.targets.Target`."""

    def __init__(self, target: Target, ctx: Context, request_log: RequestLog | None = None) -> None:
        self.target = target
        self.ctx = ctx
        self.function_name = ctx.settings.function_name or target.name
        self.request_log = request_log or RequestLog(self.function_name)
        self.in_flight = InFlight()
        self.draining = False
        self._failing: set[str] = set()  # backing services the last readiness check found not answering
        settings = ctx.settings
        self.limits = Limits(max_body=settings.max_body_bytes, body_timeout=settings.body_timeout)
        self._inner_lifespan: _Lifespan | None = None
        self._closed = False
        self._http_handler: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
        self.workers = Workers(settings.threads)  # synchronous event functions run here
        if target.signature_type == "asgi" and hasattr(target.func, "state"):
            target.func.state.kfaas = ctx  # Starlette / FastAPI: request.app.state.kfaas

    # -- ASGI entry ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind == "websocket" and self.target.signature_type == "asgi":
            await self.target.func(self._with_state(scope), receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/health/liveness":
            await _send(send, *_json_body(200, {"status": "alive"}))
            return
        if path == "/health/readiness":
            await self._readiness(send)
            return
        started = time.perf_counter()
        with self.in_flight:
            if self.target.signature_type in ("cloudevent", "event") and not self._for_routes(scope):
                await self._cloudevent(scope, receive, send, started)
                return
            try:
                self.limits.check_head(scope["headers"])
                # read (bounded in size and time) before the function runs: a body over the limit or a
                # stalled one is answered here, whatever the framework of the function does with bodies
                body = await _read_body(receive, self.limits.max_body, self.limits.body_timeout)
            except RequestRefused as exc:
                status, headers, content = refusal(exc)
                await _send(send, status, headers, content)
            except ConnectionAbortedError:
                status = 499
            else:
                if self.target.signature_type == "typed":
                    status = await self._typed(scope, body, receive, send)
                else:
                    status = await self._call_http(scope, _replay(body, receive), send)
            self.request_log.write(
                scope["method"], path, status, started, traceparent=_header(scope, b"traceparent")
            )

    async def _typed(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> int:
        """A typed function's call, bounded as an event's is: a 504 past its timeout, ended when the caller
        goes away (the handler reads the body already read; the disconnect comes from the server)."""
        try:
            status = await self._while_connected(
                lambda: self._call_http(scope, _replay(body, receive), send), _asgi_disconnect(receive), {}
            )
        except ConnectionAbortedError:
            return 499
        if status is None:
            limit = self.ctx.settings.timeout
            log.warning("the function ran past its timeout of %gs and was cancelled", limit)
            error = f"the function did not finish within its timeout of {limit:g}s (KFAAS_TIMEOUT)"
            await _send(send, *_json_body(504, {"error": error}))
            return 504
        return status

    def _for_routes(self, scope: Scope) -> bool:
        """A request of a cloudevent target with routes (Target.routes) that is not a CloudEvent: a CloudEvent
        is a POST to / in binary (a ce-specversion header) or structured/batch mode (that content type)."""
        if self.target.routes is None:
            return False
        if scope["path"] == "/" and scope["method"] == "POST":
            for key, value in scope["headers"]:
                if key == b"ce-specversion" or (
                    key == b"content-type" and value.startswith(b"application/cloudevents")
                ):
                    return False
        return True

    async def _readiness(self, send: Send) -> None:
        await _send(send, *await self._readiness_answer())

    async def _readiness_answer(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if self.draining:
            return _json_body(503, {"status": "draining"})
        checks = await self.ctx.check()
        if self.target.checks is not None:
            checks.update(self.target.checks())
        ok = all(v == "ok" for v in checks.values())
        self._note_readiness(checks)
        return _json_body(200 if ok else 503, {"status": "ready" if ok else "not ready", **checks})

    def _note_readiness(self, checks: dict[str, str]) -> None:
        """One log line when a backing service stops answering and one when it is back, not one per probe."""
        failing = {name: result for name, result in checks.items() if result != "ok"}
        if set(failing) == self._failing:
            return
        for name in sorted(set(failing) - self._failing):
            log.warning("not ready: %s does not answer (%s)", name, failing[name], extra={"service": name})
        for name in sorted(self._failing - set(failing)):
            log.info("%s answers again", name, extra={"service": name})
        self._failing = set(failing)

    # -- CloudEvents (and legacy events) ----------------------------------------------------------------
    async def _cloudevent(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        method, path = scope["method"], scope["path"]
        limits = self.limits

        def read_headers() -> dict[str, str]:
            limits.check_head(scope["headers"])
            return _headers(scope)

        status, headers, body, calls = await self._event_request(
            method,
            path,
            read_headers,
            lambda: _read_body(receive, limits.max_body, limits.body_timeout),
            _asgi_disconnect(receive),
        )
        if status != 499:
            await _send(send, status, headers, body)
        self._log_event(
            method, path, status, started, calls, traceparent=lambda: _header(scope, b"traceparent")
        )

    async def _event_request(
        self,
        method: str,
        path: str,
        read_headers: Callable[[], dict[str, str]],
        read_body: Callable[[], Awaitable[bytes]],
        disconnected: Callable[[], Awaitable[object]],
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, list[_Call]]:
        """(status, header fields, body, the calls made) of the answer to one request to an event function,
        whichever interface it came through. ``read_headers`` checks the head against the limits and gives
        the header fields; ``read_body`` reads the body within them (both raise RequestRefused);
        ``disconnected`` returns once the caller has gone away (the invocation is ended then)."""
        calls: list[_Call] = []
        try:
            if path != "/":
                status, headers, body = _json_body(
                    404, {"error": f"no route {path}; CloudEvents go to POST /"}
                )
            elif method != "POST":
                status, headers, body = _json_body(405, {"error": f"method {method} not allowed; use POST /"})
                headers = [*headers, (b"allow", b"POST")]
            else:
                headers_in = read_headers()
                raw = await read_body()
                calls = self._calls(headers_in, raw, path)
                status, headers, body = await self._deliver_while_connected(calls, disconnected)
        except InvalidEvent as exc:  # RequestRefused included: 413, 408 and 431 keep their status
            status, headers, body = refusal(exc)
        except ConnectionAbortedError:
            status, headers, body = 499, [], b""
        return status, headers, body, calls

    def _log_event(
        self,
        method: str,
        path: str,
        status: int,
        started: float,
        calls: list[_Call],
        *,
        traceparent: Callable[[], str | None],
    ) -> None:
        first = calls[0] if calls else None
        self.request_log.write(
            method,
            path,
            status,
            started,
            ce_id=first.id if first else None,
            ce_type=first.type if first else None,
            ce_source=first.source if first else None,
            traceparent=(first.traceparent if first else None) or traceparent(),
        )

    # -- RSGI (granian's own interface): event functions ----------------------------------------------
    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        """The same contract as the ASGI app for event functions, over RSGI: the body in chunks, the answer
        in one call, no ASGI message dicts (docs/benchmarks.md). ``kfaas serve`` uses it for ``cloudevent``
        and ``event`` functions (:attr:`rsgi`)."""
        if scope.proto != "http":
            return
        path = scope.path
        if path == "/health/liveness":
            _respond(protocol, *_json_body(200, {"status": "alive"}))
            return
        if path == "/health/readiness":
            _respond(protocol, *await self._readiness_answer())
            return
        started = time.perf_counter()
        limits = self.limits
        with self.in_flight:
            status, headers, body, calls = await self._event_request(
                scope.method,
                path,
                lambda: rsgi_headers(scope.headers, limits, _strict),
                lambda: read_stream(protocol, limits.max_body, limits.body_timeout),
                protocol.client_disconnect,
            )
            if status != 499:
                _respond(protocol, status, headers, body)
            self._log_event(
                scope.method,
                path,
                status,
                started,
                calls,
                traceparent=lambda: scope.headers.get("traceparent"),
            )

    @property
    def rsgi(self) -> bool:
        """Whether this app is served over RSGI: event functions are, the rest (ASGI apps, Starlette and
        Flask requests, typed functions, a target with ASGI routes beside its events) need ASGI."""
        return self.target.signature_type in ("cloudevent", "event") and self.target.routes is None

    def _calls(self, headers: dict[str, str], raw: bytes, path: str) -> list[_Call]:
        """The function calls a request makes: one per event, in the form the function is written for."""
        legacy_fn = self.target.signature_type == "event"
        payload = legacy_payload(headers, raw) if content_mode(headers) is None else None
        if payload is not None:  # a legacy event: no CloudEvent headers, a JSON body naming an eventType
            if legacy_fn:
                data, context, _ = legacy_context(payload, path)
                return [_legacy_call(data, context)]
            event = legacy_to_cloudevent(payload, path)
            return [_Call((event,), event)]
        events = parse_events(headers, raw)  # refuses a request that carries neither
        if legacy_fn:
            return [_legacy_call(*cloudevent_to_legacy(event), event=event) for event in events]
        return [_Call((event,), event) for event in events]

    async def _deliver_while_connected(
        self, calls: list[_Call], disconnected: Callable[[], Awaitable[object]]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Deliver within the function's timeout (a 504 after it), ending the invocation if the caller goes
        away first (``disconnected`` returns then)."""
        answer = await self._while_connected(lambda: self._deliver(calls), disconnected, _ids(calls))
        return self._timed_out(calls) if answer is None else answer

    async def _while_connected(
        self,
        work: Callable[[], Awaitable[_Answer]],
        disconnected: Callable[[], Awaitable[object]],
        ids: dict[str, Any],
    ) -> _Answer | None:
        """``work()`` as one invocation: None when it ran past the function's timeout and was cancelled,
        ``ConnectionAbortedError`` when the caller went away first.

        A broker whose attempt timed out closes the connection and will deliver the event again: the
        abandoned attempt is ended, so a ``ctx.once`` claim it holds is settled now rather than at its
        timeout (a block under way ends first: see :class:`~kfaas.runtime.context.Invocation`).
        """
        grace = self.ctx.settings.mongodb_timeout_ms / 1000
        with invocation(self.ctx.settings.timeout or None, grace) as current:
            watcher = asyncio.ensure_future(_watch_disconnect(disconnected, current))
            answer: _Answer | None = None
            try:
                answer = await work()
                current.finish()  # no cancellation from now on; one asked for meanwhile arrives here
                if current.cancelled:
                    await asyncio.sleep(0)
                return answer
            except asyncio.CancelledError:
                if current.cancelled and current.task.uncancel() == 0:
                    if answer is not None:  # it ended before the cancellation reached it
                        return answer
                    if current.timed_out:
                        return None
                    log.warning("the caller went away; the delivery was cancelled", extra=ids)
                    raise ConnectionAbortedError from None
                raise
            finally:
                watcher.cancel()

    def _timed_out(self, calls: list[_Call]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        limit = self.ctx.settings.timeout
        log.warning("the function ran past its timeout of %gs and was cancelled", limit, extra=_ids(calls))
        error = f"the function did not finish within its timeout of {limit:g}s (KFAAS_TIMEOUT)"
        return _json_body(504, {"error": error, "id": calls[0].id if calls else None})

    async def _deliver(self, calls: list[_Call]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        reply: Any = None
        task = False
        for call in calls:
            task = call.event is not None and is_task_request(call.event)
            try:
                reply = await self._invoke(call.args)
                if task:
                    reply = task_result(call.event, self.function_name, reply)
            except AlreadyDone:
                reply = None
            except (ServiceUnavailable, InProgress) as exc:
                log.warning("retryable failure: %s", exc, extra={"ce_id": call.id})
                return _json_body(503, {"error": str(exc), "id": call.id})
            except Exception as exc:
                if task:  # a task request is answered with the failure (docs/runtime.md, task requests)
                    log.warning(
                        "task %s failed: %s: %s",
                        call.id,
                        type(exc).__name__,
                        exc,
                        exc_info=True,
                        extra={"ce_id": call.id},
                    )
                    reply = task_error(call.event, self.function_name, exc)
                    continue
                if isinstance(exc, InvalidEvent):
                    return _json_body(422, {"error": str(exc), "id": call.id})
                handled = await self._handled(exc)
                if handled is not None:
                    return handled
                log.exception(
                    "handler %s raised",
                    self.target.name,
                    extra={"ce_id": call.id, "ce_type": call.type},
                )
                # the exception's type (and a kfaas error's message) tells whoever reads a dead letter what
                # kind of failure it was; any other message, and every trace, stays in the log
                from kfaas.runtime.replies import failure

                return _json_body(500, {**failure(exc, self.ctx.settings.debug), "id": call.id})
        # a legacy function's return value is no reply (as under functions-framework), a task's answer is
        if reply is None or len(calls) != 1 or (self.target.signature_type == "event" and not task):
            return 204, [], b""
        return self._reply(reply)

    async def _handled(self, exc: Exception) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """The answer of the ``functions_framework.errorhandler`` registered for ``exc``, if there is one."""
        if not self.target.error_handlers:
            return None
        from kfaas.runtime.ff import find_handler
        from kfaas.runtime.replies import answer

        handler = find_handler(self.target.error_handlers, exc)
        if handler is None:
            return None
        log.info(
            "%s answered by its error handler %s", type(exc).__name__, getattr(handler, "__name__", handler)
        )
        try:
            result = handler(exc)
            if hasattr(result, "__await__"):
                result = await result
            return answer(result)
        except Exception as broken:
            log.exception("the error handler of %s failed", type(exc).__name__)
            return _json_body(500, {"error": public_message(broken)})

    async def _invoke(self, args: tuple[Any, ...]) -> Any:
        if self.target.wants_context:
            args = (*args, self.ctx)
        if self.target.is_async:
            return await self.target.func(*args)
        # a sync function's thread cannot be stopped: only the wait for it ends with the invocation
        return await self.workers.run(self.target.func, *args)

    def _reply(self, reply: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        from cloudevents.abstract import CloudEvent as AnyCloudEvent

        if not isinstance(reply, AnyCloudEvent):
            log.error("cloud_event function %s returned %s", self.target.name, type(reply).__name__)
            return _json_body(
                500, {"error": "the function returned something other than None or a CloudEvent; see its log"}
            )
        headers, body = to_binary(reply)
        raw_headers = [(k.lower().encode("latin-1"), str(v).encode()) for k, v in headers.items()]
        return 200, raw_headers, body

    # -- HTTP functions and ASGI apps -----------------------------------------------------------------
    def _with_state(self, scope: Scope) -> Scope:
        state = scope.get("state")
        scope["state"] = {**state, "kfaas": self.ctx} if state else {"kfaas": self.ctx}
        return scope

    async def _call_http(self, scope: Scope, receive: Receive, send: Send) -> int:
        status = 500
        started = False

        async def capture(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        if self.target.signature_type == "asgi":
            handler = self.target.func
        elif self.target.routes is not None:
            handler = self.target.routes
        elif self.target.app is not None:  # a Flask function
            handler = self.target.app
        else:
            if self._http_handler is None:
                if self.target.signature_type == "typed":
                    from kfaas.runtime.typed import typed_handler

                    self._http_handler = typed_handler(self.target, self.ctx, self._handled, self.workers)
                else:
                    from kfaas.runtime.http import http_handler

                    self._http_handler = http_handler(self.target, self.ctx, self.workers)
            handler = self._http_handler
        try:
            await handler(self._with_state(scope), receive, capture)
        except Exception:
            # Starlette re-raises after it has sent its 500; log once, answer if nothing was sent yet
            log.exception("%s %s failed", scope["method"], scope["path"])
            if not started:
                status = 500
                await _send(send, *_json_body(500, {"error": "internal error; see the function's log"}))
        return status

    # -- lifespan ------------------------------------------------------------------------------------
    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        await self.ctx.start()
        if self.target.on_start is not None:
            await self.target.on_start()
        if self.target.signature_type == "asgi":
            self._inner_lifespan = _Lifespan(self.target.func, {"kfaas": self.ctx})
            await self._inner_lifespan.startup()

    async def drain(self, timeout: float) -> bool:
        """Refuse readiness, then wait up to ``timeout`` s for in-flight requests; True when none is left."""
        self.draining = True
        idle = await self.in_flight.wait_idle(timeout)
        self.request_log.flush()
        if idle:
            return True
        log.warning("drain timed out with %d request(s) in flight", self.in_flight.count)
        return False

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.request_log.flush()
        self.workers.close()
        if self._inner_lifespan is not None:
            await self._inner_lifespan.shutdown()
        if self.target.on_stop is not None:
            await self.target.on_stop()
        await self.ctx.close()


class _Call:
    """One call of an event function: its arguments and the event's identity for the log and errors."""

    __slots__ = ("args", "event", "id", "source", "traceparent", "type")

    def __init__(self, args: tuple[Any, ...], event: Any, *, cloudevent: bool = True) -> None:
        self.args = args
        self.event = event if cloudevent else None  # the CloudEvent it came as (task requests are ones)
        self.id: str | None = event["id"]
        self.type: str | None = event["type"]
        self.source: str | None = event["source"]
        self.traceparent: str | None = event.get("traceparent")


def _legacy_call(data: Any, context: dict[str, Any], event: Any = None) -> _Call:
    """The call of a legacy function ``(data, context)``; logged with the CloudEvent it came as, if any."""
    from kfaas.runtime.ff import legacy_context as context_object

    resource = context["resource"]
    identity = event or {
        "id": context["eventId"],
        "type": context["eventType"],
        "source": resource.get("name", "") if isinstance(resource, dict) else resource,
    }
    return _Call((data, context_object(context)), identity, cloudevent=event is not None)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then whatever the client does next (a disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _ids(calls: list[_Call]) -> dict[str, Any]:
    return {"ce_id": calls[0].id} if calls else {}


async def _watch_disconnect(disconnected: Callable[[], Awaitable[object]], current: Invocation) -> None:
    with contextlib.suppress(Exception):
        await disconnected()
        current.cancel()


def _asgi_disconnect(receive: Receive) -> Callable[[], Awaitable[object]]:
    """Returns once the ASGI server says the client went away (its body already read)."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    return disconnected


def _respond(protocol: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
    if body:
        protocol.response_bytes(status, fields, body)
    else:
        protocol.response_empty(status, fields)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class _Lifespan:
    """Runs an inner ASGI app's lifespan (FastAPI start-up/shutdown) inside ours; tolerates apps without one."""

    def __init__(self, app: Any, state: dict[str, Any]) -> None:
        self._app = app
        self._state = state
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self._state}
        try:
            await self._app(scope, self._to_app.get, self._from_app.put)
        except Exception:
            # An app without lifespan support raises on the unknown scope type: that is allowed (ASGI spec).
            self._supported = False
            await self._from_app.put({"type": "lifespan.unsupported"})

    async def startup(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._to_app.put({"type": "lifespan.startup"})
        reply = await self._from_app.get()
        if reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the application's start-up failed: {reply.get('message', '')}")

    async def shutdown(self) -> None:
        if self._task is None or not self._supported or self._task.done():
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        reply = await self._from_app.get()
        if reply["type"] == "lifespan.shutdown.failed":
            log.error("the application's shutdown failed: %s", reply.get("message", ""))
        await self._task
