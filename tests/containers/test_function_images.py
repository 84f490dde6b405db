"""Every function's image, built from Dockerfile.base and run as Knative runs it, against the real services.

Per function: the image runs as uid 10001 with no capabilities on a read-only root filesystem; liveness and
readiness answer (readiness pings the real RabbitMQ and MongoDB-wire server); one real request or event
gives the expected answer and effect; SIGTERM ends it with exit code 0 within its drain bound. And per image:
no installer, compiler or sources, nothing that looks like a secret, and a size within budget.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from bson import ObjectId
from dockertest import MB, Container, Engine, inspect_image, memory_bytes, nano_cpus
from PIL import Image
from s3store import S3Store

from kfaas.dev.smtp import MailSink, free_port
from kfaas.spec import AppSpec

pytestmark = pytest.mark.integration

FUNCTIONS = [
    "complete-order",
    "create-user",
    "daily-report",
    "get-order",
    "get-user",
    "notify-email",
    "order-analytics",
    "order-audit",
    "place-order",
    "process-order",
    "process-payment",
    "release-inventory",
    "reserve-inventory",
    "resize-image",
]
DRAIN_SECONDS = 5
# What Dockerfile.base may add to its base image: kfaas, its dependencies and the function (measured:
# docs/testing.md). A dependency that bloats the images fails here, not in a user's registry bill.
BUDGET_OVER_BASE = 80 * MB
# resize-image's own requirements.txt on top: Pillow (PIL 7.3 MB + pillow.libs 15 MB) and boto3 (botocore 32 MB,
# most of it the service models, boto3, s3transfer, jmespath, dateutil, urllib3), plus their bytecode, as
# measured in a virtualenv; the function's choice, not a kfaas dependency every image pays for
# The platform image adds pyproject's `platform` extra: botocore for `kfaas aws-endpoints` (30 MB measured:
# the image was 96 MB over the CI base with it, function images 66 MB without it).
OWN_REQUIREMENTS = {"resize-image": 75 * MB, "platform": 30 * MB}


def test_every_function_is_covered(app: AppSpec) -> None:
    assert sorted(fn.name for fn in app.functions) == FUNCTIONS


def binary_event(type_: str, data: Any, **extra: str) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"ct-{uuid.uuid4().hex[:12]}",
        "ce-source": "/tests/containers",
        "ce-type": type_,
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in extra.items()},
    }
    return headers, json.dumps(data).encode()


def order(user_id: str = "u-ct") -> dict[str, Any]:
    return {
        "id": f"o-{uuid.uuid4().hex[:12]}",
        "userId": user_id,
        "items": [{"sku": "book", "qty": 2, "price": 12.5}],
        "total": 25.0,
    }


def processed(order_id: str, user_id: str) -> dict[str, Any]:
    return {
        "orderId": order_id,
        "userId": user_id,
        "total": 25.0,
        "totalCents": 2500,
        "items": 1,
        "placedAt": datetime.now(UTC).isoformat(),
    }


class Case:
    """One function's environment and its real request, run against the container at ``url``."""

    def __init__(
        self,
        db: Any,
        sink: MailSink,
        amqp_url: str,
        queue: str,
        s3: S3Store | None = None,
        thumbnails: str | None = None,
    ) -> None:
        self.db = db
        self.sink = sink
        self.amqp_url = amqp_url
        self.queue = queue
        self.s3 = s3
        self.thumbnails = thumbnails

    async def resize_image(self, http: httpx.AsyncClient) -> None:
        assert self.s3 is not None
        assert self.thumbnails is not None
        uploads = await asyncio.to_thread(self.s3.bucket, "ct-up")
        client = self.s3.client()
        buf = io.BytesIO()
        Image.new("RGB", (640, 480), (10, 120, 200)).save(buf, "JPEG")
        put = await asyncio.to_thread(client.put_object, Bucket=uploads, Key="ct.jpg", Body=buf.getvalue())
        data = {
            "bucket": uploads,
            "key": "ct.jpg",
            "size": len(buf.getvalue()),
            "etag": put["ETag"].strip('"'),
        }
        headers, body = binary_event("com.amazonaws.s3.ObjectCreated", data)
        r = await http.post("/", headers=headers, content=body)
        assert r.status_code in (200, 202, 204), r.text
        for size, want in ((512, (512, 384)), (128, (128, 96))):
            got = await asyncio.to_thread(client.get_object, Bucket=self.thumbnails, Key=f"{size}/ct.jpg")
            assert Image.open(io.BytesIO(got["Body"].read())).size == want

    async def mails(self, to: str, count: int = 1) -> list[Any]:
        return await asyncio.to_thread(self.sink.wait_for, count, 20.0, to)

    async def create_user(self, http: httpx.AsyncClient) -> None:
        email = f"ada-{uuid.uuid4().hex[:6]}@example.com"
        r = await http.post("/users", json={"email": email, "name": "Ada"})
        assert r.status_code == 201, r.text
        user_id = r.json()["id"]
        assert r.headers["location"] == f"/users/{user_id}"
        stored = await self.db.users.find_one({"email": email})
        assert stored is not None
        assert stored["name"] == "Ada"

    async def get_user(self, http: httpx.AsyncClient) -> None:
        user_id = ObjectId()
        await self.db.users.insert_one({"_id": user_id, "email": "bob@example.com", "name": "Bob"})
        r = await http.get(f"/users/{user_id}")
        assert r.status_code == 200, r.text
        assert r.json() == {"id": str(user_id), "email": "bob@example.com", "name": "Bob"}
        assert (await http.get(f"/users/{ObjectId()}")).status_code == 404

    async def get_order(self, http: httpx.AsyncClient) -> None:
        doc = order()
        await self.db.orders.insert_one(
            {"_id": doc["id"], **{k: v for k, v in doc.items() if k != "id"}, "status": "placed"}
        )
        r = await http.get(f"/orders/{doc['id']}")
        assert r.status_code == 200, r.text
        assert (r.json()["id"], r.json()["status"]) == (doc["id"], "placed")

    async def place_order(self, http: httpx.AsyncClient) -> None:
        doc = order()
        r = await http.post("/orders", json=doc)
        assert r.status_code == 202, r.text
        assert r.json()["id"] == doc["id"]
        connection = await aio_pika.connect(self.amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.queue, passive=True)
            # the outbox's relay publishes after the 202 (the order and its message were stored together)
            deadline = time.monotonic() + 15
            message = await queue.get(timeout=10, fail=False)
            while message is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                message = await queue.get(timeout=10, fail=False)
            assert message is not None, f"no message in {self.queue} within 15 s of the 202"
            await message.ack()
            event = json.loads(message.body)
            assert (event["type"], event["data"]["id"]) == ("com.kfaas.order.placed", doc["id"])
            await channel.queue_delete(self.queue)

    async def process_order(self, http: httpx.AsyncClient) -> None:
        doc = order()
        r = await http.post("/", headers=(h := binary_event("com.kfaas.order.placed", doc))[0], content=h[1])
        assert r.status_code == 200, r.text
        assert r.headers["ce-type"] == "com.kfaas.order.processed"
        assert r.json()["orderId"] == doc["id"]
        stored = await self.db.orders.find_one({"_id": doc["id"]})
        assert stored is not None
        assert (stored["status"], stored["totalCents"]) == ("processed", 2500)

    async def notify_email(self, http: httpx.AsyncClient) -> None:
        await self.db.users.insert_one({"_id": "u-ct-2", "email": "cy@example.com", "name": "Cy"})
        headers, body = binary_event("com.kfaas.order.processed", processed("o-ct-2", "u-ct-2"))
        r = await http.post("/", headers=headers, content=body)
        assert r.status_code in (200, 204), r.text
        mails = await self.mails("cy@example.com")
        assert "o-ct-2" in mails[0]["Subject"]

    async def order_analytics(self, http: httpx.AsyncClient) -> None:
        headers, body = binary_event("com.kfaas.order.processed", processed("o-ct-3", "u-ct-3"))
        r = await http.post("/", headers=headers, content=body)
        assert r.status_code in (200, 204), r.text
        totals = await self.db.order_totals_by_user.find_one({"_id": "u-ct-3"})
        assert totals is not None
        assert (totals["orders"], totals["totalCents"]) == (1, 2500)

    async def order_audit(self, http: httpx.AsyncClient) -> None:
        # a stream record as its stream source delivers it: the offset and the partition key as extensions
        offset = str(uuid.uuid4().int % 10**9)
        headers, body = binary_event(
            "com.kfaas.order.placed",
            order(),
            streamoffset=offset,
            partitionkey="o-ct-4",
            subject="o-ct-4",
        )
        r = await http.post("/", headers=headers, content=body)
        assert r.status_code in (200, 204), r.text
        entry = await self.db.order_audit.find_one({"_id": int(offset)})
        assert entry is not None
        assert (entry["orderId"], entry["type"]) == ("o-ct-4", "com.kfaas.order.placed")

    async def daily_report(self, http: httpx.AsyncClient) -> None:
        fired = datetime.now(UTC).replace(microsecond=0)
        day = (fired.date() - timedelta(days=1)).isoformat()
        await self.db.order_totals_by_day.insert_one({"_id": day, "orders": 2, "totalCents": 5000})
        headers, body = binary_event(
            "dev.knative.sources.ping", {"to": "ops@example.com"}, time=fired.isoformat()
        )
        r = await http.post("/", headers=headers, content=body)
        assert r.status_code in (200, 204), r.text
        mails = await self.mails("ops@example.com")
        assert mails[0]["Subject"] == f"Orders on {day}: 2, total 50.00"

    # -- the order saga's Task functions: a task request in, the correlated reply out (docs/runtime.md)
    async def _task(self, http: httpx.AsyncClient, data: dict[str, Any], execution: str) -> httpx.Response:
        headers, body = binary_event(
            "com.kfaas.task.request", data, id=f"{execution}/2.0", kfaasexecution=execution
        )
        return await http.post("/", headers=headers, content=body)

    async def reserve_inventory(self, http: httpx.AsyncClient) -> None:
        doc, sku = order(), f"sku-{uuid.uuid4().hex[:6]}"
        await self.db.orders.insert_one(
            {
                "_id": doc["id"],
                "userId": "u-ct",
                "items": [{"sku": sku, "qty": 2, "price": 12.5}],
                "totalCents": 2500,
            }
        )
        r = await self._task(http, {"orderId": doc["id"]}, f"order-saga:{doc['id']}")
        assert r.status_code == 200, r.text
        assert r.headers["ce-type"] == "com.kfaas.task.result"
        assert r.json()["items"] == [{"sku": sku, "qty": 2}]
        stock = await self.db.inventory.find_one({"_id": sku})
        assert stock is not None
        assert (stock["available"], stock["holds"]) == (98, [doc["id"]])

    async def process_payment(self, http: httpx.AsyncClient) -> None:
        r = await self._task(http, {"orderId": "o-ct-pay", "totalCents": 2500}, "order-saga:o-ct-pay")
        assert r.status_code == 200, r.text
        assert r.json() == {"orderId": "o-ct-pay", "paymentId": "pay-o-ct-pay", "amountCents": 2500}
        declined = await self._task(http, {"orderId": "o-ct-big", "totalCents": 10**9}, "order-saga:o-ct-big")
        assert declined.headers["ce-type"] == "com.kfaas.task.error"
        assert declined.json()["errorType"] == "PaymentError"

    async def release_inventory(self, http: httpx.AsyncClient) -> None:
        sku, execution = f"sku-{uuid.uuid4().hex[:6]}", "order-saga:o-ct-rel"
        await self.db.inventory.insert_one({"_id": sku, "available": 8, "holds": ["o-ct-rel"]})
        await self.db.reservations.insert_one(
            {
                "_id": "o-ct-rel",
                "items": [{"sku": sku, "qty": 2}],
                "state": "reserved",
                "execution": execution,
            }
        )
        r = await self._task(http, {"Error": "PaymentError", "Cause": "declined"}, execution)
        assert r.status_code == 200, r.text
        assert r.json()["released"] == [{"sku": sku, "qty": 2}]
        stock = await self.db.inventory.find_one({"_id": sku})
        assert stock is not None
        assert (stock["available"], stock["holds"]) == (10, [])

    async def complete_order(self, http: httpx.AsyncClient) -> None:
        await self.db.orders.insert_one({"_id": "o-ct-done", "userId": "u-ct", "status": "processed"})
        r = await self._task(
            http, {"orderId": "o-ct-done", "paymentId": "pay-o-ct-done"}, "order-saga:o-ct-done"
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed"
        stored = await self.db.orders.find_one({"_id": "o-ct-done"})
        assert stored is not None
        assert (stored["status"], stored["paymentId"]) == ("processed", "pay-o-ct-done")


def function_env(
    fn_name: str,
    app: AppSpec,
    db_name: str,
    mongodb_url: str,
    amqp_url: str,
    sink: MailSink,
    queue: str,
    s3: S3Store | None = None,
    thumbnails: str | None = None,
) -> dict[str, str]:
    """The environment compose gives the function (its `uses`), pointed at the real services."""
    fn = next(f for f in app.functions if f.name == fn_name)
    env = {"KFAAS_DRAIN_SECONDS": str(DRAIN_SECONDS), **fn.env}
    if "mongodb" in fn.uses:
        env |= {"MONGODB_URL": mongodb_url, "MONGODB_DATABASE": db_name}
    if "rabbitmq" in fn.uses:
        env["AMQP_URL"] = amqp_url
    if "smtp" in fn.uses:
        env |= {"SMTP_HOST": sink.host, "SMTP_PORT": str(sink.port), "MAIL_FROM": "orders@kfaas.test"}
    if fn_name == "place-order":
        env["ORDERS_QUEUE"] = queue
    if "s3" in fn.uses and s3 is not None:
        env |= s3.env | {"THUMBNAILS_BUCKET": thumbnails or "thumbnails"}
    return env


@pytest.mark.parametrize("fn_name", FUNCTIONS)
async def test_function_image_runs_as_knative_runs_it(
    fn_name: str,
    app: AppSpec,
    engine: Engine,
    containers: Callable[..., Container],
    database: tuple[str, Any],
    mongodb_url: str,
    amqp_url: str,
    mail_sink: MailSink,
    request: pytest.FixtureRequest,
) -> None:
    fn = next(f for f in app.functions if f.name == fn_name)
    # the object store only for the function that uses it (the others must not skip without one)
    s3: S3Store | None = request.getfixturevalue("s3_store") if "s3" in fn.uses else None
    thumbnails = await asyncio.to_thread(s3.bucket, "ct-th") if s3 is not None else None
    image = await asyncio.to_thread(engine.function_image, fn_name)
    db_name, db = database
    queue = f"orders-ct-{uuid.uuid4().hex[:8]}"
    env = function_env(fn_name, app, db_name, mongodb_url, amqp_url, mail_sink, queue, s3, thumbnails)
    container = containers(image, name=fn_name, port=free_port(), env=env, memory=fn.memory, cpu=fn.cpu)
    await asyncio.to_thread(container.wait_ready)

    # who it runs as, and with what
    code, ids = container.exec("python", "-c", "import os; print(os.getuid(), os.getgid())")
    assert (code, ids.split()) == (0, ["10001", "10001"]), ids
    code, status = container.exec("cat", "/proc/1/status")
    caps = dict(line.split(":\t", 1) for line in status.splitlines() if line.startswith("Cap"))
    assert caps["CapEff"].strip() == "0" * 16, caps
    code, _ = container.exec("touch", "/app/written")
    assert code != 0, "the root filesystem must be read-only"
    code, _ = container.exec("touch", "/tmp/written")
    assert code == 0, "/tmp must be writable (tmpfs)"
    limits = container.raw.attrs["HostConfig"]
    assert (limits["Memory"], limits["NanoCpus"]) == (memory_bytes(fn.memory), nano_cpus(fn.cpu))

    async with httpx.AsyncClient(base_url=container.url, timeout=15.0) as http:
        live = await http.get("/health/liveness")
        assert live.status_code == 200, live.text
        ready = await http.get("/health/readiness")
        assert ready.status_code == 200, ready.text
        case = Case(db, mail_sink, amqp_url, queue, s3, thumbnails)
        call: Callable[[httpx.AsyncClient], Awaitable[None]] = getattr(case, fn_name.replace("-", "_"))
        try:
            await call(http)
        except AssertionError as exc:
            container.fail(f"{fn_name}'s request failed: {exc}")

    code, seconds = await asyncio.to_thread(container.terminate, DRAIN_SECONDS + 10)
    if code != 0 or seconds > DRAIN_SECONDS + 2:
        container.fail(f"SIGTERM: exit code {code} after {seconds:.1f}s (drain bound {DRAIN_SECONDS}s)")
    print(f"{fn_name}: stopped on SIGTERM in {seconds:.2f}s, exit 0")


@pytest.mark.parametrize("fn_name", [*FUNCTIONS, "platform"])
async def test_image_holds_no_build_tools_or_secrets(fn_name: str, engine: Engine) -> None:
    if fn_name == "platform":
        image = await asyncio.to_thread(engine.platform_image)
    else:
        image = await asyncio.to_thread(engine.function_image, fn_name)
    report = await asyncio.to_thread(inspect_image, engine, image)
    assert report["user"] == "10001:10001"
    assert (report["uid"], report["gid"]) == (10001, 10001)
    assert report["tools"] == [], f"installers or compilers in {image}: {report['tools']}"
    assert report["modules"] == [], f"build-time packages in {image}: {report['modules']}"
    assert report["paths"] == [], f"build leftovers in {image}: {report['paths']}"
    assert report["suspicious"] == [], f"files that look like secrets in {image}: {report['suspicious']}"
    secret_env = [e for e in report["env"] if any(w in e for w in ("PASSWORD", "SECRET", "TOKEN", "KEY"))]
    assert secret_env == [], f"{image} bakes in {secret_env}"
    if engine.base_image:
        added = engine.image_size(image) - engine.image_size(engine.base_image)
        budget = BUDGET_OVER_BASE + OWN_REQUIREMENTS.get(fn_name, 0)
        assert added <= budget, f"{image} adds {added / MB:.0f} MB to its base"
