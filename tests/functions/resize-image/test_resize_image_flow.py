"""resize-image end to end on real servers: versitygw → RabbitMQ → the dev broker's bucket source → a
``kfaas serve`` process of the function → thumbnails back in the store; its claims in FerretDB."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from imagefiles import jpeg, png_bomb, png_rgba, truncated_jpeg
from PIL import Image
from s3store import S3Store

from kfaas.broker import DevBroker
from kfaas.spec import AppSpec, load_function

pytestmark = pytest.mark.integration

FOLDER = Path(__file__).resolve().parents[3] / "functions" / "resize-image"
DLQ_WAIT = 60.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Flow:
    store: S3Store
    amqp_url: str
    uploads: str
    thumbnails: str
    namespace: str
    log: Path
    process: subprocess.Popen[bytes]
    broker: DevBroker

    @property
    def dead_letter_queue(self) -> str:
        return f"t.{self.namespace}.resize-image-uploaded.dlq"

    def upload(self, key: str, body: bytes, content_type: str = "image/jpeg") -> str:
        answer = self.store.client().put_object(
            Bucket=self.uploads, Key=key, Body=body, ContentType=content_type
        )
        return str(answer["ETag"]).strip('"')

    def thumbnail(self, key: str) -> tuple[Image.Image, dict[str, Any]] | None:
        from botocore.exceptions import ClientError

        try:
            answer = self.store.client().get_object(Bucket=self.thumbnails, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        img = Image.open(io.BytesIO(answer["Body"].read()))
        img.load()
        return img, answer

    async def wait_thumbnail(self, key: str, timeout: float = 60.0) -> tuple[Image.Image, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            got = await asyncio.to_thread(self.thumbnail, key)
            if got is not None:
                return got
            assert time.monotonic() < deadline, (
                f"no thumbnail {key} within {timeout}s; log:\n{self.log.read_text()[-3000:]}"
            )
            await asyncio.sleep(0.2)

    async def wait_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert time.monotonic() < deadline, (
                f"{text!r} not logged within {timeout}s:\n{self.log.read_text()[-3000:]}"
            )
            await asyncio.sleep(0.2)

    async def dead_letters(self, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
        connection = await aio_pika.connect(self.amqp_url)
        got: list[aio_pika.abc.AbstractIncomingMessage] = []
        deadline = time.monotonic() + DLQ_WAIT
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.dead_letter_queue, passive=True)
            while len(got) < count:
                message = await queue.get(no_ack=True, fail=False)
                if message is None:
                    assert time.monotonic() < deadline, f"{len(got)} dead letter(s), expected {count}"
                    await asyncio.sleep(0.2)
                    continue
                got.append(message)
        return got

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")


def _spawn(env: dict[str, str], out: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kfaas", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
    )


@pytest.fixture
async def flow(s3_events: S3Store, amqp_url: str, mongodb_url: str, tmp_path: Path) -> AsyncIterator[Flow]:
    s3_store = s3_events  # a store publishing to RabbitMQ now (tests/conftest.py)
    uploads, thumbnails = s3_store.bucket("uploads"), s3_store.bucket("thumbs")
    spec = load_function(FOLDER)
    source = spec.sources[0].model_copy(update={"bucket": uploads, "exchange": s3_store.exchange})
    trigger = spec.triggers[0].model_copy(update={"filter": {**spec.triggers[0].filter, "bucket": uploads}})
    spec = spec.model_copy(update={"sources": [source], "triggers": [trigger]})
    port, database = _free_port(), f"kfaas_test_{uuid.uuid4().hex[:12]}"
    log = tmp_path / "resize-image.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "AMQP_", "S3_", "AWS_"))},
        **s3_store.env,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DATABASE": database,
        "KFAAS_FUNCTION": "resize-image",
        "FUNCTION_SOURCE": str(FOLDER / "main.py"),
        "FUNCTION_TARGET": "handle",
        "FUNCTION_SIGNATURE_TYPE": "cloudevent",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "KFAAS_DRAIN_SECONDS": "1",
        "THUMBNAILS_BUCKET": thumbnails,
        "MAX_IMAGE_PIXELS": "1000000",
    }
    out = log.open("ab")
    process = _spawn(env, out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url + "/health/readiness")).status_code == 200:
                    break
            assert process.poll() is None, f"kfaas serve exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"not ready within 60s:\n{log.read_text()}"
            await asyncio.sleep(0.2)
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    app = AppSpec(functions=[spec], root=FOLDER.parent)
    broker = DevBroker(app, amqp_url, lambda _name: url + "/", namespace=namespace)
    await broker.start()
    try:
        yield Flow(s3_store, amqp_url, uploads, thumbnails, namespace, log, process, broker)
    finally:
        await broker.stop()
        process.terminate()
        process.wait(30)
        out.close()
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            for queue in (
                f"t.{namespace}.resize-image-uploaded",
                f"t.{namespace}.resize-image-uploaded.dlq",
                f"s.{namespace}.resize-image-uploads",
                f"s.{namespace}.resize-image-uploads.dlq",
            ):
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.queue_delete(queue)
            with contextlib.suppress(Exception):
                await (await connection.channel()).exchange_delete(f"b.{namespace}.default")
        from pymongo import AsyncMongoClient

        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
        await mongo.drop_database(database)
        await mongo.close()


async def test_an_upload_gets_its_thumbnails(flow: Flow) -> None:
    etag = await asyncio.to_thread(flow.upload, "trip/beach photo.jpg", jpeg(1200, 800, orientation=6))
    big, answer = await flow.wait_thumbnail("512/trip/beach photo.jpg")
    small, _ = await flow.wait_thumbnail("128/trip/beach photo.jpg")
    assert (big.format, big.size) == ("JPEG", (341, 512))  # rotated as the EXIF tag says, aspect kept
    assert (small.format, small.size) == ("JPEG", (85, 128))
    assert dict(big.getexif()) == {}
    assert "icc_profile" not in big.info
    assert answer["ContentType"] == "image/jpeg"
    assert answer["Metadata"] == {"source": f"{flow.uploads}/trip/beach photo.jpg", "source-etag": etag}

    await asyncio.to_thread(flow.upload, "logo.png", png_rgba(600, 300), "image/png")
    logo, _ = await flow.wait_thumbnail("512/logo.png")
    assert (logo.format, logo.mode, logo.size) == ("PNG", "RGBA", (512, 256))


async def test_bad_files_are_dead_lettered_with_the_reason_and_memory_stays_bounded(flow: Flow) -> None:
    before = flow.peak_rss_mib()
    for key, body in (
        ("notes.jpg", b"this is a text file, not a picture"),
        ("half.jpg", truncated_jpeg()),
        ("bomb.png", png_bomb()),
    ):
        await asyncio.to_thread(flow.upload, key, body)
    dead = await flow.dead_letters(3)
    reasons = {}
    for message in dead:
        headers = {
            k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (message.headers or {}).items()
        }
        answer = json.loads(base64.b64decode(headers["ce-knativeerrordata"]))
        reasons[headers["ce-subject"]] = (headers["ce-knativeerrorcode"], json.dumps(answer))
    assert set(reasons) == {"notes.jpg", "half.jpg", "bomb.png"}
    assert {code for code, _ in reasons.values()} == {"422"}  # final: no retry
    assert "not an image Pillow can read" in reasons["notes.jpg"][1]
    assert "cannot be decoded" in reasons["half.jpg"][1]
    assert "decompression bomb" in reasons["bomb.png"][1]
    assert flow.process.poll() is None  # refused, not crashed
    # 20,000 x 20,000 pixels would be 400 MB decoded: the process grew by far less than that
    assert flow.peak_rss_mib() - before < 120, (before, flow.peak_rss_mib())
    for key in ("notes.jpg", "half.jpg", "bomb.png"):
        assert await asyncio.to_thread(flow.thumbnail, f"128/{key}") is None


async def test_a_replayed_notification_does_nothing_twice(flow: Flow) -> None:
    connection = await aio_pika.connect(flow.amqp_url)
    async with connection:
        channel = await connection.channel()
        tap = await channel.declare_queue(exclusive=True)  # a copy of what the store sends
        await tap.bind(flow.store.exchange, routing_key="")
        await asyncio.to_thread(flow.upload, "once.jpg", jpeg(640, 480))
        await flow.wait_thumbnail("512/once.jpg")
        await flow.wait_thumbnail("128/once.jpg")
        notification = None
        deadline = time.monotonic() + 30
        while notification is None:
            message = await tap.get(no_ack=True, fail=False)
            if (
                message is not None
                and b'"once.jpg"' in message.body
                and flow.uploads.encode() in message.body
            ):
                notification = message.body
            elif message is None:
                assert time.monotonic() < deadline, "the store's notification was not seen"
                await asyncio.sleep(0.1)
        # remove the thumbnails, then send the very same notification again: they must not come back
        s3 = flow.store.client()
        for key in ("512/once.jpg", "128/once.jpg"):
            await asyncio.to_thread(s3.delete_object, Bucket=flow.thumbnails, Key=key)
        publisher = await connection.channel(publisher_confirms=True)
        exchange = await publisher.get_exchange(flow.store.exchange)
        await exchange.publish(
            aio_pika.Message(notification, content_type="application/json"), routing_key=""
        )
        await flow.wait_log("already made")
    assert await asyncio.to_thread(flow.thumbnail, "512/once.jpg") is None
    assert await asyncio.to_thread(flow.thumbnail, "128/once.jpg") is None
