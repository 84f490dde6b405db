"""The bucket source: S3 event records from a real versitygw (through RabbitMQ) become CloudEvents."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from brokertest import Harness, fn, free_port
from s3store import S3Store

from kfaas.broker._s3 import BadRecord, bucket_event, parse_notification
from kfaas.broker._sources import ERROR_REASON, BucketSourceRunner
from kfaas.spec import BucketSource, FunctionSpec

# AWS's documented example record (key URL-encoded, spaces as '+'), as AWS and MinIO send it
AWS_RECORD: dict[str, Any] = {
    "eventVersion": "2.1",
    "eventSource": "aws:s3",
    "awsRegion": "us-west-2",
    "eventTime": "1970-01-01T00:00:00.000Z",
    "eventName": "ObjectCreated:Put",
    "s3": {
        "s3SchemaVersion": "1.0",
        "bucket": {"name": "uploads", "arn": "arn:aws:s3:::uploads"},
        "object": {
            "key": "photos/Happy+Face%C3%BC.jpg",
            "size": 1024,
            "eTag": "d41d8cd98f00b204e9800998ecf8427e",
            "sequencer": "0055AED6DCD90281E5",
        },
    },
}


def _source(**fields: Any) -> BucketSource:
    return BucketSource.model_validate({"name": "up", "bucket": "uploads", **fields})


def test_an_aws_record_with_a_url_encoded_key() -> None:
    event = bucket_event(AWS_RECORD, 0, _source(keyEncoding="url"))
    assert event is not None
    assert event["type"] == "com.amazonaws.s3.ObjectCreated"
    assert event["subject"] == "photos/Happy Faceü.jpg"
    assert event["bucket"] == "uploads"
    data = json.loads(event.data)
    assert data["key"] == "photos/Happy Faceü.jpg"
    assert (data["size"], data["etag"], data["eventName"]) == (
        1024,
        AWS_RECORD["s3"]["object"]["eTag"],
        "ObjectCreated:Put",
    )
    # a key taken as it is: '+' stays a plus
    plain = bucket_event(AWS_RECORD, 0, _source())
    assert plain is not None
    assert plain["subject"] == "photos/Happy+Face%C3%BC.jpg"


def test_filters_and_the_same_record_twice() -> None:
    assert bucket_event(AWS_RECORD, 0, _source(bucket="other")) is None
    assert bucket_event(AWS_RECORD, 0, _source(prefix="docs/")) is None
    assert bucket_event(AWS_RECORD, 0, _source(suffix=".png")) is None
    assert bucket_event(AWS_RECORD, 0, _source(events=["removed"])) is None
    first = bucket_event(AWS_RECORD, 0, _source(prefix="photos/", suffix=".jpg"))
    again = bucket_event(json.loads(json.dumps(AWS_RECORD)), 0, _source(prefix="photos/", suffix=".jpg"))
    assert first is not None
    assert again is not None
    assert first["id"] == again["id"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "a JSON list"),
        (b'{"Records": []}', "no Records"),
    ],
)
def test_what_is_not_a_notification(body: bytes, reason: str) -> None:
    with pytest.raises(BadRecord, match=reason):
        parse_notification(body)


def test_a_record_without_a_key() -> None:
    record = json.loads(json.dumps(AWS_RECORD))
    del record["s3"]["object"]["key"]
    with pytest.raises(BadRecord, match=r"Records\[0\]\.s3\.object\.key"):
        bucket_event(record, 0, _source())


def test_the_test_event_is_recognised() -> None:
    note = parse_notification(b'{"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"}')
    assert note.test_event
    assert note.records == []


def test_a_lambda_function_gets_one_trigger_per_kind_of_change() -> None:
    spec = FunctionSpec.model_validate(
        {
            "name": "thumbs",
            "kind": "lambda",
            "handler": "app.handler",
            "runtime": "python3.12",
            "sources": [
                {"kind": "bucket", "name": "up", "bucket": "uploads", "events": ["created", "removed"]}
            ],
        }
    )
    filters = {t.name: t.filter for t in spec.triggers}
    assert filters == {
        "up": {"type": "com.amazonaws.s3.ObjectCreated", "bucket": "uploads"},
        "up-removed": {"type": "com.amazonaws.s3.ObjectRemoved", "bucket": "uploads"},
    }


async def _drop_queues(amqp_url: str, *names: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for name in names:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)


@pytest.mark.integration
async def test_store_records_become_events(harness: Harness, s3_events: S3Store) -> None:
    s3_store = s3_events
    s3 = s3_store.client()
    bucket, elsewhere = s3_store.bucket("up"), s3_store.bucket("other")
    sink = await harness.subscriber("sink")
    source = {
        "kind": "bucket",
        "name": "photos",
        "bucket": bucket,
        "prefix": "in/",
        "suffix": ".jpg",
        "exchange": s3_store.exchange,
    }
    spec = fn("sink", {"name": "t", "filter": {"type": "com.amazonaws.s3.ObjectCreated"}}, sources=[source])
    broker = await harness.broker(spec)
    queue = f"s.{harness.namespace}.sink-photos"
    try:
        key = "in/a b+c ü.jpg"
        put = s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 1000, ContentType="image/jpeg")
        s3.put_object(Bucket=bucket, Key="in/not-this.png", Body=b"1")  # suffix
        s3.put_object(Bucket=bucket, Key="out/not-this.jpg", Body=b"1")  # prefix
        s3.put_object(Bucket=elsewhere, Key="in/not-this.jpg", Body=b"1")  # bucket
        s3.delete_object(Bucket=bucket, Key=key)  # a removal: not among the source's events
        s3.put_object(Bucket=bucket, Key="in/last.jpg", Body=b"22")
        events = await sink.wait_for(2, timeout=30)
        await asyncio.sleep(1.0)  # nothing else may follow
        assert [e["subject"] for e in sink.events] == [key, "in/last.jpg"]
        first = events[0]
        assert first["type"] == "com.amazonaws.s3.ObjectCreated"
        assert first["source"] == f"/kfaas/buckets/{bucket}"
        assert first["bucket"] == bucket
        data = first.data if isinstance(first.data, dict) else json.loads(first.data)
        assert data["bucket"] == bucket
        assert data["key"] == key
        assert data["size"] == 1000
        assert data["etag"] == put["ETag"].strip('"')
        assert data["eventName"] == "ObjectCreated:Put"
        assert first["time"].startswith(data["time"][:10])
        connection = await aio_pika.connect(harness.amqp_url)
        async with connection:
            channel = await connection.channel()
            left = await channel.declare_queue(queue, passive=True)
            assert left.declaration_result.message_count == 0  # every record acked, the filtered ones too
    finally:
        await broker.stop()
        await _drop_queues(harness.amqp_url, queue, f"{queue}.dlq")


@pytest.mark.integration
async def test_unparsable_messages_are_dead_lettered_with_the_reason(harness: Harness) -> None:
    # an exchange of its own: the garbage reaches no other source
    exchange = f"test.s3-events.{uuid.uuid4().hex[:8]}"
    sink = await harness.subscriber("sink")
    source = {"kind": "bucket", "name": "photos", "bucket": "uploads", "exchange": exchange}
    broker = await harness.broker(fn("sink", {"name": "t"}, sources=[source]))
    runner = next(r for r in broker._sources if isinstance(r, BucketSourceRunner))
    connection = await aio_pika.connect(harness.amqp_url)
    try:
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            x = await channel.get_exchange(exchange)
            no_key = json.loads(json.dumps(AWS_RECORD))
            no_key["s3"]["bucket"]["name"] = "uploads"
            del no_key["s3"]["object"]["key"]
            good = json.loads(json.dumps(AWS_RECORD))
            for body in (
                b"\xff not json",
                json.dumps({"Event": "s3:TestEvent", "Service": "Amazon S3"}).encode(),
                json.dumps({"Records": [no_key, good]}).encode(),
            ):
                await x.publish(aio_pika.Message(body, content_type="application/json"), routing_key="")
            await sink.wait_for(1, timeout=20)  # the good record of the mixed message
            dead: list[aio_pika.abc.AbstractIncomingMessage] = []
            dlq = await channel.declare_queue(runner.dead_letter_queue, passive=True)
            for _ in range(100):
                message = await dlq.get(no_ack=False, fail=False)
                if message is not None:
                    dead.append(message)
                    continue
                if len(dead) >= 2:
                    break
                await asyncio.sleep(0.1)
            reasons = sorted(str(m.headers[ERROR_REASON]) for m in dead)
            assert len(dead) == 2, reasons  # the test event is not a dead letter
            assert reasons[0].startswith("Records[0].s3.object.key is missing")
            assert reasons[1].startswith("not JSON")
            assert dead[0].body == b"\xff not json" or dead[1].body == b"\xff not json"  # kept as it came
            assert len(sink.events) == 1
            assert sink.events[0]["subject"] == "photos/Happy+Face%C3%BC.jpg"
    finally:
        await broker.stop()
        await _drop_queues(harness.amqp_url, runner.queue_name, runner.dead_letter_queue)
        cleanup = await aio_pika.connect(harness.amqp_url)
        async with cleanup:
            with contextlib.suppress(Exception):
                await (await cleanup.channel()).exchange_delete(exchange)


def _functions_folder(root: Path, bucket: str, exchange: str) -> Path:
    folder = root / "functions" / "thumbs"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text("def handle(event):\n    return None\n")
    (folder / "function.yaml").write_text(
        json.dumps(
            {
                "kind": "cloudevent",
                "sources": [{"kind": "bucket", "name": "up", "bucket": bucket, "exchange": exchange}],
                "triggers": [{"name": "t", "filter": {"type": "com.amazonaws.s3.ObjectCreated"}}],
            }
        )
    )
    return root / "functions"


def _kfaas(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kfaas", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_bucket_source_command_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    functions = _functions_folder(tmp_path, "uploads", "kfaas.s3-events")
    env = {"AMQP_URL": "amqp://guest:guest@127.0.0.1:1/", "K_SINK": "http://127.0.0.1:1/"}
    wrong = _kfaas("bucket-source", "--functions", str(functions), "--source", "thumbs/nope", env=env)
    out, _ = wrong.communicate(timeout=60)
    assert wrong.returncode == 2
    assert b"'thumbs/nope' is no bucket source (known: thumbs/up)" in out
    no_sink = _kfaas(
        "bucket-source", "--functions", str(functions), "--source", "thumbs/up", env={**env, "K_SINK": ""}
    )
    out, _ = no_sink.communicate(timeout=60)
    assert no_sink.returncode == 2
    assert b"no sink" in out


@pytest.mark.integration
async def test_bucket_source_command_posts_events_to_its_sink(
    harness: Harness, s3_events: S3Store, tmp_path: Path
) -> None:
    s3_store = s3_events
    bucket = s3_store.bucket("cmd")
    sink = await harness.subscriber("sink")
    functions = _functions_folder(tmp_path, bucket, s3_store.exchange)
    port = free_port()
    env = {
        "AMQP_URL": harness.amqp_url,
        "K_SINK": sink.url,
        "KFAAS_NAMESPACE": harness.namespace,
        "PORT": str(port),
        "HOST": "127.0.0.1",
    }
    process = await asyncio.to_thread(
        _kfaas, "bucket-source", "--functions", str(functions), "--source", "thumbs/up", env=env
    )
    queue = f"s.{harness.namespace}.thumbs-up"
    try:
        connection = await aio_pika.connect(harness.amqp_url)
        async with connection:  # wait until its queue is bound and consumed
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                    declared = await channel.declare_queue(queue, passive=True)
                    if declared.declaration_result.consumer_count:
                        break
                assert process.poll() is None, process.stdout.read() if process.stdout else b""
                assert asyncio.get_running_loop().time() < deadline, "the source did not start"
                await asyncio.sleep(0.2)
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            deadline = asyncio.get_running_loop().time() + 30
            while True:  # ready once consuming (the probe of its pod)
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{port}/health/readiness")).status_code == 200:
                        break
                assert asyncio.get_running_loop().time() < deadline, "never ready"
                await asyncio.sleep(0.2)
            assert (await client.get(f"http://127.0.0.1:{port}/health/liveness")).status_code == 200
        s3 = s3_store.client()
        await asyncio.to_thread(s3.put_object, Bucket=bucket, Key="k/one.jpg", Body=b"1")
        events = await sink.wait_for(1, timeout=30)
        assert events[0]["type"] == "com.amazonaws.s3.ObjectCreated"
        assert events[0]["subject"] == "k/one.jpg"
    finally:
        process.terminate()
        await asyncio.to_thread(process.communicate, timeout=30)
        assert process.returncode == 0
        await _drop_queues(harness.amqp_url, queue, f"{queue}.dlq")
