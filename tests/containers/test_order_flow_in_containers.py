"""The order flow through containers: the gateway, the dev broker and the functions each in their image,
hardened as Knative runs them, on the real RabbitMQ and MongoDB-wire server, emailing an SMTP sink here.

POST /users → create-user; POST /orders → place-order → the orders queue → the broker's queue source →
process-order → com.kfaas.order.processed (its reply) → notify-email (one email) and order-analytics (one
count); GET /orders/{id} → get-order shows it processed. Every container listens on 127.0.0.1 at a port of
its own, so the gateway and the broker are given each function's URL (``--url NAME=URL``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from dockertest import Container, Engine
from platformtest import Topology

from kfaas.dev.smtp import MailSink, free_port
from kfaas.spec import AppSpec

pytestmark = pytest.mark.integration

FLOW = ["create-user", "get-order", "place-order", "process-order", "notify-email", "order-analytics"]


@pytest.fixture
async def topology(tmp_path: Path, amqp_url: str) -> AsyncIterator[Topology]:
    topo = Topology(tmp_path)
    try:
        yield topo
    finally:
        await topo.delete(amqp_url)


async def poll(probe: Callable[[], Any], timeout: float, what: str, logs: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.3)
    pytest.fail(f"{what}: not within {timeout:g}s (last: {last!r})\n{logs()}", pytrace=False)


async def test_user_order_and_exactly_one_email_through_containers(
    app: AppSpec,
    engine: Engine,
    containers: Callable[..., Container],
    topology: Topology,
    database: tuple[str, Any],
    mongodb_url: str,
    amqp_url: str,
    mail_sink: MailSink,
) -> None:
    db_name, db = database
    images = await asyncio.gather(
        *(asyncio.to_thread(engine.function_image, name) for name in FLOW),
        asyncio.to_thread(engine.platform_image),
    )
    by_name = {fn.name: fn for fn in app.functions}
    running: dict[str, Container] = {}
    for name, image in zip(FLOW, images, strict=False):
        fn = by_name[name]
        env = {"MONGODB_URL": mongodb_url, "MONGODB_DATABASE": db_name}
        if "rabbitmq" in fn.uses:
            env |= {"AMQP_URL": amqp_url, "ORDERS_QUEUE": topology.queue}
        if "smtp" in fn.uses:
            env |= {
                "SMTP_HOST": mail_sink.host,
                "SMTP_PORT": str(mail_sink.port),
                "MAIL_FROM": "shop@kfaas.test",
            }
        running[name] = containers(image, name=name, port=free_port(), env=env, memory=fn.memory, cpu=fn.cpu)
    urls = [f"--url={name}={c.url}/" for name, c in running.items()]
    platform = images[-1]
    broker = containers(
        platform,
        name="broker",
        port=free_port(),
        env={"AMQP_URL": amqp_url, "KFAAS_NAMESPACE": topology.namespace},
        command=["broker", "--functions", "/app/functions", *urls],
        volumes=topology.mount(),
    )
    gateway = containers(
        platform,
        name="gateway",
        port=free_port(),
        env={},
        command=["gateway", "--functions", "/app/functions", *urls],
    )
    everyone = [*running.values(), broker, gateway]
    await asyncio.gather(*(asyncio.to_thread(c.wait_ready) for c in everyone))

    def logs() -> str:
        return "\n".join(f"--- {c.name} ---\n{c.logs(20)}" for c in everyone)

    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15.0) as api:
        r = await api.post("/users", json={"email": email, "name": "Ada"})
        assert r.status_code == 201, f"{r.status_code} {r.text}\n{logs()}"
        user_id = r.json()["id"]
        order = {"userId": user_id, "items": [{"sku": "book", "qty": 2, "price": 12.5}], "total": 25.0}
        r = await api.post("/orders", json=order)
        assert r.status_code == 202, f"{r.status_code} {r.text}\n{logs()}"
        order_id = r.json()["id"]

        async def processed() -> Any:
            answer = await api.get(f"/orders/{order_id}")
            return answer.status_code == 200 and answer.json()["status"] == "processed"

        await poll(processed, 60, f"order {order_id} processed", logs)

    mails = await asyncio.to_thread(mail_sink.wait_for, 1, 30.0, email)
    assert [m["Subject"] for m in mails] == [f"Your order {order_id} has been processed"]
    totals = await poll(lambda: db.order_totals_by_user.find_one({"_id": user_id}), 30, "user totals", logs)
    assert (totals["orders"], totals["totalCents"]) == (1, 2500)
    await asyncio.sleep(2.0)  # a wrongly repeated delivery would send its email within this
    assert len(mail_sink.messages) == 1, [m["Subject"] for m in mail_sink.messages]

    codes = await asyncio.gather(*(asyncio.to_thread(c.terminate, 30) for c in everyone))
    assert [code for code, _ in codes] == [0] * len(everyone), dict(
        zip([c.name for c in everyone], codes, strict=True)
    )
