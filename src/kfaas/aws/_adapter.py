"""A lambda function under ``kfaas serve``: what arrives becomes a Lambda event, the answer goes back.

- an HTTP request on one of its routes → an API Gateway event; the handler's answer → the HTTP response
  (502 ``{"message": "Internal server error"}`` when it fails or answers something API Gateway refuses);
- a CloudEvent from one of its queue sources → an SQS record, batched: up to ``batchSize`` deliveries that
  are in flight together (the trigger delivers that many at once) go to one invocation, within
  ``batchWindow``; each delivery is answered for its own record, so the broker retries and finally
  dead-letters only the records that failed (a partial batch response) or all of them (an error);
- a CloudEvent from one of its ping sources → an EventBridge Scheduled Event; any other → an EventBridge
  event; a task request (a state machine's Task) → its input, as Step Functions invokes a function;
- a failure raises an exception named after Lambda's ``errorType``: the runtime answers 500 with that type
  (a retry, then a dead letter that says it), a task's error reply carries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from kfaas.aws._config import LambdaConfig, QueueConfig
from kfaas.aws._errors import HandlerError, error_payload, handler_error, log_error
from kfaas.aws._invoke import Invocation, Invoker
from kfaas.aws.events import (
    S3_TYPES,
    ApiRequest,
    MalformedResponse,
    api_event,
    eventbridge_event,
    http_response,
    kinesis_event,
    kinesis_record,
    match_route,
    s3_event,
    scheduled_event,
    sqs_event,
    sqs_record,
)
from kfaas.runtime.tasks import REQUEST

__all__ = ["TASK_REQUEST", "LambdaFunction"]

log = logging.getLogger("kfaas.aws")

QUEUE_TYPE = "dev.knative.rabbitmq.event"
PING_TYPE = "dev.knative.sources.ping"
TASK_REQUEST = REQUEST  # a state machine's Task: the runtime answers it with the result (docs/runtime.md)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _attributes(event: Any) -> dict[str, Any]:
    return {k: v for k, v in event.get_attributes().items()}


class LambdaFunction:
    def __init__(self, config: LambdaConfig, invoker: Invoker) -> None:
        self.config = config
        self.invoker = invoker
        self.batchers = {name: _Batcher(self, q) for name, q in config.queues.items()}
        # a queue source's events carry source .../rabbitmqsources/<function>-<source>#<queue>
        self._queue_sources = {f"{config.name}-{q.name}#{q.queue}": name for name, q in config.queues.items()}
        self._ping_sources = {f"{config.name}-{name}": name for name in config.pings}
        self._api_id = uuid.uuid5(uuid.NAMESPACE_DNS, config.name).hex[:10]

    async def start(self) -> None:
        await self.invoker.start()

    async def stop(self) -> None:
        await self.invoker.stop()

    def invocation(
        self, request_id: str, client_context: dict[str, Any] | None = None, trace: str | None = None
    ) -> Invocation:
        deadline = int((time.time() + self.config.timeout) * 1000)
        return Invocation(request_id, deadline, _xray(trace), client_context)

    async def invoke(self, event: Any, invocation: Invocation) -> Any:
        try:
            return await self.invoker.invoke(event, invocation)
        except HandlerError as exc:
            log_error(exc.payload(), invocation.request_id)
            raise
        except Exception as exc:  # a fault of kfaas's, reported like a handler's
            log.exception("invocation %s failed", invocation.request_id)
            log_error(error_payload(exc), invocation.request_id)
            raise handler_error("Runtime.Unknown", f"{type(exc).__name__}: {exc}") from exc

    # -- CloudEvents ----------------------------------------------------------------------------------
    async def handle_event(self, event: Any) -> Any:
        """The runtime's cloudevent function: ``None``, a reply CloudEvent, or (a task request) the result."""
        attributes = _attributes(event)
        kind = attributes["type"]
        source = str(attributes.get("source", ""))
        context = {"custom": {k: str(v) for k, v in attributes.items()}, "env": {}, "client": None}
        invocation = self.invocation(str(attributes["id"]), context, attributes.get("traceparent"))
        data = event.get_data()
        if kind == TASK_REQUEST:  # Step Functions hands the state's input to the function as its event
            return await self.invoke(_json_value(data), invocation)
        if kind == QUEUE_TYPE and "/rabbitmqsources/" in source:
            name = self._queue_sources.get(source.rsplit("/", 1)[-1])
            if name is None:
                log.debug(
                    "event %s is from another function's queue (%s): not for %s",
                    attributes["id"],
                    source,
                    self.config.name,
                )
                return None
            queue = self.config.queues[name]
            record = sqs_record(attributes, data, queue=queue.queue, account=self.config.account)
            await self.batchers[name].submit(record, invocation)
            return None
        if "streamoffset" in attributes and self.config.streams:
            # a record of a stream source (Kinesis): one record per invocation; its batch arrives in order
            stream = str(attributes.get("streamname") or next(iter(self.config.streams.values())))
            record = kinesis_record(attributes, data, stream=stream, account=self.config.account)
            result = await self.invoke(kinesis_event([record]), invocation)
            return self._reply(attributes, result)
        if kind == PING_TYPE and "/pingsources/" in source:
            name = self._ping_sources.get(source.rsplit("/", 1)[-1])
            if name is None:
                log.debug("event %s is another function's schedule (%s)", attributes["id"], source)
                return None
            lambda_event = scheduled_event(
                attributes, rule=f"{self.config.name}-{name}", account=self.config.account
            )
        elif kind in S3_TYPES and source.startswith("/kfaas/buckets/"):
            lambda_event = s3_event(attributes, data, account=self.config.account)
        else:
            lambda_event = eventbridge_event(attributes, data, account=self.config.account)
        result = await self.invoke(lambda_event, invocation)
        return self._reply(attributes, result)

    def _reply(self, attributes: dict[str, Any], result: Any) -> Any:
        if self.config.reply_type is None or result is None:
            return None
        from cloudevents.http import CloudEvent

        reply = {
            "type": self.config.reply_type,
            "source": self.config.reply_source or f"/kfaas/{self.config.name}",
            "id": str(uuid.uuid4()),
            "datacontenttype": "application/json",
        }
        return CloudEvent(reply, result)

    # -- HTTP -----------------------------------------------------------------------------------------
    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The function's API routes (the runtime has read the body within its limits already)."""
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method = scope["method"]
        path = scope["path"]
        routes = [
            r for r in self.config.routes if method in r.methods or (method == "HEAD" and "GET" in r.methods)
        ]
        match = match_route([r.template for r in routes], path)
        if match is None:
            known = match_route([r.template for r in self.config.routes], path)
            status = 405 if known else 404
            await _answer(
                send,
                status,
                [("content-type", "application/json")],
                json.dumps({"error": f"no route for {method} {path}"}).encode(),
            )
            return
        route = next(r for r in routes if r.template == match.template)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        request_id = next((v for k, v in headers if k in ("x-request-id", "x-amzn-requestid")), None) or str(
            uuid.uuid4()
        )
        client = scope.get("client")
        forwarded = next((v for k, v in headers if k == "x-forwarded-for"), None)
        request = ApiRequest(
            method=method,
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
            source_ip=(
                forwarded.split(",")[0].strip() if forwarded else (client[0] if client else "127.0.0.1")
            ),
            request_id=request_id,
        )
        event = api_event(
            request,
            match,
            api=route.api,
            stage=self.config.stage,
            account=self.config.account,
            api_id=self._api_id,
        )
        trace = next((v for k, v in headers if k == "traceparent"), None)
        try:
            result = await self.invoke(event, self.invocation(request_id, None, trace))
            answer = http_response(result, api=route.api)
        except HandlerError as exc:
            await _bad_gateway(send, f"the function failed ({exc.error_type}); see its log")
            return
        except MalformedResponse as exc:
            log.error("function %s: malformed Lambda proxy response: %s", self.config.name, exc)
            await _bad_gateway(send, f"malformed Lambda proxy response: {exc}")
            return
        raw = [
            (k.lower().encode("latin-1"), v.encode("latin-1", errors="replace")) for k, v in answer.headers
        ]
        await _answer(send, answer.status, raw, b"" if method == "HEAD" else answer.body)


async def _answer(send: Send, status: int, headers: list[Any], body: bytes) -> None:
    encoded = [
        (k.encode("latin-1") if isinstance(k, str) else k, v.encode("latin-1") if isinstance(v, str) else v)
        for k, v in headers
    ]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*encoded, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _bad_gateway(send: Send, why: str) -> None:
    # API Gateway's own answer, and kfaas's error field beside it
    body = json.dumps({"message": "Internal server error", "error": why}).encode()
    await _answer(send, 502, [("content-type", "application/json")], body)


def _json_value(data: Any) -> Any:
    if isinstance(data, bytes | bytearray):
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return bytes(data).decode("utf-8", errors="replace")
    return data


def _xray(traceparent: str | None) -> str | None:
    """Lambda-Runtime-Trace-Id from a W3C traceparent (the same trace and parent ids)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return None
    trace, parent, flags = parts[1], parts[2], parts[3]
    sampled = "1" if int(flags or "0", 16) & 1 else "0"
    return f"Root=1-{trace[:8]}-{trace[8:]};Parent={parent};Sampled={sampled}"


class BatchItemFailure(HandlerError):
    """The handler named this record in its partial batch response: it is delivered again."""


class _Batcher:
    """Gathers one queue source's records into SQS events of up to ``batch_size``.

    Records of deliveries in flight together form a batch: while an invocation runs, the records that arrive
    wait for the next one (so a busy function gets fuller batches, as SQS fills them from a deeper queue);
    ``batch_window`` holds a batch that is not full yet that long for more. Each record's delivery is
    answered with its own outcome.
    """

    def __init__(self, function: LambdaFunction, queue: QueueConfig) -> None:
        self.function = function
        self.queue = queue
        self.slots = asyncio.Semaphore(function.config.concurrency)
        self.pending: list[tuple[dict[str, Any], Invocation, asyncio.Future[None]]] = []
        self._filling: asyncio.Task[None] | None = None
        self._full = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, record: dict[str, Any], invocation: Invocation) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((record, invocation, done))
        if len(self.pending) >= self.queue.batch_size:
            self._full.set()
        if self._filling is None or self._filling.done():
            self._filling = asyncio.create_task(self._fill())
        await done

    async def _fill(self) -> None:
        while self.pending:
            if self.queue.batch_window > 0 and len(self.pending) < self.queue.batch_size:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.queue.batch_window)
            await self.slots.acquire()
            batch, self.pending = self.pending[: self.queue.batch_size], self.pending[self.queue.batch_size :]
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[dict[str, Any], Invocation, asyncio.Future[None]]]) -> None:
        try:
            # one invocation for the batch: the first record's request id, the earliest deadline
            first = batch[0][1]
            invocation = Invocation(
                first.request_id,
                min(i.deadline_ms for _, i, _ in batch),
                first.trace_id,
                first.client_context,
            )
            try:
                result = await self.function.invoke(sqs_event([r for r, _, _ in batch]), invocation)
            except HandlerError as exc:
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                return
            failed = self._failures(result, {r["messageId"] for r, _, _ in batch})
            for record, _, done in batch:
                if done.done():
                    continue
                if failed is None:  # an invalid partial batch response fails the whole batch, as on AWS
                    done.set_exception(
                        handler_error(
                            "BatchItemFailure", "the partial batch response names no record of this batch"
                        )
                    )
                elif record["messageId"] in failed:
                    done.set_exception(
                        BatchItemFailure(f"the handler reported record {record['messageId']} as failed")
                    )
                else:
                    done.set_result(None)
        finally:
            self.slots.release()

    def _failures(self, result: Any, ids: set[str]) -> set[str] | None:
        """The records a partial batch response names (empty: all succeeded); None when it is invalid."""
        if (
            not self.queue.report_failures
            or not isinstance(result, dict)
            or "batchItemFailures" not in result
        ):
            return set()
        items = result["batchItemFailures"]
        if items is None:
            return set()
        if not isinstance(items, list):
            return None
        failed = set()
        for item in items:
            ident = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not isinstance(ident, str) or ident not in ids:
                return None
            failed.add(ident)
        return failed
