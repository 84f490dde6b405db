"""The seed's order saga, durably, through the broker: real RabbitMQ and MongoDB, the four functions as
``kfaas serve`` processes, ``kfaas saga`` engine processes (two, one SIGKILLed, in the restart test)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from sagatest import ROOT, Stack, saga_stack

from kfaas.base.server import serve_embedded

pytestmark = pytest.mark.integration

SAGA = ["reserve-inventory", "process-payment", "release-inventory", "complete-order"]
STATEMACHINES = ROOT / "statemachines"


class Gateway:
    """A payment gateway stand-in that honours idempotency keys, as real ones do (a repeated key is answered
    without a second charge; ``repeats`` counts those); it can fail its first calls with 503."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0) -> None:
        self.fail_first = fail_first
        self.delay = delay
        self.calls = 0
        self.charges: Counter[str] = Counter()
        self.repeats = 0
        self.port = 0
        self.task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.calls += 1
        headers = dict(scope["headers"])
        await asyncio.sleep(self.delay)
        if self.calls <= self.fail_first:
            status = 503
        else:
            key = headers.get(b"idempotency-key", b"").decode()
            if key and key in self.charges:
                self.repeats += 1
            else:
                self.charges[key] += 1
            status = 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    async def start(self) -> str:
        from sagatest import free_port

        self.port = free_port()
        self.task = asyncio.ensure_future(serve_embedded(self, "127.0.0.1", self.port))
        await asyncio.sleep(0.3)
        return f"http://127.0.0.1:{self.port}/charges"

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def _db(stack: Stack) -> Any:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url)
    return client, client[stack.database]


async def _order(db: Any, qty: int = 2, price_cents: int = 1250, sku: str = "book") -> str:
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    await db.orders.insert_one(
        {
            "_id": order_id,
            "userId": "u-1",
            "items": [{"sku": sku, "qty": qty, "price": price_cents / 100}],
            "totalCents": qty * price_cents,
            "status": "processed",
        }
    )
    return order_id


def _saga_input(order_id: str) -> dict[str, Any]:
    return {"orderId": order_id, "userId": "u-1"}


def _states(history: list[dict[str, Any]]) -> list[str]:
    return [e["details"]["name"] for e in history if e["type"].endswith("StateEntered")]


@pytest.fixture
async def gateway() -> Any:
    gw = Gateway()
    yield gw
    await gw.stop()


async def test_happy_path_payment_failure_and_inventory_failure(
    tmp_path: Path, mongodb_url: str, amqp_url: str, gateway: Gateway
) -> None:
    url = await gateway.start()
    gateway.fail_first = 0
    env = {"process-payment": {"PAYMENT_GATEWAY_URL": url}, "reserve-inventory": {"DEFAULT_STOCK": "10"}}
    async with saga_stack(
        tmp_path, mongodb_url, amqp_url, SAGA, statemachines=STATEMACHINES, env=env
    ) as stack:
        client, db = await _db(stack)
        try:
            ok, short = await _order(db, qty=2), await _order(db, qty=50)
            await stack.start_execution("order-saga", ok, _saga_input(ok))
            await stack.start_execution("order-saga", short, _saga_input(short))
            done = await stack.wait_done(f"order-saga:{ok}")
            assert done["status"] == "SUCCEEDED", done
            assert done["output"] == {"orderId": ok, "status": "completed", "paymentId": f"pay-{ok}"}
            assert (await db.orders.find_one({"_id": ok}))["paymentId"] == f"pay-{ok}"
            assert gateway.charges[f"order-{ok}"] == 1
            # StartExecution / DescribeExecution are routes of the gateway too
            from kfaas.gateway import routes_of

            routes = {
                (r.template, m) for r in routes_of(stack.app) for m in r.methods if r.function == "kfaas-saga"
            }
            assert ("/state-machines/{machine}/executions", "POST") in routes
            assert ("/executions/{execution}", "GET") in routes
            history = await stack.history(f"order-saga:{ok}")
            assert _states(history) == ["ReserveInventory", "ProcessPayment", "CompleteOrder"]
            # inventory fails: nothing held, released, FAILED (the seed's Fail state has no error of its own)
            failed = await stack.wait_done(f"order-saga:{short}")
            assert failed["status"] == "FAILED"
            assert failed["lastError"]["error"] == "InventoryError"
            assert "not enough book" in failed["lastError"]["cause"]
            assert _states(await stack.history(f"order-saga:{short}")) == [
                "ReserveInventory",
                "ReleaseInventory",
                "Fail",
            ]
            stock = await db.inventory.find_one({"_id": "book"})
            assert stock == {"_id": "book", "available": 8, "holds": [ok]}
            # payment declined: the held stock is given back, FAILED with the cause kept
            gateway_declines = await _order(db, qty=1)
            await db.payments.insert_one({"_id": "marker"})
            stack.procs["process-payment"].terminate()
            stack.procs["process-payment"].wait(10)
            stack.env["process-payment"] = {
                "PAYMENT_LIMIT_CENTS": "100"
            }  # no gateway: over 1 EUR is declined
            stack.start_function("process-payment", port=int(stack.urls["process-payment"].rsplit(":", 1)[1]))
            await stack.wait_ready(stack.urls["process-payment"])
            await stack.start_execution("order-saga", gateway_declines, _saga_input(gateway_declines))
            declined = await stack.wait_done(f"order-saga:{gateway_declines}")
            assert declined["status"] == "FAILED"
            assert declined["lastError"]["error"] == "PaymentError"
            assert '"errorType":"PaymentError"' in declined["lastError"]["cause"]
            steps = _states(await stack.history(f"order-saga:{gateway_declines}"))
            assert steps == ["ReserveInventory", "ProcessPayment", "ReleaseInventory", "Fail"]
            stock = await db.inventory.find_one({"_id": "book"})
            assert stock == {"_id": "book", "available": 8, "holds": [ok]}
            assert (await db.reservations.find_one({"_id": gateway_declines}))["state"] == "released"
        finally:
            await client.close()


async def test_a_retryable_error_succeeds_on_a_later_attempt(
    tmp_path: Path, mongodb_url: str, amqp_url: str, gateway: Gateway
) -> None:
    gateway.fail_first = 2  # the gateway is down for two calls: ServiceUnavailable, the broker redelivers
    url = await gateway.start()
    env = {"process-payment": {"PAYMENT_GATEWAY_URL": url}}
    async with saga_stack(
        tmp_path, mongodb_url, amqp_url, SAGA, statemachines=STATEMACHINES, env=env
    ) as stack:
        client, db = await _db(stack)
        try:
            order = await _order(db)
            await stack.start_execution("order-saga", order, _saga_input(order))
            done = await stack.wait_done(f"order-saga:{order}", timeout=60)
            assert done["status"] == "SUCCEEDED", done
            assert gateway.calls == 3
            assert gateway.charges == Counter({f"order-{order}": 1})
        finally:
            await client.close()


async def test_two_engines_one_killed_every_execution_completes_once(
    tmp_path: Path, mongodb_url: str, amqp_url: str, gateway: Gateway
) -> None:
    gateway.delay = 0.3  # payments take a while, so executions are in flight when the engine dies
    url = await gateway.start()
    env = {"process-payment": {"PAYMENT_GATEWAY_URL": url}, "reserve-inventory": {"DEFAULT_STOCK": "1000"}}
    async with saga_stack(
        tmp_path, mongodb_url, amqp_url, SAGA, statemachines=STATEMACHINES, env=env, engines=2
    ) as stack:
        client, db = await _db(stack)
        try:
            # one SKU per order: FerretDB 1.x loses concurrent updates of one document (see docs/state-machines.md)
            orders = [await _order(db, qty=1, sku=f"book-{i}") for i in range(20)]
            await asyncio.gather(*(stack.start_execution("order-saga", o, _saga_input(o)) for o in orders))
            await asyncio.sleep(0.8)
            stack.kill("engine-0")
            results = await asyncio.gather(*(stack.wait_done(f"order-saga:{o}", timeout=90) for o in orders))
            assert [r["status"] for r in results] == ["SUCCEEDED"] * 20, [
                r for r in results if r["status"] != "SUCCEEDED"
            ]
            assert gateway.charges == Counter({f"order-{o}": 1 for o in orders})
            for i, order in enumerate(orders):
                stock = await db.inventory.find_one({"_id": f"book-{i}"})
                assert stock == {"_id": f"book-{i}", "available": 999, "holds": [order]}
            completed = await db.orders.count_documents(
                {"_id": {"$in": orders}, "paymentId": {"$exists": True}}
            )
            assert completed == 20
            assert stack.procs["engine-0"].returncode == -9
            # the kill came mid-execution: the surviving engine took executions over
            assert stack.logs is not None
            taken = (stack.logs / "engine-1.log").read_text().count("taken over from")
            assert taken > 0
            print(
                f"engine-1 took over {taken} execution(s); the gateway saw {gateway.repeats} repeated charge(s)"
            )
        finally:
            await client.close()


async def test_a_task_that_never_answers_times_out_and_is_caught(
    tmp_path: Path, mongodb_url: str, amqp_url: str
) -> None:
    app = Path(__file__).parent / "app"
    async with saga_stack(
        tmp_path,
        mongodb_url,
        amqp_url,
        ["sleepy", "counter", "flaky"],
        statemachines=app / "statemachines",
        functions_root=app / "functions",
    ) as stack:
        await stack.start_execution("timeout-test", "t-1", {"x": 1})
        done = await stack.wait_done("timeout-test:t-1", timeout=30)
        assert done["status"] == "SUCCEEDED", done
        assert done["output"] == {"x": 1, "timeout": {"Error": "States.Timeout"}}
        kinds = [e["type"] for e in await stack.history("timeout-test:t-1")]
        assert "TaskTimedOut" in kinds


async def test_redrive_after_a_fix_keeps_the_completed_steps(
    tmp_path: Path, mongodb_url: str, amqp_url: str
) -> None:
    app = Path(__file__).parent / "app"
    async with saga_stack(
        tmp_path,
        mongodb_url,
        amqp_url,
        ["sleepy", "counter", "flaky"],
        statemachines=app / "statemachines",
        functions_root=app / "functions",
        engines=2,
    ) as stack:
        import httpx

        client, db = await _db(stack)
        try:
            await stack.start_execution("redrive-test", "r-1", {"order": 7})
            failed = await stack.wait_done("redrive-test:r-1")
            assert failed["status"] == "FAILED"
            assert failed["error"] == "NotReady"
            await db.flags.insert_one({"_id": "fixed"})
            async with httpx.AsyncClient(trust_env=False) as http:
                answer = await http.post(f"{stack.api}/executions/redrive-test:r-1/redrive")
                assert answer.status_code == 202, answer.text
            done = await stack.wait_done("redrive-test:r-1")
            assert done["status"] == "SUCCEEDED", done
            assert done["redriveCount"] == 1
            assert done["output"]["input"] == {"order": 7, "counted": {"order": 7}}
            effects = await db.effects.find_one({"_id": "redrive-test:r-1"})
            assert effects == {"_id": "redrive-test:r-1", "counter": 1, "flaky": 2}
            kinds = [e["type"] for e in await stack.history("redrive-test:r-1")]
            assert kinds.count("ExecutionRedriven") == 1
        finally:
            await client.close()
