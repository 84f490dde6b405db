"""``kfaas executions list|show|history|start|stop|redrive``: state machine executions, straight from MongoDB.

Reads and writes what the engines share (``MONGODB_URL``, ``MONGODB_DATABASE``), so it works wherever the
database is reachable: beside ``kfaas dev``, against compose's MongoDB, through a port-forward on
Kubernetes. ``start`` and ``redrive`` leave the execution without an owner; a running engine claims it
within a second. ``show --graph FILE`` writes the state machine with this execution's path marked: SVG for
``.svg``, Mermaid text otherwise (``-`` prints it).
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

from kfaas.spec import options as _cliopts

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--mongodb-url", default=env("MONGODB_URL"), help="MongoDB URL (env MONGODB_URL)")
    common.add_argument(
        "--database", default=env("MONGODB_DATABASE", "kfaas"), help="(env MONGODB_DATABASE; kfaas)"
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    _cliopts.functions_folder(common)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="list|show|history|start|stop|redrive")
    p = sub.add_parser("list", parents=[common], help="executions, newest first")
    p.add_argument("--state-machine")
    p.add_argument("--status", choices=["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"])
    p.add_argument("--limit", type=int, default=50)
    p = sub.add_parser("show", parents=[common], help="one execution: status, input, output, error, times")
    p.add_argument("id", help="<state machine>:<name>")
    p.add_argument(
        "--graph", metavar="FILE", help="write the state machine with this path: .svg, or Mermaid (- prints)"
    )
    p = sub.add_parser("history", parents=[common], help="the execution's history events")
    p.add_argument("id")
    p = sub.add_parser("start", parents=[common], help="start an execution (an engine picks it up)")
    p.add_argument("state_machine")
    p.add_argument(
        "--name", help="execution name (default: a UUID); a running one with this input is returned"
    )
    p.add_argument("--input", default="{}", help="the input as JSON, or @file.json")
    p = sub.add_parser("stop", parents=[common], help="stop a running execution (ABORTED)")
    p.add_argument("id")
    p.add_argument("--error")
    p.add_argument("--cause")
    p = sub.add_parser(
        "redrive", parents=[common], help="run a failed execution again from the state that failed"
    )
    p.add_argument("id")


def run(args: argparse.Namespace) -> int:
    if not args.mongodb_url:
        sys.stderr.write("kfaas executions: no MongoDB URL: set MONGODB_URL or pass --mongodb-url\n")
        return 2
    return asyncio.run(_main(args))


def _fail(text: str, code: int = 1) -> int:
    sys.stderr.write(f"kfaas executions: {text}\n")
    return code


async def _main(args: argparse.Namespace) -> int:
    from pymongo import AsyncMongoClient
    from pymongo.errors import PyMongoError

    from kfaas.saga._ops import NotFound, Refused

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        args.mongodb_url, serverSelectionTimeoutMS=5000, timeoutMS=15000, tz_aware=True
    )
    try:
        from kfaas.saga._store import Store

        return await _verb(args, Store(client[args.database]))
    except NotFound as exc:
        return _fail(str(exc))
    except Refused as exc:
        return _fail(str(exc))
    except PyMongoError as exc:
        return _fail(f"MongoDB did not answer: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        await client.close()


def _out(args: argparse.Namespace, value: Any, text: str) -> None:
    sys.stdout.write((json.dumps(value, indent=2, default=str) if args.json else text) + "\n")


def _public(summary: dict[str, Any]) -> dict[str, Any]:
    out = {"executionId": summary["_id"], **{k: v for k, v in summary.items() if k != "_id"}}
    for key in ("input", "output"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


async def _verb(args: argparse.Namespace, store: Any) -> int:  # noqa: PLR0911 (one branch per verb)
    from kfaas.saga._ops import describe, history, redrive, stop

    if args.verb == "list":
        rows = [_public(r) for r in await store.list_executions(args.state_machine, args.status, args.limit)]
        lines = [f"{'EXECUTION':<48} {'STATUS':<10} {'STARTED':<26} ERROR"]
        for r in rows:
            started = str(r.get("startDate", ""))[:26]
            error = r.get("error") or (r.get("lastError") or {}).get("error") or ""
            lines.append(f"{r['executionId']:<48} {r['status']:<10} {started:<26} {error}")
        _out(args, rows, "\n".join(lines) if rows else "no executions")
        return 0
    if args.verb == "show":
        summary = _public(await describe(store, args.id))
        events = await history(store, args.id)
        if args.graph:
            return await _graph(args, summary, events)
        last = summary.get("lastError")
        text = [
            f"execution   {summary['executionId']}",
            f"status      {summary['status']}"
            + (f" (redriven {summary['redriveCount']}x)" if summary.get("redriveCount") else ""),
            f"started     {summary.get('startDate')}",
            f"stopped     {summary.get('stopDate') or '-'}",
            f"input       {json.dumps(summary.get('input'))}",
        ]
        if summary["status"] == "SUCCEEDED":
            text.append(f"output      {json.dumps(summary.get('output'))}")
        if summary.get("error") or summary.get("cause"):
            text.append(f"error       {summary.get('error')}: {summary.get('cause')}")
        if last and summary["status"] != "SUCCEEDED":
            text.append(f"because     {last['state']} failed with {last['error']}: {last.get('cause')}")
        entered = [
            e["details"]["name"] for e in events if e["type"].endswith("StateEntered") and "frame" not in e
        ]
        text.append(f"path        {' -> '.join(entered) or '-'}")
        text.append(f"events      {len(events)} (kfaas executions history {summary['executionId']})")
        _out(args, {**summary, "path": entered}, "\n".join(text))
        return 0
    if args.verb == "history":
        events = await history(store, args.id)
        lines = []
        for e in events:
            details = e.get("details", {})
            what = details.get("name") or details.get("resource") or ""
            extra = details.get("error") or ""
            if details.get("cause"):
                extra += f": {str(details['cause'])[:80]}"
            lines.append(f"{e['id']:>5}  {e['timestamp']}  {e['type']:<28} {what} {extra}".rstrip())
        _out(args, events, "\n".join(lines))
        return 0
    if args.verb == "start":
        return await _start(args, store)
    if args.verb == "stop":
        await stop(store, args.id, args.error, args.cause)
        _out(args, {"stopping": args.id}, f"stopping {args.id} (an engine applies it within a second)")
        return 0
    count = await redrive(store, args.id)
    _out(args, {"redriving": args.id, "redriveCount": count}, f"redriving {args.id} (redrive {count})")
    return 0


async def _start(args: argparse.Namespace, store: Any) -> int:
    from datetime import UTC, datetime

    from kfaas.saga._store import ExecutionAlreadyExists, execution_id

    app = _cliopts.load_functions("executions", args.functions)
    if app is None:
        return 2
    known = {m.name for m in app.statemachines}
    if args.state_machine not in known:
        return _fail(
            f"no state machine {args.state_machine!r} (known: {', '.join(sorted(known)) or 'none'})", 2
        )
    text = Path(args.input[1:]).read_text(encoding="utf-8") if args.input.startswith("@") else args.input  # noqa: ASYNC240 (one small file, once)
    try:
        input_ = json.loads(text)
    except json.JSONDecodeError as exc:
        return _fail(f"--input is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", 2)
    name = args.name or str(uuid.uuid4())
    summary = {
        "_id": execution_id(args.state_machine, name),
        "stateMachine": args.state_machine,
        "name": name,
        "status": "RUNNING",
        "input": json.dumps(input_, separators=(",", ":")),
        "startDate": datetime.now(UTC),
        "owner": None,
        "redriveCount": 0,
    }
    try:
        stored = await store.insert_execution(summary)
    except ExecutionAlreadyExists as exc:
        return _fail(f"ExecutionAlreadyExists: {exc}")
    fresh = stored is summary
    _out(args, _public(stored), f"{'started' if fresh else 'already running'} {stored['_id']}")
    return 0


async def _graph(args: argparse.Namespace, summary: dict[str, Any], events: list[dict[str, Any]]) -> int:
    from kfaas.saga._graph import mermaid, svg

    app = _cliopts.load_functions("executions", args.functions)
    if app is None:
        return 2
    machine = next((m for m in app.statemachines if m.name == summary["stateMachine"]), None)
    if machine is None:
        return _fail(
            f"state machine {summary['stateMachine']!r} is not in {args.functions}/../statemachines", 2
        )
    text = svg(machine.asl, events) if str(args.graph).endswith(".svg") else mermaid(machine.asl, events)
    if args.graph == "-":
        sys.stdout.write(text)
    else:
        Path(args.graph).write_text(text, encoding="utf-8")  # noqa: ASYNC240 (one small file, once)
        sys.stdout.write(f"wrote {args.graph}\n")
    return 0
