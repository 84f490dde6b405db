"""The seed's Go handlers, unchanged (examples/aws-lambda-go), through real ``kfaas serve`` processes.

``kfaas dev`` runs them (the Runtime API bridge and a pool of runtime processes per function), the dev broker
and the gateway, against the real RabbitMQ and MongoDB-wire server: GetUser answers 200, 400, 404 and 500
through the gateway; ProcessOrder takes the orders of the ``orders`` queue as SQS batches, stores them and
emits OrderProcessed, which a Python Lambda handler subscribed to it receives as an EventBridge event.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from lambdatest import GO_EXAMPLE, LambdaDev, build_go, publish_plain

pytestmark = pytest.mark.integration

WATCH = Path(__file__).resolve().parents[1] / "test_functions" / "lambda_watch"


@pytest.fixture(scope="session")
def go_binaries(require_tool: Callable[[str], str]) -> dict[str, Path]:
    go = require_tool("go")
    return {name: build_go(go, name) for name in ("get-user", "process-order")}


def _seed_code(block: int) -> str:
    import re

    seed = GO_EXAMPLE.parents[1].parent / "shared" / "seed" / "serverless-architecture.md"
    if not seed.is_file():
        pytest.skip(f"{seed} is not there")
    return re.findall(r"```go\n(.*?)```", seed.read_text(), re.S)[block]


def test_the_handlers_are_the_seeds_exactly() -> None:
    assert (GO_EXAMPLE / "functions" / "get-user" / "main.go").read_text() == _seed_code(0)
    assert (GO_EXAMPLE / "functions" / "process-order" / "main.go").read_text() == _seed_code(1)


def _with_binaries(run: LambdaDev, binaries: dict[str, Path]) -> None:
    for name, binary in binaries.items():
        target = run.functions / name / "bootstrap"
        shutil.copy2(binary, target)
        target.chmod(0o755)


async def test_get_user_through_the_gateway(
    lambda_dev: Callable[[Path], LambdaDev], go_binaries: dict[str, Path], mongodb_url: str
) -> None:
    from bson import ObjectId
    from pymongo import AsyncMongoClient
    from tcpproxy import TcpProxy

    host, port = mongodb_url.split("//", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1].split(":")
    proxy = TcpProxy(host, int(port))  # MongoDB "goes down" for the 500 without stopping it for others
    await proxy.start()
    run = lambda_dev(GO_EXAMPLE / "functions")
    run.rename_queues()
    run.mongodb_url = mongodb_url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}", 1)
    _with_binaries(run, go_binaries)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        user_id = ObjectId()
        await client[run.database].users.insert_one(
            {"_id": user_id, "email": "ada@example.com", "name": "Ada"}
        )
        await run.start()
        async with httpx.AsyncClient(base_url=run.base_url, timeout=30) as http:
            found = await http.get(f"/users/{user_id}")
            assert found.status_code == 200, found.text
            assert found.json() == {"id": str(user_id), "email": "ada@example.com", "name": "Ada"}
            assert found.headers["content-type"] == "application/json"

            missing = await http.get(f"/users/{ObjectId()}")
            assert (missing.status_code, missing.json()) == (404, {"error": "User not found"})

            no_id = await http.get("/users")  # a route without {id}: the seed's own 400
            assert (no_id.status_code, no_id.json()) == (400, {"error": "Missing user ID"})

            await proxy.stop()
            broken = await http.get(f"/users/{user_id}")
            assert broken.status_code == 500, broken.text
            assert "error" in broken.json()
            assert broken.json()["error"]
    finally:
        await proxy.stop()
        await client.close()


async def test_process_order_from_the_orders_queue(
    lambda_dev: Callable[[Path], LambdaDev],
    go_binaries: dict[str, Path],
    mongodb_url: str,
    amqp_url: str,
    tmp_path: Path,
) -> None:
    from pymongo import AsyncMongoClient

    run = lambda_dev(GO_EXAMPLE / "functions")
    shutil.copytree(WATCH, run.functions / "order-watch")
    queues = run.rename_queues()
    _with_binaries(run, go_binaries)
    record = tmp_path / "watched.jsonl"
    record.touch()
    run.extra_env["LAMBDA_TEST_RECORD"] = str(record)
    await run.start()
    orders = [{"ID": f"o-{i}", "UserID": "u-1", "Total": 10.5 + i} for i in range(7)]
    await publish_plain(amqp_url, queues["orders"], [json.dumps(o).encode() for o in orders])

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        coll = client[run.database].orders

        async def stored() -> list[dict[str, Any]] | None:
            docs = await coll.find({}).to_list()
            return docs if len(docs) == len(orders) else None

        docs = await run.eventually(stored, 60, "7 orders stored by the Go ProcessOrder")
        assert {d["_id"]: d["total"] for d in docs} == {o["ID"]: o["Total"] for o in orders}
        assert {d["status"] for d in docs} == {"processed"}

        def events() -> list[dict[str, Any]]:
            return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]

        async def all_events() -> list[dict[str, Any]] | None:
            seen = events()
            return seen if len({e["event"]["detail"]["orderId"] for e in seen}) == len(orders) else None

        seen = await run.eventually(all_events, 60, "an OrderProcessed event per order at the Python handler")
        first = seen[0]["event"]
        assert first["detail-type"] == "OrderProcessed"
        assert first["source"] == "orders"
        # several records went to one invocation: the log of the pool shows fewer invocations than orders
        assert run.count('"path": "/"', "process-order") >= 1
    finally:
        await client.close()

    # a message that is not an order fails its batch (the seed returns the error): retried, then dead-lettered
    await publish_plain(amqp_url, queues["orders"], [b"not json"])

    async def dead_lettered() -> bool:
        shown = run.dlq("show", "process-order-orders")
        return shown.returncode == 0 and "the function failed" in shown.stdout

    await run.eventually(dead_lettered, 60, "the malformed order in the dead letters")
    shown = run.dlq("show", "process-order-orders").stdout
    assert "not json" in shown
    # Lambda's errorType for the seed's fmt.Errorf("unmarshaling order: %w", err) is its Go type's name
    assert "the function failed (wrapError)" in shown, shown
