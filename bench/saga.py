"""State machine engine benchmark: Pass transitions/s, the 4-step saga end to end, engine time per Task.

    MONGODB_URL=... AMQP_URL=... .venv/bin/python bench/saga.py [--executions 100] [--states 50] [--sagas 200]

Side by side in one run, on the MongoDB-wire server and RabbitMQ given:

(a) Pass transitions per second of one engine (this process: the Engine class of ``kfaas saga``), for
    ``--executions`` concurrent executions of a chain of ``--states`` Pass states, every transition stored
    before the next; beside two baselines: the same executions in the pure interpreter with nothing stored
    (the engine's CPU ceiling), and ``insert_one`` of documents of the same size one after the other (one
    store round trip per transition, without group commit).
(b) the seed's 4-step saga (the definition of statemachines/order-saga, unchanged) end to end through the
    dev broker with a no-op function (one ``kfaas serve`` process), ``--sagas`` executions started at once:
    executions/s and p50/p99 latency from the start to SUCCEEDED.
(c) the engine's own time per Task transition during (b): CPU per transition inside the engine (interpreter,
    JSON, building the stored document), and from a task reply reaching the engine to the next task
    request accepted by the broker (one MongoDB round trip and one publish included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chain(states: int) -> dict[str, Any]:
    names = [f"S{i}" for i in range(states)]
    return {
        "StartAt": names[0],
        "States": {
            n: {
                "Type": "Pass",
                "Result": {"step": i},
                "ResultPath": "$.last",
                **({"Next": names[i + 1]} if i + 1 < states else {"End": True}),
            }
            for i, n in enumerate(names)
        },
    }


def write_app(tmp: Path, states: int) -> Path:
    functions = tmp / "functions"
    for name in ("reserve-inventory", "process-payment", "release-inventory", "complete-order"):
        (functions / name).mkdir(parents=True)
        (functions / name / "function.yaml").write_text(
            "kind: cloudevent\ntarget: handle\nsource: ../../noop/main.py\nscaling: {target: 100}\n"
        )
    (tmp / "noop").mkdir()
    (tmp / "noop" / "main.py").write_text((ROOT / "bench" / "saga_noop" / "main.py").read_text())
    machines = tmp / "statemachines"
    (machines / "pass-chain").mkdir(parents=True)
    (machines / "pass-chain" / "definition.json").write_text(json.dumps(chain(states)))
    (machines / "pass-chain" / "statemachine.yaml").write_text("definition: definition.json\n")
    (machines / "order-saga").mkdir()
    for name in ("statemachine.yaml", "step-functions.yaml"):
        (machines / "order-saga" / name).write_text(
            (ROOT / "statemachines" / "order-saga" / name).read_text()
        )
    return functions


async def pass_chain(engine: Any, executions: int, states: int) -> tuple[float, int]:
    before = engine.transitions_committed
    started = time.perf_counter()
    ids = [f"pass-chain:{uuid.uuid4().hex[:10]}" for _ in range(executions)]
    await asyncio.gather(*(engine.start_execution("pass-chain", i.split(":")[1], {"n": 1}) for i in ids))
    await wait_all(engine, ids, 600)
    rows = [d async for d in engine.store.executions.find({"_id": {"$in": ids}})]
    # first start to last stop as the engine stored them: the 0.5 s polling is not counted
    seconds = max(d["stopDate"] for d in rows).timestamp() - min(d["startDate"] for d in rows).timestamp()
    del started
    return (engine.transitions_committed - before) / seconds, engine.transitions_committed - before


async def wait_all(
    engine: Any, ids: list[str], timeout: float, done_at: dict[str, float] | None = None
) -> None:
    pending = set(ids)
    deadline = time.monotonic() + timeout
    while pending:
        cursor = engine.store.executions.find(
            {"_id": {"$in": list(pending)}, "status": {"$ne": "RUNNING"}}, {"_id": 1}
        )
        async for doc in cursor:
            pending.discard(doc["_id"])
            if done_at is not None:
                done_at[doc["_id"]] = time.perf_counter()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} execution(s) still running")
        await asyncio.sleep(0.5)  # polling FerretDB harder would slow what is measured


def interpreter_only(executions: int, states: int) -> float:
    from kfaas.saga import Run, compile_definition

    machine = compile_definition(chain(states))
    started = time.perf_counter()
    count = 0
    for i in range(executions):
        run = Run.start(
            machine, {"n": 1}, execution_id=f"x:{i}", name=str(i), state_machine="x", now=time.time()
        )
        while not run.done:
            run.step(run.runnable()[0], time.time())
            json.dumps(run.doc)  # what the engine serialises for each stored transition
            run.events = []
            count += 1
    return count / (time.perf_counter() - started)


async def insert_baseline(db: Any, count: int, size: int) -> float:
    coll = db["bench_inserts"]
    payload = "x" * size
    started = time.perf_counter()
    for i in range(count):
        await coll.insert_one({"_id": i, "state": payload})
    rate = count / (time.perf_counter() - started)
    await coll.drop()
    return rate


async def main(args: argparse.Namespace) -> None:
    from pymongo import AsyncMongoClient

    from kfaas.base.server import serve_embedded
    from kfaas.broker import DevBroker, serve_ingress
    from kfaas.saga import Engine, EngineApp
    from kfaas.spec import load_app

    load_before = os.getloadavg()
    tmp = Path(args.tmp or f"/tmp/kfaas-bench-saga-{uuid.uuid4().hex[:6]}")
    functions = write_app(tmp, args.states)
    app = load_app(functions)
    database = f"bench_saga_{uuid.uuid4().hex[:6]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(os.environ["MONGODB_URL"], tz_aware=True)
    db = client[database]
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    fn_port, engine_port, ingress_port = free_port(), free_port(), free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once)
        [
            sys.executable,
            "-m",
            "kfaas",
            "serve",
            "--source",
            str(tmp / "noop" / "main.py"),
            "--target",
            "handle",
            "--signature-type",
            "cloudevent",
            "--port",
            str(fn_port),
            "--host",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    urls = {fn.name: f"http://127.0.0.1:{fn_port}/" for fn in app.functions}
    urls["kfaas-saga"] = f"http://127.0.0.1:{engine_port}/"
    broker = DevBroker(app, os.environ["AMQP_URL"], urls.__getitem__, namespace=namespace, sources=False)
    engine = Engine(app, db, f"http://127.0.0.1:{ingress_port}/default")
    tasks: list[asyncio.Task[Any]] = []
    try:
        await broker.start()
        tasks.append(asyncio.ensure_future(serve_ingress(broker, "127.0.0.1", ingress_port)))
        await engine.start()
        tasks.append(asyncio.ensure_future(serve_embedded(EngineApp(engine), "127.0.0.1", engine_port)))
        await asyncio.sleep(1.0)
        # (a) Pass chains, and the baselines
        rate, transitions = await pass_chain(engine, args.executions, args.states)
        ceiling = interpreter_only(args.executions, args.states)
        size = (
            len(json.dumps((engine.live and next(iter(engine.live.values())).run.doc) or {"frames": {}}))
            + 600
        )
        floor = await insert_baseline(db, 500, size)
        # (b) + (c) the 4-step saga with a no-op function
        engine.cpu_timings, engine.reply_to_request = [], []
        names = [uuid.uuid4().hex[:10] for _ in range(args.sagas)]
        started_at: dict[str, float] = {}
        done_at: dict[str, float] = {}
        t0 = time.perf_counter()

        async def start(name: str) -> None:
            started_at[f"order-saga:{name}"] = time.perf_counter()
            await engine.start_execution("order-saga", name, {"orderId": name, "totalCents": 100})

        await asyncio.gather(*(start(n) for n in names))
        await wait_all(engine, list(started_at), 600, done_at)
        elapsed = time.perf_counter() - t0
        rows = [d async for d in engine.store.executions.find({"stateMachine": "order-saga"})]
        statuses = [d["status"] for d in rows]
        # from the start to SUCCEEDED as the engine stored them (its stopDate), not as seen by polling
        latencies = [(d["stopDate"] - d["startDate"]).total_seconds() for d in rows if d.get("stopDate")]
        elapsed = max(d["stopDate"] for d in rows).timestamp() - min(d["startDate"] for d in rows).timestamp()
        load_after = os.getloadavg()
        result = {
            "pass": {
                "executions": args.executions,
                "states": args.states,
                "transitions": transitions,
                "transitions_per_s": round(rate),
                "interpreter_only_per_s": round(ceiling),
                "sequential_insert_one_per_s": round(floor),
            },
            "saga": {
                "executions": args.sagas,
                "succeeded": statuses.count("SUCCEEDED"),
                "executions_per_s": round(args.sagas / elapsed, 1),
                "latency_ms": {
                    "p50": round(pct(latencies, 0.5) * 1000, 1),
                    "p99": round(pct(latencies, 0.99) * 1000, 1),
                },
            },
            "engine_per_task_transition_ms": {
                "cpu_p50": round(pct(engine.cpu_timings, 0.5) * 1000, 3),
                "cpu_p99": round(pct(engine.cpu_timings, 0.99) * 1000, 3),
                "reply_to_next_request_p50": round(pct(engine.reply_to_request, 0.5) * 1000, 2),
                "reply_to_next_request_p99": round(pct(engine.reply_to_request, 0.99) * 1000, 2),
            },
            "load_average": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in load_after],
            },
        }
        print(json.dumps(result, indent=None if args.quiet else 2))
    finally:
        await engine.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        channel = await broker.connection.channel()
        for ref in broker.triggers:
            for q in (ref.queue, ref.dead_letter_queue):
                try:
                    await channel.queue_delete(q)
                except Exception:
                    channel = await broker.connection.channel()
        await broker.stop()
        proc.terminate()
        proc.wait(10)
        await client.drop_database(database)
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executions", type=int, default=100, help="concurrent Pass-chain executions (100)")
    parser.add_argument("--states", type=int, default=50, help="Pass states per chain (50)")
    parser.add_argument("--sagas", type=int, default=200, help="4-step saga executions (200)")
    parser.add_argument("--tmp", help="folder for the generated app (default: a new one under /tmp)")
    parser.add_argument("--quiet", action="store_true", help="one JSON line")
    asyncio.run(main(parser.parse_args()))
