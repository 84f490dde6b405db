"""``kfaas invoke <function> --event <file>``: one event through a function, as it would arrive, like
``sam local invoke``.

- a ``kind: lambda`` function gets the file as its Lambda event (an API Gateway, SQS or EventBridge event,
  AWS's samples included), through the same invoker ``kfaas serve`` uses: in this process for a python
  runtime, through the Runtime API and one runtime process for the others. The handler's result is printed
  as JSON; a failure prints Lambda's error object and exits 1;
- a ``kind: cloudevent`` function gets the file as a structured CloudEvent (JSON with ``specversion``); its
  reply event, if any, is printed as a structured CloudEvent.

The function's ``env`` from its description is set, over this environment (MONGODB_URL and the other
settings come from here, as ``kfaas serve`` reads them). Exit codes: 0 done, 1 the function failed, 2 bad
input (an unknown function, a file that is not JSON, a kind that takes no events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    from kfaas.spec import options

    parser.add_argument("function", help="the function's name (its folder under --functions)")
    parser.add_argument("--event", required=True, help="the event file (JSON), or - for standard input")
    options.functions_folder(parser)
    parser.add_argument(
        "--timeout", type=float, help="seconds the invocation may take (default: the description's)"
    )


def _read_event(name: str) -> Any:
    text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    return json.loads(text)


def run(args: argparse.Namespace) -> int:
    from kfaas.base.log import configure_logging
    from kfaas.spec import SpecError, load_app

    try:
        spec = load_app(args.functions).get(args.function)
    except SpecError as exc:
        sys.stderr.write(f"kfaas invoke: {exc}\n")
        return 2
    try:
        event = _read_event(args.event)
    except FileNotFoundError:
        sys.stderr.write(f"kfaas invoke: no such event file {args.event}\n")
        return 2
    except ValueError as exc:
        sys.stderr.write(f"kfaas invoke: {args.event} is not JSON: {exc}\n")
        return 2
    configure_logging(os.environ.get("LOG_LEVEL", "WARNING"))
    os.environ.update(spec.env)
    if spec.kind == "lambda":
        return asyncio.run(_lambda(spec, event, args.timeout))
    if spec.kind == "cloudevent":
        return asyncio.run(_cloudevent(spec, event))
    sys.stderr.write(
        f"kfaas invoke: {spec.name} is an http function: it takes requests, not events "
        "(run it with kfaas serve or kfaas dev and send it one)\n"
    )
    return 2


async def _lambda(spec: Any, event: Any, timeout: float | None) -> int:
    import dataclasses
    import time

    from kfaas.aws._config import ConfigError, load_config
    from kfaas.aws._errors import HandlerError, error_payload
    from kfaas.aws._invoke import Invocation
    from kfaas.aws.serve import invoker_for

    try:
        config = load_config(spec.folder / "function.yaml", {"KFAAS_FUNCTION": spec.name})
        config = dataclasses.replace(config, concurrency=1, timeout=timeout or config.timeout)
        if config.image is not None:
            sys.stderr.write(
                f"kfaas invoke: {spec.name} is a container image: run it with docker compose and send it the event\n"
            )
            return 2
        invoker = invoker_for(config)
    except (ConfigError, ImportError) as exc:
        sys.stderr.write(f"kfaas invoke: {exc}\n")
        return 2
    await invoker.start()
    try:
        request_id = str(uuid.uuid4())
        invocation = Invocation(request_id, int((time.time() + config.timeout) * 1000))
        try:
            result = await invoker.invoke(event, invocation)
        except HandlerError as exc:
            sys.stdout.write(json.dumps(error_payload(exc), indent=2) + "\n")
            return 1
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        await invoker.stop()


async def _cloudevent(spec: Any, event: Any) -> int:
    from cloudevents.conversion import to_structured

    from kfaas.base.errors import InvalidEvent
    from kfaas.events import parse_events
    from kfaas.runtime.context import Context
    from kfaas.runtime.settings import Settings
    from kfaas.runtime.targets import LoadError, load_target

    try:
        events = parse_events({"content-type": "application/cloudevents+json"}, json.dumps(event).encode())
        target = load_target(spec.folder / spec.source, spec.target, "cloudevent")
    except (InvalidEvent, LoadError) as exc:
        sys.stderr.write(f"kfaas invoke: {exc}\n")
        return 2
    ctx = Context(Settings.from_env(function_name=spec.name))
    await ctx.start()
    try:
        args = (events[0], ctx) if target.wants_context else (events[0],)
        try:
            reply = (
                await target.func(*args) if target.is_async else await asyncio.to_thread(target.func, *args)
            )
        except Exception as exc:
            sys.stdout.write(json.dumps({"error": type(exc).__name__, "message": str(exc)}, indent=2) + "\n")
            return 1
        if reply is not None:
            _, body = to_structured(reply)
            sys.stdout.write(json.dumps(json.loads(body), indent=2) + "\n")
        return 0
    finally:
        await ctx.close()
