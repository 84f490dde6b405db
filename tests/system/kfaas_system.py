"""System tests: ``kfaas dev`` as a subprocess against the real RabbitMQ and MongoDB-wire server.

Every test gets its own copy of ``functions/`` in which the orders queue is renamed (``orders-<run>``), its
own broker namespace (every exchange and trigger queue name carries it), its own database and its own SMTP
sink, so runs never see each other's events, and everything is deleted afterwards. Every wait is bounded
and a failure message ends with the tail of kfaas dev's output.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from devprocess import DevProcess

from kfaas.dev.smtp import MailSink, free_port

ROOT = Path(__file__).resolve().parents[2]


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def fast_delivery(retry: int, delay: str = "PT0.2S") -> dict[str, Any]:
    return {"retry": retry, "backoffPolicy": "exponential", "backoffDelay": delay, "timeout": "PT5S"}


class DevRun(DevProcess):
    """One ``kfaas dev`` process on a private copy of the app; its output is kept for waits and messages."""

    def __init__(self, tmp: Path, mongodb_url: str, amqp_url: str, sink: MailSink) -> None:
        super().__init__(tmp / "functions", free_port(), free_port())
        self.run_id = uuid.uuid4().hex[:10]
        self.namespace = f"st-{self.run_id}"
        self.queue = f"orders-{self.run_id}"
        self.stream = f"order-events-{self.run_id}"
        self.database = f"kfaas_st_{self.run_id}"
        self.mongodb_url = mongodb_url
        self.amqp_url = amqp_url
        self.sink = sink
        self.use_test_sink = True  # SMTP_HOST = the test's sink; False: kfaas dev runs its own
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

    def stream_status(self) -> dict[str, Any]:
        """``kfaas stream status --json`` of the run's one stream source."""
        proc = self.kfaas("stream", "status", "--json")
        assert proc.returncode == 0, proc.stderr
        (row,) = json.loads(proc.stdout)
        return dict(row)


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
