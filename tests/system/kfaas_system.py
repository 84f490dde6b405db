"""System tests: ``kfaas dev`` as a subprocess against the real RabbitMQ and MongoDB-wire server.

Every test gets its own copy of ``functions/`` in which the orders queue is renamed (``orders-<run>``), its
own broker namespace (every exchange and trigger queue name carries it), its own database and its own SMTP
sink, so runs never see each other's events, and everything is deleted afterwards. Every wait is bounded
and a failure message ends with the tail of kfaas dev's output.
"""

from __future__ import annotations

import asyncio
import json
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

from kfaas.dev.smtp import MailSink, free_port

ROOT = Path(__file__).resolve().parents[2]


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def fast_delivery(retry: int, delay: str = "PT0.2S") -> dict[str, Any]:
    return {"retry": retry, "backoffPolicy": "exponential", "backoffDelay": delay, "timeout": "PT5S"}


class DevRun:
    """One ``kfaas dev`` process on a private copy of the app; its output is kept for waits and messages."""

    def __init__(self, tmp: Path, mongodb_url: str, amqp_url: str, sink: MailSink) -> None:
        self.run_id = uuid.uuid4().hex[:10]
        self.functions = tmp / "functions"
        self.namespace = f"st-{self.run_id}"
        self.queue = f"orders-{self.run_id}"
        self.stream = f"order-events-{self.run_id}"
        self.database = f"kfaas_st_{self.run_id}"
        self.mongodb_url = mongodb_url
        self.amqp_url = amqp_url
        self.sink = sink
        self.port = free_port()
        self.broker_port = free_port()
        self.lines: list[str] = []
        self.use_test_sink = True  # SMTP_HOST = the test's sink; False: kfaas dev runs its own
        self._lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        shutil.copytree(
            ROOT / "functions", self.functions, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        _edit(self.functions / "process-order" / "function.yaml", self._rename_queue)
        _edit(
            self.functions / "place-order" / "function.yaml",
            lambda d: d.setdefault("env", {}).update(ORDERS_QUEUE=self.queue),
        )
        _edit(self.functions / "order-audit" / "function.yaml", self._rename_stream)

    def _rename_stream(self, spec: dict[str, Any]) -> None:
        for source in spec.get("sources", []):
            if source.get("kind") == "stream":
                source["stream"] = self.stream

    def _rename_queue(self, spec: dict[str, Any]) -> None:
        for source in spec.get("sources", []):
            if source.get("kind") == "queue":
                source["queue"] = self.queue

    def edit(self, function: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Change a function's description in this run's copy (before :meth:`start`)."""
        _edit(self.functions / function / "function.yaml", change)

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
        )
        if self.use_test_sink:
            env.update(SMTP_HOST=self.sink.host, SMTP_PORT=str(self.sink.port))
        return env

    async def start(self, *extra: str, timeout: float = 60.0) -> None:
        argv = [sys.executable, "-m", "kfaas", "dev", "--functions", str(self.functions)]
        argv += ["--port", str(self.port), "--broker-port", str(self.broker_port), *extra]
        self.process = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child whose output a thread reads
            argv, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.functions.parent
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        await self.wait_for_line("kfaas dev: ready", timeout)

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip())

    def output(self, last: int = 60) -> str:
        with self._lock:
            return "\n".join(self.lines[-last:])

    def count(self, *needles: str) -> int:
        with self._lock:
            return sum(1 for line in self.lines if all(n in line for n in needles))

    async def wait_for_line(self, needle: str, timeout: float, count: int = 1) -> None:
        await self.wait_until(
            lambda: self.count(needle) >= count, timeout, f"{count} line(s) with {needle!r}"
        )

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
        """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = await probe()
            if result:
                return result
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(
                    f"kfaas dev exited ({self.process.returncode}) waiting for {what}:\n{self.output()}"
                )
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
                    pytest.fail(f"kfaas dev did not stop within {timeout:g}s after SIGINT:\n{self.output()}")
            return self.process.returncode
        finally:
            if self._reader is not None:
                self._reader.join(10)
            if self.process.stdout is not None:
                self.process.stdout.close()

    def stream_status(self) -> dict[str, Any]:
        """``kfaas stream status --json`` of the run's one stream source."""
        argv = [
            sys.executable,
            "-m",
            "kfaas",
            "stream",
            "--functions",
            str(self.functions),
            "status",
            "--json",
        ]
        proc = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        (row,) = json.loads(proc.stdout)
        return dict(row)

    def dlq(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kfaas", "dlq", "--functions", str(self.functions), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


async def delete_rabbitmq_names(amqp_url: str, run: DevRun) -> None:
    import aio_pika

    from kfaas.broker import triggers_of
    from kfaas.broker._names import broker_exchange
    from kfaas.spec import load_app

    app = load_app(run.functions)
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for ref in triggers_of(app, run.namespace):
            for queue in ref.queues:
                await channel.queue_delete(queue)
        for broker in app.brokers:
            await channel.exchange_delete(broker_exchange(run.namespace, broker))
        await channel.queue_delete(run.queue)
        await channel.queue_delete(run.stream)
        for consumer, _, _ in app.streams:
            await channel.queue_delete(f"t.{run.namespace}.{consumer.name}.dlq")


async def dead_letter_counts(amqp_url: str, run: DevRun) -> dict[str, int]:
    """The number of dead letters in each trigger's ``.dlq`` queue of the run."""
    import aio_pika

    from kfaas.broker import triggers_of
    from kfaas.spec import load_app

    app = load_app(run.functions)
    connection = await aio_pika.connect(amqp_url, timeout=10)
    counts = {}
    async with connection:
        channel = await connection.channel()
        for ref in triggers_of(app, run.namespace):
            queue = await channel.declare_queue(ref.dead_letter_queue, passive=True)
            counts[ref.name] = queue.declaration_result.message_count or 0
    return counts


def placed_event(order: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "type": "com.kfaas.order.placed",
            "source": "/tests/system",
            "id": f"order-placed-{order['id']}",
            "datacontenttype": "application/json",
            "data": order,
        }
    ).encode()
