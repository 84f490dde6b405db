"""The platform image (dev broker, API gateway, dead-letter sink), built from Dockerfile.base and run as
compose and Knative run it: hardened, on the real RabbitMQ, stopping with exit 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aio_pika
import httpx
import pytest
from dockertest import Container, Engine
from platformtest import Topology

from kfaas.dev.smtp import free_port

pytestmark = pytest.mark.integration

EVENT = {
    "ce-specversion": "1.0",
    "ce-id": "ct-platform-1",
    "ce-source": "/tests/containers",
    "ce-type": "com.example.unrouted",
    "content-type": "application/json",
}


@pytest.fixture
async def topology(tmp_path: Path, amqp_url: str) -> AsyncIterator[Topology]:
    topo = Topology(tmp_path)
    try:
        yield topo
    finally:
        await topo.delete(amqp_url)


async def stop(container: Container, bound: float) -> None:
    code, seconds = await asyncio.to_thread(container.terminate, bound + 10)
    if code != 0 or seconds > bound + 2:
        container.fail(f"SIGTERM: exit code {code} after {seconds:.1f}s (bound {bound:g}s)")


async def test_broker_serves_its_ingress_on_rabbitmq(
    engine: Engine, containers: Callable[..., Container], topology: Topology, amqp_url: str
) -> None:
    image = await asyncio.to_thread(engine.platform_image)
    broker = containers(
        image,
        name="broker",
        port=free_port(),
        env={"AMQP_URL": amqp_url, "KFAAS_NAMESPACE": topology.namespace},
        volumes=topology.mount(),
    )
    await asyncio.to_thread(broker.wait_ready)
    async with httpx.AsyncClient(base_url=broker.url, timeout=10.0) as http:
        assert (await http.get("/health/liveness")).status_code == 200
        r = await http.post("/default", headers=EVENT, content=b'{"n": 1}')
        assert r.status_code == 202, r.text
        r = await http.post("/default", headers={"content-type": "application/json"}, content=b"{}")
        assert r.status_code == 400
        assert r.json()["error"], r.text
    assert f"ingress on http://127.0.0.1:{broker.port}/<broker> for default" in broker.logs()
    await stop(broker, 20)


async def test_gateway_routes_and_answers_json_for_unknown_paths(
    engine: Engine, containers: Callable[..., Container]
) -> None:
    image = await asyncio.to_thread(engine.platform_image)
    gateway = containers(image, name="gateway", port=free_port(), env={}, command=["gateway"])
    await asyncio.to_thread(gateway.wait_ready)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as http:
        r = await http.get("/no/such/route")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/json")
        # a route whose function is not running: the gateway says so instead of hanging
        r = await http.get("/users/0123456789abcdef01234567")
        assert r.status_code in (502, 503, 504), r.text
    logs = gateway.logs()
    assert "route GET,HEAD /users/{id} -> get-user" in logs, logs
    await stop(gateway, 10)


async def test_dead_letter_sink_keeps_dead_letters_in_rabbitmq(
    engine: Engine, containers: Callable[..., Container], topology: Topology, amqp_url: str
) -> None:
    image = await asyncio.to_thread(engine.platform_image)
    sink = containers(
        image,
        name="dead-letters",
        port=free_port(),
        env={"AMQP_URL": amqp_url, "KFAAS_NAMESPACE": topology.namespace},
        command=["dead-letters"],
        volumes=topology.mount(),
    )
    await asyncio.to_thread(sink.wait_ready)
    headers = {**EVENT, "ce-knativeerrordest": "http://notify-email/", "ce-knativeerrorcode": "500"}
    async with httpx.AsyncClient(base_url=sink.url, timeout=10.0) as http:
        r = await http.post("/notify-email-processed", headers=headers, content=b'{"orderId": "o-1"}')
        assert r.status_code == 202, r.text
    queue_name = f"t.{topology.namespace}.notify-email-processed.dlq"
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        message = await queue.get(timeout=10, fail=True)
        assert message is not None
        await message.ack()
        assert json.loads(message.body) == {"orderId": "o-1"}
        assert message.headers["ce-knativeerrorcode"] == "500"
    await stop(sink, 20)
