"""Helpers of the lambda tests: the Go example's binaries (built once, cached) and a ``kfaas dev`` run of a
private copy of a functions folder, against the real RabbitMQ and MongoDB-wire server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

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


def build_go(go: str, function: str) -> Path:
    """``go build`` of one function of the Go example, cached by the hash of its sources (and Go's version)."""
    version = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()
    out = CACHE / f"{go_sources_hash()}-{version}" / function / "bootstrap"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    result = subprocess.run(
        [go, "build", "-trimpath", "-buildvcs=false", "-o", str(out) + ".tmp", f"./functions/{function}"],
        cwd=GO_EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"go build of {function} failed:\n{result.stdout}\n{result.stderr}")
    os.replace(str(out) + ".tmp", out)
    return out


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


class LambdaDev:
    """``kfaas dev`` on a private copy of a functions folder; the output is kept for waits and messages."""

    def __init__(self, tmp: Path, source: Path, mongodb_url: str, amqp_url: str) -> None:
        self.run_id = uuid.uuid4().hex[:10]
        self.functions = tmp / "functions"
        shutil.copytree(source, self.functions, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        self.namespace = f"lt-{self.run_id}"
        self.database = f"kfaas_lt_{self.run_id}"
        self.mongodb_url = mongodb_url  # what the functions get (a test may put a proxy in between)
        self.cleanup_url = mongodb_url
        self.amqp_url = amqp_url
        self.port = free_port()
        self.broker_port = free_port()
        self.extra_env: dict[str, str] = {}
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
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

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    async def start(self, *extra: str, timeout: float = 90.0) -> None:
        argv = [sys.executable, "-m", "kfaas", "dev", "--functions", str(self.functions)]
        argv += ["--port", str(self.port), "--broker-port", str(self.broker_port), "--no-mail-sink", *extra]
        self.process = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child whose output a thread reads
            argv, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.functions.parent
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        await self.wait_until(lambda: self.count("kfaas dev: ready") > 0, timeout, "kfaas dev: ready")

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip())

    def output(self, last: int = 80) -> str:
        with self._lock:
            return "\n".join(self.lines[-last:])

    def count(self, *needles: str) -> int:
        with self._lock:
            return sum(1 for line in self.lines if all(n in line for n in needles))

    async def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(
                    f"kfaas dev exited ({self.process.returncode}) waiting for {what}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:g}s; kfaas dev said:\n{self.output()}")
            await asyncio.sleep(0.1)

    async def eventually(self, probe: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = await probe()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{what}: not within {timeout:g}s (last: {result!r}); kfaas dev said:\n{self.output()}"
                )
            await asyncio.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            return self.process.returncode
        finally:
            if self._reader is not None:
                self._reader.join(10)
            if self.process.stdout is not None:
                self.process.stdout.close()

    def dlq(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kfaas", "dlq", "--functions", str(self.functions), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

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
