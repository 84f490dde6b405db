"""``kfaas broker`` as compose runs it, and the ingress when RabbitMQ is gone."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from brokertest import Harness, fn, free_port
from cloudevents.http import CloudEvent

pytestmark = pytest.mark.integration

BINARY = {"ce-specversion": "1.0", "ce-id": "c1", "ce-source": "/t", "ce-type": "com.example.cli"}


async def test_ingress_answers_503_when_rabbitmq_is_gone(harness: Harness) -> None:
    await harness.subscriber("sink")
    broker = await harness.broker(fn("sink", {"name": "t"}))
    base = await harness.serve(broker)
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.post("/default", headers=BINARY)).status_code == 202
        await broker.connection.close()
        r = await client.post("/default", headers=BINARY)
        assert r.status_code == 503
        assert "RabbitMQ" in r.json()["error"]
        assert (await client.get("/health/readiness")).status_code == 503
        assert (await client.get("/health/liveness")).status_code == 200


async def test_kfaas_broker_command_serves_the_descriptions(harness: Harness, tmp_path: Path) -> None:
    sub = await harness.subscriber("sink")
    folder = tmp_path / "functions" / "sink"
    folder.mkdir(parents=True)
    (folder / "function.yaml").write_text("kind: cloudevent\ntriggers:\n  - name: cli\n")
    (folder / "main.py").write_text("def handle(event):\n    return None\n")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kfaas",
        "broker",
        "--functions",
        str(tmp_path / "functions"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--amqp-url",
        harness.amqp_url,
        "--namespace",
        harness.namespace,
        "--url-template",
        f"http://127.0.0.1:{sub.port}/{{name}}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health/readiness")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            r = await client.post("/default", headers=BINARY, content=b"")
            assert r.status_code == 202
        (got,) = await sub.wait_for(1)
        assert got["id"] == "c1"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        connection = await aio_pika.connect(harness.amqp_url)
        async with connection:
            channel = await connection.channel()
            for queue in (f"t.{harness.namespace}.sink-cli", f"t.{harness.namespace}.sink-cli.dlq"):
                await channel.queue_delete(queue)
            await channel.exchange_delete(f"b.{harness.namespace}.default")


async def test_broker_recovers_when_rabbitmq_closes_its_connection(
    harness: Harness, rabbitmq_ctl: Any
) -> None:
    """A server-side close (as on a RabbitMQ restart) of only this broker's connection: it reconnects."""
    sub = await harness.subscriber("sink")
    broker = await harness.broker(fn("sink", {"name": "t"}))
    out = await rabbitmq_ctl.run("list_connections", "-q", "pid", "client_properties")
    name = f"kfaas-broker-{harness.namespace}"
    pids = [line.split("\t")[0] for line in out.splitlines() if name in line]
    assert len(pids) == 1, out
    await rabbitmq_ctl.run("close_connection", pids[0], "test")
    for _ in range(200):  # the robust connection is back within its reconnect interval (5 s)
        if broker.ready:
            with contextlib.suppress(Exception):
                await broker.publish("default", CloudEvent({"type": "x", "source": "/t", "id": "after"}))
                break
        await asyncio.sleep(0.05)
    (got,) = await sub.wait_for(1, timeout=15)
    assert got["id"] == "after"


@pytest.mark.parametrize(
    ("item", "message"),
    [("nope=http://127.0.0.1:1/", "--url names no function of"), ("broken", "--url expects NAME=URL")],
)
def test_a_function_url_must_name_a_function(tmp_path: Path, item: str, message: str) -> None:
    import subprocess

    folder = tmp_path / "functions" / "sink"
    folder.mkdir(parents=True)
    (folder / "function.yaml").write_text("kind: cloudevent\ntriggers:\n  - name: cli\n")
    (folder / "main.py").write_text("def handle(event):\n    return None\n")
    argv = [sys.executable, "-m", "kfaas", "broker", "--functions", str(tmp_path / "functions")]
    argv += ["--amqp-url", "amqp://guest@127.0.0.1:1/", "--url", item]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
