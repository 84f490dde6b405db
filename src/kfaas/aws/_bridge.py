"""The Lambda Runtime API, served by kfaas, and the pool of runtime processes that poll it.

Any Lambda runtime client (aws-lambda-go's ``lambda.Start``, awslambdaric, a Lambda base image's client, a
hand-written ``bootstrap``) runs unchanged: it reads ``AWS_LAMBDA_RUNTIME_API``, long-polls
``GET /2018-06-01/runtime/invocation/next`` and posts the outcome to ``/invocation/{id}/response`` or
``/invocation/{id}/error`` (``/init/error`` when it cannot start). A runtime client handles one invocation at
a time, so kfaas runs ``concurrency`` of them, each with a Runtime API of its own on a loopback port (so kfaas
knows whose invocation a dying process took). A process that exits is started again, and the invocation it
held fails as Lambda reports it (``Runtime.ExitError``); one that overruns the deadline is killed and its
invocation fails with ``Sandbox.Timedout``, as Lambda resets a sandbox that timed out.

The HTTP/1.1 server is a small one of its own (asyncio streams, keep-alive): the clients are known and few,
and it reads both request bodies they send (aws-lambda-go: chunked with trailers; awslambdaric:
``Content-Length``). With ``external=True`` (a Lambda container image beside kfaas's container) kfaas serves
one Runtime API on a fixed port and starts no process: the container is the runtime client, and Kubernetes
restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from kfaas.aws._config import ConfigError, LambdaConfig
from kfaas.aws._errors import handler_error
from kfaas.aws._invoke import Invocation, log_stream

__all__ = ["PREFIX", "BridgeInvoker"]

log = logging.getLogger("kfaas.aws.bridge")

PREFIX = "/2018-06-01/runtime"
_MAX_HEAD = 64 * 1024
_MAX_BODY = 6 * 1024 * 1024 + 1024  # Lambda's 6 MB response limit, and a little
_RESTART_DELAYS = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)


@dataclass
class _Pending:
    request_id: str
    payload: bytes
    headers: list[tuple[str, str]]
    deadline_ms: int
    done: asyncio.Future[tuple[bool, bytes, str | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Slot:
    """One runtime process and the Runtime API it polls."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.port = 0
        self.server: asyncio.Server | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.generation = 0
        self.waiter: asyncio.Future[_Pending] | None = None  # a /next poll waiting for an invocation
        self.current: _Pending | None = None  # the invocation it holds
        self.init_error: dict[str, Any] | None = None
        self.crashes: deque[float] = deque(maxlen=len(_RESTART_DELAYS))
        self.watcher: asyncio.Task[None] | None = None
        self.alive = False


class BridgeInvoker:
    """The pool: ``invoke`` waits for a runtime process that is polling, hands it the event, waits for its
    answer within the deadline."""

    def __init__(
        self, config: LambdaConfig, *, external: bool = False, environ: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.external = external
        self.size = 1 if external else config.concurrency
        self.environ = dict(os.environ if environ is None else environ)
        self.slots = [_Slot(i) for i in range(self.size)]
        self._idle: asyncio.Queue[tuple[_Slot, int]] = asyncio.Queue()
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.command = self._command()

    # -- lifecycle ------------------------------------------------------------------------------------
    def _command(self) -> list[str]:
        if self.external:
            return []
        given = self.environ.get("KFAAS_LAMBDA_BOOTSTRAP")
        bootstrap = Path(given) if given else self.config.folder / "bootstrap"
        if not bootstrap.is_file():
            raise ConfigError(
                f"{bootstrap} does not exist: a {self.config.runtime} function runs the executable bootstrap of "
                "its folder (build it, e.g. GOOS=linux go build -o bootstrap, or set KFAAS_LAMBDA_BOOTSTRAP)"
            )
        if not os.access(bootstrap, os.X_OK):
            raise ConfigError(f"{bootstrap} is not executable (chmod +x)")
        return [str(bootstrap.resolve())]

    async def start(self) -> None:
        for slot in self.slots:
            port = self.config.runtime_api_port if self.external else 0
            slot.server = await asyncio.start_server(
                functools.partial(self._connection, slot), "127.0.0.1", port, reuse_address=True
            )
            slot.port = slot.server.sockets[0].getsockname()[1]
            if self.external:
                slot.alive = True
                slot.generation += 1
                log.info("Lambda Runtime API for the image's runtime client on 127.0.0.1:%d", slot.port)
            else:
                await self._spawn(slot)

    async def stop(self) -> None:
        self._stopping = True
        for slot in self.slots:
            if slot.process is not None and slot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signal.SIGTERM)
        for slot in self.slots:
            if slot.process is not None:
                try:
                    await asyncio.wait_for(slot.process.wait(), 2.0)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        slot.process.kill()
                    await slot.process.wait()
            if slot.watcher is not None:
                slot.watcher.cancel()
            if slot.waiter is not None and not slot.waiter.done():
                slot.waiter.cancel()
            if slot.server is not None:
                slot.server.close()
        for task in list(self._tasks):
            task.cancel()
        for slot in self.slots:
            if slot.server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(slot.server.wait_closed(), 1.0)

    def health(self) -> dict[str, str]:
        if self.external:
            polling = any(s.waiter is not None or s.current is not None for s in self.slots)
            return {"runtime": "ok" if polling else "error: the image's runtime client has not polled yet"}
        alive = sum(1 for s in self.slots if s.alive)
        if alive == 0:
            return {"runtime": f"error: none of {self.size} runtime process(es) is running"}
        return {"runtime": "ok"}

    def _env(self, slot: _Slot) -> dict[str, str]:
        c = self.config
        env = {k: v for k, v in self.environ.items() if not k.startswith(("FUNCTION_", "KFAAS_"))}
        env.pop("PORT", None)
        env.update(
            AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{slot.port}",
            _HANDLER=c.handler,
            LAMBDA_TASK_ROOT=str(c.folder.resolve()),
            LAMBDA_RUNTIME_DIR=str(c.folder.resolve()),
            AWS_LAMBDA_FUNCTION_NAME=c.name,
            AWS_LAMBDA_FUNCTION_VERSION=c.version,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(c.memory_mb),
            AWS_LAMBDA_FUNCTION_TIMEOUT=str(int(c.timeout)),
            AWS_LAMBDA_LOG_GROUP_NAME=c.log_group,
            AWS_LAMBDA_LOG_STREAM_NAME=log_stream(c) + f"-{slot.index}",
            AWS_LAMBDA_INITIALIZATION_TYPE="on-demand",
            AWS_REGION=c.account.region,
            AWS_DEFAULT_REGION=c.account.region,
        )
        env.setdefault("TZ", ":UTC")
        env.setdefault("LANG", "en_US.UTF-8")
        return env

    async def _spawn(self, slot: _Slot) -> None:
        slot.generation += 1
        slot.init_error = None
        slot.process = await asyncio.create_subprocess_exec(
            *self.command,
            env=self._env(slot),
            cwd=str(self.config.folder.resolve()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sys.stderr.fileno(),  # the request log owns stdout; the handler's output goes beside kfaas's
            stderr=sys.stderr.fileno(),
        )
        slot.alive = True
        slot.watcher = asyncio.create_task(self._watch(slot, slot.process, slot.generation))

    async def _watch(self, slot: _Slot, process: asyncio.subprocess.Process, generation: int) -> None:
        code = await process.wait()
        if generation != slot.generation:
            return
        slot.alive = False
        if slot.waiter is not None and not slot.waiter.done():
            slot.waiter.cancel()
        slot.waiter = None
        pending, slot.current = slot.current, None
        if pending is not None and not pending.done.done():
            reason = f"signal: {signal.Signals(-code).name.lower()}" if code < 0 else f"exit status {code}"
            error = {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {pending.request_id} Error: Runtime exited with error: {reason}",
            }
            if slot.init_error is not None:
                error = slot.init_error
            pending.done.set_result((False, json.dumps(error).encode(), None))
        if self._stopping:
            return
        now = time.monotonic()
        slot.crashes.append(now)
        recent = [t for t in slot.crashes if now - t < 60]
        delay = _RESTART_DELAYS[min(len(recent) - 1, len(_RESTART_DELAYS) - 1)]
        log.warning(
            "runtime process %d exited (%s); starting it again in %.1fs",
            slot.index,
            code,
            delay,
            extra={"function": self.config.name},
        )
        await asyncio.sleep(delay)
        if not self._stopping:
            await self._spawn(slot)

    # -- invocations ----------------------------------------------------------------------------------
    async def invoke(self, event: Any, invocation: Invocation) -> Any:
        payload = json.dumps(event, separators=(",", ":")).encode()
        pending = _Pending(invocation.request_id, payload, self._headers(invocation), invocation.deadline_ms)
        remaining = max(0.0, invocation.deadline_ms / 1000 - time.time())
        slot = await self._take(remaining, invocation)
        slot.current = pending
        assert slot.waiter is not None
        slot.waiter.set_result(pending)
        slot.waiter = None
        remaining = max(0.0, invocation.deadline_ms / 1000 - time.time())
        try:
            ok, body, error_header = await asyncio.wait_for(asyncio.shield(pending.done), remaining)
        except asyncio.CancelledError:  # the caller gave up (its own timeout): the process must not go on
            await self._timed_out(slot, pending)
            raise
        except TimeoutError:
            await self._timed_out(slot, pending)
            raise handler_error(
                "Sandbox.Timedout",
                f"RequestId: {invocation.request_id} Error: Task timed out after {self.config.timeout:.2f} seconds",
            ) from None
        if ok:
            try:
                return json.loads(body) if body.strip() else None
            except ValueError:
                return body.decode("utf-8", errors="replace")
        try:
            error = json.loads(body) if body.strip() else {}
        except ValueError:
            error = {"errorMessage": body.decode("utf-8", errors="replace")}
        if not isinstance(error, dict):
            error = {"errorMessage": str(error)}
        error_type = str(error.get("errorType") or error_header or "Unhandled")
        trace = error.get("stackTrace")
        stack = [str(line) for line in trace] if isinstance(trace, list) else []
        raise handler_error(error_type, str(error.get("errorMessage", "")), stack)

    async def _take(self, remaining: float, invocation: Invocation) -> _Slot:
        deadline = time.monotonic() + remaining
        while True:
            left = deadline - time.monotonic()
            try:
                slot, generation = await asyncio.wait_for(self._idle.get(), max(left, 0.0))
            except TimeoutError:
                raise handler_error(
                    "Sandbox.Timedout",
                    f"RequestId: {invocation.request_id} Error: no runtime process was ready within "
                    f"{self.config.timeout:.2f} seconds",
                ) from None
            if slot.generation == generation and slot.waiter is not None and not slot.waiter.done():
                return slot

    async def _timed_out(self, slot: _Slot, pending: _Pending) -> None:
        if slot.current is pending:
            slot.current = None
        if self.external:
            return  # the image's container is not ours to kill; its late answer is dropped
        process = slot.process
        if process is not None and process.returncode is None:
            log.warning("invocation %s timed out: the runtime process is started anew", pending.request_id)
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def _headers(self, invocation: Invocation) -> list[tuple[str, str]]:
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(invocation.deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", self.config.function_arn),
            ("Lambda-Runtime-Trace-Id", invocation.trace_id or _trace_id()),
        ]
        if invocation.client_context is not None:
            headers.append(("Lambda-Runtime-Client-Context", json.dumps(invocation.client_context)))
        if invocation.identity is not None:
            headers.append(("Lambda-Runtime-Cognito-Identity", json.dumps(invocation.identity)))
        return headers

    # -- the Runtime API ------------------------------------------------------------------------------
    async def _connection(
        self, slot: _Slot, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                method, path, headers, body = request
                status, extra, answer = await self._route(slot, method, path, headers, body)
                _write(writer, status, extra, answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        except _BadRequest as exc:
            with contextlib.suppress(Exception):
                _write(writer, 400, [], _error("InvalidRequest", str(exc)), close=True)
                await writer.drain()
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _route(  # noqa: PLR0911 - one answer per Runtime API path
        self, slot: _Slot, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if not path.startswith(PREFIX):
            return 404, [], _error("NotFound", f"no such Runtime API path: {path}")
        rest = path[len(PREFIX) :]
        if rest == "/invocation/next":
            if method != "GET":
                return 405, [], _error("MethodNotAllowed", "use GET")
            return await self._next(slot)
        if rest == "/init/error":
            error = _json_error(body, headers)
            slot.init_error = error
            log.error(
                "runtime process %d failed to start: %s: %s",
                slot.index,
                error.get("errorType"),
                error.get("errorMessage"),
            )
            return 202, [], b'{"status":"OK"}'
        # /invocation/{id}/response|error: the id as the client got it (a CloudEvent id may hold '/')
        outcome = next((o for o in ("/response", "/error") if rest.endswith(o)), None)
        if outcome is not None and rest.startswith("/invocation/") and method == "POST":
            request_id = unquote(rest[len("/invocation/") : -len(outcome)])
            current = slot.current
            if current is None or current.request_id != request_id:
                return 400, [], _error("InvalidRequestID", f"no invocation {request_id} is in progress here")
            slot.current = None
            if not current.done.done():
                if outcome == "/response":
                    current.done.set_result((True, body, None))
                else:
                    error_type = headers.get("lambda-runtime-function-error-type")
                    current.done.set_result(
                        (False, json.dumps(_json_error(body, headers)).encode(), error_type)
                    )
            return 202, [], b'{"status":"OK"}'
        return 404, [], _error("NotFound", f"no such Runtime API path: {path}")

    async def _next(self, slot: _Slot) -> tuple[int, list[tuple[str, str]], bytes]:
        if slot.current is not None and not self.external:
            # a new poll while one is held: the client gave up on it (Lambda's clients never do)
            current, slot.current = slot.current, None
            if not current.done.done():
                current.done.set_result(
                    (False, _error("Runtime.InvalidState", "the runtime polled again"), None)
                )
        waiter: asyncio.Future[_Pending] = asyncio.get_running_loop().create_future()
        slot.waiter = waiter
        self._idle.put_nowait((slot, slot.generation))
        pending = await waiter
        return 200, [*pending.headers, ("Content-Type", "application/json")], pending.payload


class _BadRequest(ValueError):
    pass


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _json_error(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    try:
        error = json.loads(body) if body.strip() else {}
    except ValueError:
        error = {"errorMessage": body.decode("utf-8", errors="replace")}
    if not isinstance(error, dict):
        error = {"errorMessage": str(error)}
    if not error.get("errorType"):
        error["errorType"] = headers.get("lambda-runtime-function-error-type") or "Unhandled"
    return error


def _trace_id() -> str:
    """An X-Ray trace header, as Lambda passes one (Root=1-<epoch hex>-<96 bits>)."""
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    except asyncio.LimitOverrunError:
        raise _BadRequest("request head too large") from None
    if len(head) > _MAX_HEAD:
        raise _BadRequest("request head too large")
    lines = head[:-4].decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        raise _BadRequest(f"not an HTTP request line: {lines[0][:80]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _chunked(reader)
    else:
        length = int(headers.get("content-length") or 0)
        if length > _MAX_BODY:
            raise _BadRequest(f"body of {length} bytes is over the limit of {_MAX_BODY}")
        body = await reader.readexactly(length) if length else b""
    return method, target.split("?", 1)[0], headers, body


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body; trailers (aws-lambda-go sends its error type in one) are read and set aside."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequest(f"bad chunk size line {line[:40]!r}") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailer fields, then the empty line
                pass
            return b"".join(parts)
        total += size
        if total > _MAX_BODY:
            raise _BadRequest(f"body over the limit of {_MAX_BODY} bytes")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


_REASONS = {200: b"OK", 202: b"Accepted", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


def _write(
    writer: asyncio.StreamWriter,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    close: bool = False,
) -> None:
    out = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"OK"))]
    if not any(k.lower() == "content-type" for k, _ in headers):
        out.append(b"Content-Type: application/json\r\n")
    for name, value in headers:
        out.append(
            b"%s: %s\r\n" % (name.encode("latin-1"), value.replace("\r", " ").replace("\n", " ").encode())
        )
    out.append(b"Content-Length: %d\r\n" % len(body))
    if close:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    out.append(body)
    writer.write(b"".join(out))
