"""The stream source against a real RabbitMQ stream and a real FerretDB/MongoDB: order per key, checkpoints
that survive a SIGKILL, replay by offset and by time, and the on-failure destination of a poison record."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from brokertest import free_port, wait_port
from cloudevents.http import CloudEvent
from pymongo import AsyncMongoClient

from kfaas.base.server import serve_embedded
from kfaas.broker._streams import Checkpoints, StreamConsumer, append, dead_letter_queue, parse_from
from kfaas.broker.deadletters import DeadLetterQueue
from kfaas.broker.dlq import peek
from kfaas.events import parse_events
from kfaas.spec import AppSpec, FunctionSpec

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

Answer = Callable[[list[Any]], int]


class Function:
    """A function stand-in on a real port: records every batch (the events of one POST) and answers."""

    def __init__(self, answer: Answer = lambda _batch: 200) -> None:
        self.answer = answer
        self.port = free_port()
        self.batches: list[list[Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def events(self) -> list[Any]:
        return [e for b in self.batches for e in b]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        batch = parse_events(headers, bytes(body))
        status = self.answer(batch)
        if 200 <= status < 300:
            self.batches.append(batch)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}" if status < 300 else b'{"error": "refused"}'})

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(self.events)} record(s) delivered within {timeout}s, expected {count}")
            await asyncio.sleep(0.05)
        return self.events


def spec(stream: str, **source: Any) -> tuple[AppSpec, FunctionSpec]:
    fn = FunctionSpec.model_validate(
        {
            "name": "audit",
            "kind": "cloudevent",
            "timeout": 5,
            "sources": [
                {"kind": "stream", "name": "log", "stream": stream, "backoffDelay": "PT0.05S", **source}
            ],
        }
    )
    return AppSpec(functions=[fn], root=Path("functions")), fn


def record(key: str, seq: int, **extra: Any) -> CloudEvent:
    return CloudEvent(
        {"type": "com.example.order", "source": "/tests/streams", "partitionkey": key, **extra},
        {"key": key, "seq": seq},
    )


class Env:
    def __init__(self, amqp_url: str, db: Any, namespace: str) -> None:
        self.amqp_url = amqp_url
        self.db = db
        self.namespace = namespace
        self.stream = f"s-{uuid.uuid4().hex[:10]}"
        self.tasks: list[asyncio.Task[Any]] = []
        self.connection: aio_pika.abc.AbstractConnection | None = None

    async def function(self, answer: Answer = lambda _b: 200) -> Function:
        fn = Function(answer)
        self.tasks.append(asyncio.create_task(serve_embedded(fn, "127.0.0.1", fn.port)))
        await wait_port(fn.port)
        return fn

    def consumer(self, target: Function, **source: Any) -> StreamConsumer:
        app, fn = spec(self.stream, **source)
        consumer, fn, src = app.streams[0]
        return StreamConsumer(
            consumer,
            fn,
            src,
            amqp_url=self.amqp_url,
            database=self.db,
            url=target.url,
            namespace=self.namespace,
        )

    async def start(self, consumer: StreamConsumer) -> asyncio.Task[Any]:
        task = asyncio.create_task(consumer.run())
        self.tasks.append(task)
        await asyncio.wait_for(consumer.connected.wait(), 30)
        return task

    async def channel(self) -> aio_pika.abc.AbstractChannel:
        if self.connection is None:
            self.connection = await aio_pika.connect(self.amqp_url)
        channel = await self.connection.channel(publisher_confirms=True)
        await channel.declare_queue(
            self.stream, durable=True, arguments={"x-queue-type": "stream", "x-max-age": "604800s"}
        )
        return channel

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        connection = self.connection or await aio_pika.connect(self.amqp_url)
        async with connection:
            for name in (self.stream, dead_letter_queue(self.namespace, "audit-log")):
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)


@pytest.fixture
async def env(amqp_url: str, mongodb_url: str) -> AsyncIterator[Env]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    name = f"kfaas_test_{uuid.uuid4().hex[:12]}"
    e = Env(amqp_url, client[name], f"test-{uuid.uuid4().hex[:8]}")
    try:
        yield e
    finally:
        await e.close()
        await client.drop_database(name)
        await client.close()


def per_key(events: list[Any]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for event in events:
        seen.setdefault(event["partitionkey"], []).append(event.data["seq"])
    return seen


async def test_order_per_key_under_concurrent_producers(env: Env) -> None:
    target = await env.function()
    await env.start(env.consumer(target, batchSize=25, batchWindow="PT0.05S"))

    async def producer(key: str, count: int) -> None:
        channel = await env.channel()  # a channel (a publisher) of its own for each key
        for seq in range(count):
            await append(channel, env.stream, [record(key, seq)])

    keys = [f"order-{i}" for i in range(6)]
    await asyncio.gather(*(producer(key, 40) for key in keys))
    events = await target.wait_for(240)
    assert per_key(events) == {key: list(range(40)) for key in keys}
    offsets = [int(e["streamoffset"]) for e in events]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == 240
    interleaved = [e["partitionkey"] for e in events[:60]]
    assert len(set(interleaved)) > 1, "the producers did not run concurrently: the test would prove nothing"
    assert max(len(b) for b in target.batches) <= 25


def app_folder(tmp_path: Path, stream: str, **source: Any) -> Path:
    """A functions folder with the function ``audit`` and its stream source ``log`` (consumer audit-log)."""
    folder = tmp_path / "functions" / "audit"
    folder.mkdir(parents=True)
    description = {
        "kind": "cloudevent",
        "timeout": 5,
        "sources": [{"kind": "stream", "name": "log", "stream": stream, "batchSize": 10, **source}],
    }
    (folder / "function.yaml").write_text(json.dumps(description))
    (folder / "main.py").write_text("def handle(event):\n    pass\n")
    return folder.parent


def kfaas(env: Env, mongodb_url: str, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kfaas", args[0], "--functions", str(folder), "--namespace", env.namespace]
    if args[0] == "stream":
        argv += ["--mongodb-url", mongodb_url, "--database", env.db.name]
    environ = {**os.environ, "AMQP_URL": env.amqp_url}
    return subprocess.run(
        [*argv, *args[1:]], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


async def test_sigkilled_consumer_resumes_after_its_checkpoint(
    env: Env, mongodb_url: str, tmp_path: Path
) -> None:
    app_folder(tmp_path, env.stream)
    gate = asyncio.Event()
    gate.set()

    def answer(batch: list[Any]) -> int:
        return 200 if gate.is_set() else 503

    target = await env.function(answer)
    channel = await env.channel()
    await append(channel, env.stream, [record("k", seq) for seq in range(50)])
    process_env = {
        **os.environ,
        "MONGODB_DATABASE": env.db.name,
        "MONGODB_URL": mongodb_url,
        "AMQP_URL": env.amqp_url,
        "KFAAS_NAMESPACE": env.namespace,
        "LOG_LEVEL": "WARNING",
    }

    log = tmp_path / "consumer.log"

    def start() -> subprocess.Popen[bytes]:
        port = free_port()
        args = [sys.executable, "-m", "kfaas", "stream", "--functions", str(tmp_path / "functions")]
        args += ["run", "audit-log", "--url", target.url, "--port", str(port), "--host", "127.0.0.1"]
        with log.open("ab") as out:
            return subprocess.Popen(args, env=process_env, stderr=out)

    first = start()
    try:
        await target.wait_for(50)
        checkpoints = Checkpoints.of(env.db)
        deadline = time.monotonic() + 30
        while (pos := await checkpoints.latest(f"{env.namespace}/audit-log")) is None or pos.offset != 49:
            assert time.monotonic() < deadline, f"no checkpoint at 49 within 30s: {pos}"
            await asyncio.sleep(0.05)
        gate.clear()  # the next batch fails: the consumer holds it unacknowledged, without a checkpoint
        await append(channel, env.stream, [record("k", seq) for seq in range(50, 60)])
        await asyncio.sleep(1.0)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert [e.data["seq"] for e in target.events] == list(range(50))
    await append(channel, env.stream, [record("k", seq) for seq in range(60, 70)])
    gate.set()
    second = start()
    try:
        events = await target.wait_for(70)
        await asyncio.sleep(0.5)  # anything delivered twice would arrive now
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()
    assert [e.data["seq"] for e in target.events] == list(range(70))  # nothing skipped, nothing twice
    assert len(events) == 70


async def test_replay_from_an_offset_and_from_a_time(env: Env) -> None:
    target = await env.function()
    consumer = env.consumer(target, batchSize=10)
    channel = await env.channel()
    await append(channel, env.stream, [record("k", seq) for seq in range(20)])
    await asyncio.sleep(1.5)  # the stream keeps times in seconds: a clear second between the two halves
    middle = datetime.now(UTC)
    await asyncio.sleep(1.5)
    await append(channel, env.stream, [record("k", seq) for seq in range(20, 30)])
    await env.start(consumer)
    await target.wait_for(30)
    checkpoints = Checkpoints.of(env.db)

    await checkpoints.replay(consumer.id, 15, None)
    events = await target.wait_for(45)
    assert [e.data["seq"] for e in events[30:]] == list(range(15, 30))

    offset, since = parse_from(middle.isoformat())
    assert offset is None
    assert since == middle
    await checkpoints.replay(consumer.id, None, since)
    events = await target.wait_for(55)
    assert [e.data["seq"] for e in events[45:]] == list(range(20, 30))
    await asyncio.sleep(0.5)
    assert len(target.events) == 55
    assert parse_from("7") == (7, None)
    with pytest.raises(ValueError, match="neither an offset"):
        parse_from("yesterday")


async def test_poison_record_goes_to_the_on_failure_destination(env: Env) -> None:
    def answer(batch: list[Any]) -> int:
        return 500 if any(e.data["seq"] == 13 for e in batch) else 200

    target = await env.function(answer)
    consumer = env.consumer(
        target, batchSize=8, maximumRetryAttempts=2, bisectBatchOnFunctionError=True, onFailure="destination"
    )
    channel = await env.channel()
    await append(channel, env.stream, [record("k", seq) for seq in range(24)])
    await env.start(consumer)
    await target.wait_for(23)
    deadline = time.monotonic() + 30
    while consumer.position is None or consumer.position.offset != 23:
        assert time.monotonic() < deadline, "the stream did not move past the poison record"
        await asyncio.sleep(0.05)
    assert [e.data["seq"] for e in target.events] == [s for s in range(24) if s != 13]
    letters = await peek(env.amqp_url, DeadLetterQueue("audit-log", env.namespace))
    assert len(letters) == 1
    (letter,) = letters
    assert json.loads(letter.body)["seq"] == 13
    assert letter.code == "500"
    assert "refused" in letter.reason
    assert letter.attributes["streamoffset"] == "13"


async def test_on_failure_stop_halts_at_the_failing_batch(env: Env) -> None:
    from kfaas.broker._streams import StreamStopped

    target = await env.function(lambda batch: 500 if any(e.data["seq"] >= 5 for e in batch) else 200)
    consumer = env.consumer(target, batchSize=5, maximumRetryAttempts=1, onFailure="stop")
    channel = await env.channel()
    await append(channel, env.stream, [record("k", seq) for seq in range(10)])
    task = await env.start(consumer)
    with pytest.raises(StreamStopped, match="records 5-9 failed 2 attempt"):
        await asyncio.wait_for(task, 30)
    assert [e.data["seq"] for e in target.events] == list(range(5))
    position = await Checkpoints.of(env.db).latest(consumer.id)
    assert position is not None
    assert position.offset == 4


async def test_status_dead_letters_and_refusals_on_the_command_line(
    env: Env, mongodb_url: str, tmp_path: Path
) -> None:
    folder = app_folder(tmp_path, env.stream, maximumRetryAttempts=0, backoffDelay="PT0.05S")
    target = await env.function(lambda batch: 500 if any(e.data["seq"] == 3 for e in batch) else 200)
    consumer = env.consumer(target, batchSize=1, maximumRetryAttempts=0)
    channel = await env.channel()
    await append(channel, env.stream, [record("k", seq) for seq in range(6)])
    await env.start(consumer)
    await target.wait_for(5)
    deadline = time.monotonic() + 30
    while consumer.position is None or consumer.position.offset != 5:
        assert time.monotonic() < deadline, "the stream did not move past the poison record"
        await asyncio.sleep(0.05)

    status = await asyncio.to_thread(kfaas, env, mongodb_url, folder, "stream", "status", "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert (row["source"], row["checkpoint"], row["last"], row["lag"], row["failed"]) == (
        "audit-log",
        5,
        5,
        0,
        1,
    )
    text = await asyncio.to_thread(kfaas, env, mongodb_url, folder, "stream", "status")
    assert "audit-log: stream" in text.stdout
    assert "lag 0" in text.stdout

    listed = await asyncio.to_thread(kfaas, env, mongodb_url, folder, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (letters,) = [r for r in json.loads(listed.stdout) if r["trigger"] == "audit-log"]
    assert letters["count"] == 1
    assert letters["events"][0]["code"] == "500"

    bad = await asyncio.to_thread(
        kfaas, env, mongodb_url, folder, "stream", "replay", "audit-log", "--from", "soon"
    )
    assert bad.returncode == 2
    assert "neither an offset" in bad.stderr
    unknown = await asyncio.to_thread(
        kfaas, env, mongodb_url, folder, "stream", "replay", "nope", "--from", "0"
    )
    assert unknown.returncode == 2
    assert "no stream source 'nope' (known: audit-log)" in unknown.stderr
    replay = await asyncio.to_thread(
        kfaas, env, mongodb_url, folder, "stream", "replay", "audit-log", "--from", "4"
    )
    assert replay.returncode == 0, replay.stderr
    events = await target.wait_for(7)
    assert [e.data["seq"] for e in events[5:]] == [4, 5]


async def test_a_second_consumer_of_a_source_is_refused(env: Env) -> None:
    from kfaas.broker import BrokerConflict

    target = await env.function()
    await env.start(env.consumer(target))
    with pytest.raises(BrokerConflict, match="consumed by another kfaas stream consumer"):
        await asyncio.wait_for(env.consumer(target).run(), 30)


async def test_a_stream_declared_with_another_retention_is_used_as_it_is(env: Env) -> None:
    target = await env.function()
    channel = await env.channel()  # declared with x-max-age 604800s; the source asks for one day
    await append(channel, env.stream, [record("k", seq) for seq in range(3)])
    await env.start(env.consumer(target, maxAge="P1D"))
    events = await target.wait_for(3)
    assert [e.data["seq"] for e in events] == [0, 1, 2]


async def test_the_consumer_outlives_a_rabbitmq_outage(env: Env, rabbitmq_ctl: Any) -> None:
    """RabbitMQ stopped under a connected consumer (its channels then raise ChannelInvalidStateError, which is
    no AMQPError): it reconnects from its checkpoint, and the records appended after the outage arrive once."""
    target = await env.function()
    consumer = env.consumer(target)
    task = await env.start(consumer)
    channel = await env.channel()
    await append(channel, env.stream, [record("k", seq) for seq in range(10)])
    await target.wait_for(10)
    if env.connection is not None:  # the test's own connection goes with the outage
        await env.connection.close()
        env.connection = None
    await rabbitmq_ctl.stop_app()
    await asyncio.sleep(2.0)
    assert not task.done(), task.exception() if task.done() else None
    await rabbitmq_ctl.start_app()
    channel = await env.channel()
    await append(channel, env.stream, [record("k", seq) for seq in range(10, 20)])
    events = await target.wait_for(20, timeout=90)
    await asyncio.sleep(0.5)  # anything delivered twice would arrive now
    assert not task.done(), task.exception() if task.done() else None
    assert [e.data["seq"] for e in events] == list(range(20))
