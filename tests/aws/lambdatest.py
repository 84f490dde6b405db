"""Helpers of the lambda tests: the Go example's binaries (built once, cached) and a ``kfaas dev`` run of a
private copy of a functions folder, against the real RabbitMQ and MongoDB-wire server."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from devprocess import DevProcess

ROOT = Path(__file__).resolve().parents[2]
GO_EXAMPLE = ROOT / "examples" / "aws-lambda-go"
CACHE = Path(os.environ.get("KFAAS_CACHE_DIR") or Path.home() / ".cache" / "kfaas") / "aws-lambda-go"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def go_sources_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(GO_EXAMPLE.rglob("*")):
        if path.suffix in (".go", ".mod", ".sum") and path.is_file():
            digest.update(str(path.relative_to(GO_EXAMPLE)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def go_version(go: str) -> str:
    return subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def go_build(go: str, cwd: Path, package: str, out: Path, what: str) -> Path:
    """``go build`` of ``package`` in ``cwd`` into ``out`` unless it is there already (the caller's cache key
    is in ``out``'s path); written through a temporary name so an interrupted build leaves nothing."""
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    result = subprocess.run(
        [go, "build", "-trimpath", "-buildvcs=false", "-o", str(out) + ".tmp", package],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"go build of {what} failed:\n{result.stdout}\n{result.stderr}")
    os.replace(str(out) + ".tmp", out)
    return out


def build_go(go: str, function: str) -> Path:
    """``go build`` of one function of the Go example, cached by the hash of its sources (and Go's version)."""
    out = CACHE / f"{go_sources_hash()}-{go_version(go)}" / function / "bootstrap"
    return go_build(go, GO_EXAMPLE, f"./functions/{function}", out, function)


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


class LambdaDev(DevProcess):
    """``kfaas dev`` on a private copy of a functions folder; the output is kept for waits and messages."""

    start_args = ("--no-mail-sink",)
    tail = 80
    strict_stop = False
    ready_timeout = 90.0

    def __init__(self, tmp: Path, source: Path, mongodb_url: str, amqp_url: str) -> None:
        super().__init__(tmp / "functions", free_port(), free_port())
        self.run_id = uuid.uuid4().hex[:10]
        shutil.copytree(source, self.functions, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        self.namespace = f"lt-{self.run_id}"
        self.database = f"kfaas_lt_{self.run_id}"
        self.mongodb_url = mongodb_url  # what the functions get (a test may put a proxy in between)
        self.cleanup_url = mongodb_url
        self.amqp_url = amqp_url
        self.extra_env: dict[str, str] = {}
        self.queues: list[str] = []

    def rename_queues(self) -> dict[str, str]:
        """Give every queue source a queue of this run (``<queue>-<run>``); returns old -> new."""
        renamed: dict[str, str] = {}
        for description in self.functions.glob("*/function.yaml"):

            def change(data: dict[str, Any]) -> None:
                for source in data.get("sources", []):
                    if source.get("kind", "queue") == "queue":
                        new = f"{source['queue']}-{self.run_id}"
                        renamed[source["queue"]] = new
                        source["queue"] = new

            edit(description, change)
        self.queues = list(renamed.values())
        return renamed

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "MONGODB_", "AMQP_", "KFAAS_"))
        }
        env.update(
            MONGODB_URL=self.mongodb_url,
            MONGODB_DATABASE=self.database,
            AMQP_URL=self.amqp_url,
            KFAAS_NAMESPACE=self.namespace,
            PYTHONUNBUFFERED="1",
            **self.extra_env,
        )
        return env

    async def cleanup(self) -> None:
        """Drop the run's database, its RabbitMQ names and its queues."""
        import aio_pika
        from pymongo import AsyncMongoClient

        from kfaas.broker import triggers_of
        from kfaas.broker._names import broker_exchange
        from kfaas.spec import load_app

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.cleanup_url, serverSelectionTimeoutMS=5000
        )
        try:
            await client.drop_database(self.database)
        finally:
            await client.close()
        app = load_app(self.functions)
        connection = await aio_pika.connect(self.amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for ref in triggers_of(app, self.namespace):
                for queue in (ref.queue, ref.dead_letter_queue):
                    await channel.queue_delete(queue)
            for broker in app.brokers:
                await channel.exchange_delete(broker_exchange(self.namespace, broker))
            for queue in self.queues:
                await channel.queue_delete(queue)


async def publish_plain(amqp_url: str, queue: str, bodies: list[bytes]) -> None:
    """Plain messages (not CloudEvents) onto a queue, as an SQS producer would send them, with confirms."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for i, body in enumerate(bodies):
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body, message_id=f"m-{i}-{uuid.uuid4().hex[:6]}", content_type="application/json"
                ),
                routing_key=queue,
            )
