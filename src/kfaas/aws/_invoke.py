"""Invokers: how one invocation reaches the handler, in this process (python) or through the Runtime API."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kfaas.aws._config import ConfigError, LambdaConfig
from kfaas.aws._context import LambdaContext
from kfaas.aws._errors import HandlerError, handler_error

__all__ = ["Invocation", "Invoker", "PythonInvoker", "marshal"]


@dataclass(frozen=True)
class Invocation:
    """What a Lambda invocation carries besides the event (the Runtime API's ``Lambda-Runtime-*`` headers)."""

    request_id: str
    deadline_ms: int
    trace_id: str | None = None
    client_context: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None


class Invoker(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def invoke(self, event: Any, invocation: Invocation) -> Any:
        """The handler's result (JSON value); raises :class:`HandlerError` with Lambda's error type."""

    def health(self) -> dict[str, str]: ...


def marshal(value: Any) -> Any:
    """The value as it crosses Lambda's JSON boundary (a value JSON cannot hold is Runtime.MarshalError)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise handler_error("Runtime.MarshalError", f"Unable to marshal response: {exc}") from None


class PythonInvoker:
    """``module.function`` of the function's folder, called with ``(event, context)``: sync in a worker thread,
    ``async def`` on the event loop."""

    def __init__(self, config: LambdaConfig) -> None:
        self.config = config
        self.func: Any = None
        self.is_async = False

    def load(self) -> None:
        module_name, _, func_name = self.config.handler.rpartition(".")
        if not module_name or not func_name:
            raise ConfigError(
                f"handler {self.config.handler!r} is not module.function (e.g. app.lambda_handler)"
            )
        root = self.config.folder.resolve()
        file = root / Path(*module_name.split(".")).with_suffix(".py")
        if not file.is_file():
            package = root / Path(*module_name.split(".")) / "__init__.py"
            if not package.is_file():
                raise ConfigError(f"handler {self.config.handler!r}: no {file.relative_to(root)} in {root}")
            file = package
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))  # the handler imports its sibling modules, as in LAMBDA_TASK_ROOT
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        func = getattr(module, func_name, None)
        if not callable(func):
            raise ConfigError(f"handler {self.config.handler!r}: {module_name} has no function {func_name!r}")
        self.func = func
        code = getattr(func, "__code__", None)
        self.is_async = code is not None and bool(code.co_flags & 0x0080)

    async def start(self) -> None:
        if self.func is None:
            self.load()

    async def stop(self) -> None:
        return None

    def health(self) -> dict[str, str]:
        return {}

    def context(self, invocation: Invocation) -> LambdaContext:
        c = self.config
        return LambdaContext(
            request_id=invocation.request_id,
            deadline_ms=invocation.deadline_ms,
            invoked_function_arn=c.function_arn,
            function_name=c.name,
            function_version=c.version,
            memory_limit_in_mb=str(c.memory_mb),
            log_group_name=c.log_group,
            log_stream_name=log_stream(c),
            client_context=invocation.client_context,
            identity=invocation.identity,
        )

    async def invoke(self, event: Any, invocation: Invocation) -> Any:
        context = self.context(invocation)
        try:
            if self.is_async:
                result = await self.func(event, context)
            else:
                result = await asyncio.to_thread(self.func, event, context)
        except HandlerError:
            raise
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            root = str(self.config.folder.resolve())
            first = next((i for i, f in enumerate(frames) if f.filename.startswith(root)), 0)
            own = frames[first:]  # from the handler's own frame on, as awslambdaric reports it
            raise handler_error(type(exc).__name__, str(exc), traceback.format_list(own)) from exc
        if asyncio.iscoroutine(result):  # a sync wrapper around a coroutine function
            result = await result
        return marshal(result)


def log_stream(config: LambdaConfig) -> str:
    import os
    import socket
    from datetime import UTC, datetime

    return f"{datetime.now(UTC):%Y/%m/%d}/[{config.version}]{socket.gethostname()}-{os.getpid()}"
