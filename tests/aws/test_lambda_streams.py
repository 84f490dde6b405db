"""A Python Lambda handler fed by a stream source: each record arrives as a Kinesis event, in order, through a
real ``kfaas serve`` process, from a stream consumer reading a real RabbitMQ stream."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from cloudevents.http import CloudEvent
from lambdatest import free_port
from pymongo import AsyncMongoClient

from kfaas.broker import StreamConsumer
from kfaas.broker._streams import append
from kfaas.spec import load_app

pytestmark = pytest.mark.integration

HANDLER = """
import json, os

def handler(event, context):
    with open(os.environ["EVENTS_FILE"], "a") as out:
        out.write(json.dumps(event) + "\\n")
"""


def _serve(environ: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "kfaas", "serve"], env=environ, stdout=log, stderr=log)


async def test_stream_records_reach_a_lambda_handler_as_kinesis_events(
    tmp_path: Path, amqp_url: str, mongodb_url: str
) -> None:
    stream = f"s-{uuid.uuid4().hex[:10]}"
    folder = tmp_path / "functions" / "lambda-kin"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(HANDLER)
    description = {
        "kind": "lambda",
        "handler": "main.handler",
        "runtime": "python3.12",
        "timeout": 10,
        "sources": [{"kind": "stream", "name": "log", "stream": stream, "batchSize": 10}],
    }
    (folder / "function.yaml").write_text(json.dumps(description))
    events_file = tmp_path / "events.jsonl"
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KFAAS_", "FUNCTION_", "MONGODB_"))}
    environ.update(
        HOST="127.0.0.1",
        PORT=str(port),
        FUNCTION_SOURCE=str(folder / "main.py"),
        FUNCTION_SIGNATURE_TYPE="lambda",
        KFAAS_FUNCTION="lambda-kin",
        EVENTS_FILE=str(events_file),
    )
    log = (tmp_path / "serve.log").open("wb")
    server = _serve(environ, log)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    database = client[f"kfaas_test_{uuid.uuid4().hex[:12]}"]
    task: asyncio.Task[None] | None = None
    connection = await aio_pika.connect(amqp_url)
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"http://127.0.0.1:{port}/health/readiness")).status_code == 200:
                        break
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "kfaas serve did not become ready"
                await asyncio.sleep(0.1)
        consumer_spec, fn, source = load_app(tmp_path / "functions").streams[0]
        consumer = StreamConsumer(
            consumer_spec,
            fn,
            source,
            amqp_url=amqp_url,
            database=database,
            url=f"http://127.0.0.1:{port}/",
            namespace=f"test-{uuid.uuid4().hex[:8]}",
        )
        task = asyncio.create_task(consumer.run())
        await asyncio.wait_for(consumer.connected.wait(), 30)
        channel = await connection.channel(publisher_confirms=True)
        events = [
            CloudEvent(
                {"type": "com.example.order", "source": "/tests", "partitionkey": f"o-{i % 2}"}, {"seq": i}
            )
            for i in range(4)
        ]
        await append(channel, stream, events)
        deadline = time.monotonic() + 30
        while not events_file.exists() or len(events_file.read_text().splitlines()) < 4:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            await asyncio.sleep(0.1)
        received = [json.loads(line) for line in events_file.read_text().splitlines()]
        records = [event["Records"] for event in received]
        assert all(len(r) == 1 for r in records)
        kinesis = [r[0]["kinesis"] for r in records]
        assert [json.loads(base64.b64decode(k["data"])) for k in kinesis] == [{"seq": i} for i in range(4)]
        assert [k["partitionKey"] for k in kinesis] == ["o-0", "o-1", "o-0", "o-1"]
        assert [k["sequenceNumber"] for k in kinesis] == [f"{i:020d}" for i in range(4)]
        assert records[0][0]["eventSourceARN"].endswith(f":stream/{stream}")
        assert records[0][0]["eventSource"] == "aws:kinesis"
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(Exception):
            deleting = await connection.channel()
            await deleting.queue_delete(stream)
        await connection.close()
        await client.drop_database(database.name)
        await client.close()
        server.send_signal(signal.SIGTERM)
        server.wait(20)
        log.close()
